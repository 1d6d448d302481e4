"""Write every bundle's configs from the method-neutral template and the bundle's method folder.

The sources:

- ``tools/bundle_template/``: what every method shares (data layouts, splits, preprocessing, slicing, the anomaly
  model and its one scoring path, thresholds, reports, checkpointing, resume, multi-process training, inference);
- ``monai_anomaly.utils.settings.AnomalyModelSettings``: the saved hyperparameters, declared once. This script derives
  from it the ``train.json`` ids and their defaults, the ``model_settings`` saved in ``model.pt``, and the
  ``inference.json`` / ``evaluate.json`` lines that read them back from the checkpoint;
- ``bundles/<name>/method/``: the method: ``variant.json`` (overrides on the template's ``train.json``: its network
  settings, loss, engine, what the checkpoint holds; MONAI's ``a#b`` paths), optionally ``multi_gpu.json`` (its
  networks wrapped in DDP) and ``inference_defaults.json`` (fallbacks for a checkpoint without settings);
- ``bundles/<name>/configs/metadata.json`` (version, changelog) and ``docs/README.md``: written by hand, in the
  bundle.

It writes ``configs/train.json``, ``inference.json``, ``evaluate.json``, ``multi_gpu_train.json``,
``multi_gpu_inference.json``, ``multi_gpu_evaluate.json``,
``logging.conf`` and ``LICENSE`` of each bundle, each self-contained (``monai.bundle run``, ``ckpt_export`` and MONAI
Label read them alone). Edit a source, then run ``python tools/make_method_bundles.py``;
``tests/bundles/test_bundles.py`` fails when a generated file is out of date.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Any

from monai.bundle import ConfigParser

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "tools" / "bundle_template"
BUNDLES = REPO / "bundles"
sys.path.insert(0, str(REPO))

from monai_anomaly.utils.settings import AnomalyModelSettings  # noqa: E402

ANCHOR = "amp"
"""The template's ``train.json`` id after which the settings' ids are written."""


def bundle_names() -> list[str]:
    """Every bundle with a method folder."""
    return sorted(p.parent.parent.name for p in BUNDLES.glob("*/method/variant.json"))


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def _apply(config: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``config`` with ``overrides`` set the way ``monai.bundle run`` merges config files (``a#b`` paths)."""
    parser = ConfigParser(copy.deepcopy(config))
    for key, value in overrides.items():
        parser[key] = copy.deepcopy(value)
    return parser.get()


def _is_expression(v: Any) -> bool:
    return isinstance(v, str) and v[:1] in "$@%"


def _with_settings(template: dict[str, Any]) -> dict[str, Any]:
    """The template's ``train.json`` with one id per saved setting (its default) after :data:`ANCHOR`, and the
    ``model_settings`` / ``model_def`` built from them."""
    defaults = AnomalyModelSettings()
    out: dict[str, Any] = {}
    for key, value in template.items():
        out[key] = value
        if key == ANCHOR:
            for name in AnomalyModelSettings.names():
                out[name] = copy.deepcopy(getattr(defaults, name))
        if key == "network_def":
            break
    saved = {name: f"@{cid}" for cid, name in AnomalyModelSettings.config_ids().items()}
    out["model_settings"] = {"_target_": "monai_anomaly.utils.settings.ModelSettings", **saved}
    net = ", ".join(f"'{n}': @{n}" for n in AnomalyModelSettings.network_names())
    out["model_def"] = f"$build_model({{{net}}})"  # not @model_settings: building the network needs no data
    rest = list(template)
    for key in rest[rest.index("network_def") :]:
        out[key] = template[key]
    return out


def _read_back(train: dict[str, Any], source: str, defaults_id: str) -> dict[str, Any]:
    """``{defaults_id: {name: trained default}, <config id>: "$@<source>.get(name, default)", ...}``: the settings
    read back from a checkpoint, falling back to the bundle's defaults (to the legacy value for a setting added
    later: :meth:`~monai_anomaly.utils.settings.AnomalyModelSettings.legacy`)."""
    defaults = {}
    legacy = AnomalyModelSettings.legacy()  # a checkpoint saved before a setting existed was trained without it
    for name in AnomalyModelSettings.names():
        value = train.get(name)
        value = value if not _is_expression(value) else getattr(AnomalyModelSettings(), name)
        defaults[name] = copy.deepcopy(legacy.get(name, value))
    out: dict[str, Any] = {defaults_id: defaults}
    for cid, name in AnomalyModelSettings.config_ids().items():
        out[cid] = f"$@{source}.get('{name}', @{defaults_id}#{name})"
    return out


def build(name: str) -> dict[str, str]:
    """The generated files of bundle ``name`` (path relative to the bundle -> text)."""
    method = BUNDLES / name / "method"
    variant = _json(method / "variant.json")
    files: dict[str, str] = {}

    def put(rel: str, obj: dict[str, Any]) -> None:
        files[rel] = json.dumps(obj, indent=4) + "\n"

    train = _apply(_with_settings(_json(TEMPLATE / "configs" / "train.json")), variant)
    put("configs/train.json", train)

    infer = _json(TEMPLATE / "configs" / "inference.json")
    back = _read_back(train, "settings", "defaults")
    extra = method / "inference_defaults.json"
    if extra.is_file():
        back["defaults"].update(_json(extra))
    keys = list(infer)
    at = keys.index("settings") + 1
    infer = {k: infer[k] for k in keys[:at]} | back | {k: infer[k] for k in keys[at:]}
    infer["model_settings"] = train["model_settings"]
    infer["model_def"] = train["model_def"]
    infer["network_def"] = train["network_def"]  # the same anomaly model in every config of the bundle
    put("configs/inference.json", infer)

    evaluate = _json(TEMPLATE / "configs" / "evaluate.json")
    put("configs/evaluate.json", {**evaluate, **_read_back(train, "saved_settings", "saved_defaults")})

    multi = _json(TEMPLATE / "configs" / "multi_gpu_train.json")
    if (method / "multi_gpu.json").is_file():
        multi.update(_json(method / "multi_gpu.json"))  # an overlay merged on train.json: its "a#b" keys stay keys
    put("configs/multi_gpu_train.json", multi)
    put("configs/multi_gpu_inference.json", _json(TEMPLATE / "configs" / "multi_gpu_inference.json"))
    put("configs/multi_gpu_evaluate.json", _json(TEMPLATE / "configs" / "multi_gpu_evaluate.json"))
    files["configs/logging.conf"] = (TEMPLATE / "configs" / "logging.conf").read_text()
    files["LICENSE"] = (TEMPLATE / "LICENSE").read_text()
    return files


def main(argv: list[str] | None = None) -> int:
    names = bundle_names()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="only report bundles that are out of date (exit 1 if any)")
    ap.add_argument("names", nargs="*", default=names, help=f"bundles to write (default: {names})")
    args = ap.parse_args(argv)
    stale = []
    for name in args.names:
        root = BUNDLES / name
        for rel, text in build(name).items():
            path = root / rel
            if path.is_file() and path.read_text() == text:
                continue
            stale.append(str(path.relative_to(REPO)))
            if not args.check:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
        for rel in ("configs/metadata.json", "docs/README.md"):
            if not (root / rel).is_file():
                print(f"{name}: write {rel} by hand", file=sys.stderr)
    if args.check and stale:
        print("out of date (run python tools/make_method_bundles.py):\n  " + "\n  ".join(stale), file=sys.stderr)
        return 1
    for s in stale if not args.check else []:
        print("wrote", s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
