"""Command line: ``python -m monai_anomaly {train,evaluate,infer,demo,bundles,config}`` (also ``monai-anomaly``).

Every sub-command runs a bundle's configs through :func:`monai.bundle.run`, so the CLI and
``python -m monai.bundle run --config_file ...`` are the same thing underneath; extra ``--key value`` flags override
config ids (e.g. ``--max_epochs 5 --image_size 64``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import sys
import time
import warnings
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = ["AnomalyCLI", "find_bundle", "run_bundle", "sample_data_dir", "main"]

DEFAULT_BUNDLE = "autoencoder_anomaly"
logger = logging.getLogger("monai_anomaly")


def _bundle_dirs() -> list[Path]:
    dirs = []
    if os.environ.get("MONAI_ANOMALY_BUNDLES"):
        dirs.append(Path(os.environ["MONAI_ANOMALY_BUNDLES"]))
    dirs.append(Path(__file__).resolve().parents[1] / "bundles")  # source checkout / editable install
    return dirs


def find_bundle(bundle: str | os.PathLike) -> Path:
    """Return the folder of a bundle given its name (looked up in ``bundles/``) or its path.

    Raises:
        FileNotFoundError: when no such bundle exists; the message lists the bundles that do.
    """
    p = Path(bundle).expanduser()
    if (p / "configs").is_dir():
        return p.resolve()
    for d in _bundle_dirs():
        if (d / str(bundle) / "configs").is_dir():
            return (d / str(bundle)).resolve()
    known = sorted({b.name for d in _bundle_dirs() if d.is_dir() for b in d.iterdir() if (b / "configs").is_dir()})
    raise FileNotFoundError(
        f"no bundle '{bundle}': give a bundle folder or one of {known} "
        "(set MONAI_ANOMALY_BUNDLES to the folder holding the bundles when the package is not installed from source)."
    )


def sample_data_dir() -> Path:
    """The embedded demo sample (200 normal + 100 tumour brain MRI slices, CC0), shipped inside the package."""
    return Path(str(resources.files("monai_anomaly") / "sample_data"))


def _extra_configs(config: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """``--config`` values: config files merged after the base ones (a bundle-relative name such as
    ``variants/dae.json`` or ``protocols/medianomaly.json``, or a path); a comma-separated string or a list."""
    if not config:
        return []
    items = config.split(",") if isinstance(config, str) else [str(c) for c in config]
    return [c.strip() for c in items if c.strip()]


class _DropConfigRootNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Not all config files are in")


def _mute_config_root_notice() -> None:
    """MONAI warns when the merged config files are in different folders (a variant in ``configs/variants/``) that
    it will look for metadata.json and logging.conf in the first one's folder; run_bundle passes both explicitly,
    so the notice says nothing a user can act on."""
    from monai.bundle import workflows

    if not any(isinstance(f, _DropConfigRootNotice) for f in workflows.logger.filters):
        workflows.logger.addFilter(_DropConfigRootNotice())


def _coerce_override(value: Any) -> Any:
    """``"true"`` / ``"false"`` in any case become booleans, also inside dicts and lists (JSON's ``true`` in
    ``--diffusion_options '{"condition": true}'``): the command line parser only converts ``True`` / ``False``, and a
    config reading the text ``"false"`` would take it as true.

    Example:
        >>> _coerce_override("false"), _coerce_override("TRUE"), _coerce_override("falsey"), _coerce_override(3)
        (False, True, 'falsey', 3)
        >>> _coerce_override({"condition": "true", "steps": 5, "modes": ["false"]})
        {'condition': True, 'steps': 5, 'modes': [False]}
    """
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if isinstance(value, dict):
        return {k: _coerce_override(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_coerce_override(v) for v in value]
    return value


def _config_defaults(bundle: str | os.PathLike, configs: list[str]) -> dict[str, Any]:
    """The top-level ids of the bundle's config files (merged in order) with their values."""

    root = find_bundle(bundle)
    merged: dict[str, Any] = {}
    for c in configs:
        f = Path(c) if Path(c).is_file() else root / "configs" / c
        merged.update(_read_config(f))
    return merged


def _read_config(f: Path) -> dict[str, Any]:
    """A config file's content; a missing, broken or non-object JSON file is refused naming the file."""
    import json

    from monai_anomaly.utils.cli_errors import UsageError

    if not f.is_file():
        raise FileNotFoundError(f"{f}: config file not found")
    try:
        if f.suffix.lower() in (".yaml", ".yml"):
            import yaml

            doc = yaml.safe_load(f.read_text(encoding="utf-8"))
        else:
            doc = json.loads(f.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise UsageError(f"{f}: not a valid config file ({str(e).splitlines()[0][:200]})") from None
    except Exception as e:  # noqa: BLE001 - yaml's errors
        raise UsageError(f"{f}: not a valid config file ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    if not isinstance(doc, dict):
        raise UsageError(f"{f}: a config file must hold a JSON object of ids and values, not a {type(doc).__name__}")
    return doc


# ids the CLI passes itself, and run-time options every bundle reads
_CLI_IDS = {"dataset_dir", "output_dir", "input_path", "ckpt_path", "resume", "overwrite", "skip_bad", "eval_dir"}


def _check_options(defaults: dict[str, Any], override: dict[str, Any], command: str) -> dict[str, Any]:
    """Refuse options the bundle does not know (with "did you mean"), and convert each value to the type of the
    config's default: booleans from true/false words, integers and floats from their text; a value of the wrong
    type (``--max_epochs abc``, ``--image_size [64,64]``) or a ``$`` expression that does not compile is refused
    naming the option."""
    import difflib

    from monai_anomaly.utils.cli_errors import UsageError

    out: dict[str, Any] = {}
    for k, v in override.items():
        if "#" in k and k.split("#", 1)[0] in defaults:  # a path into a config item (--evaluate#dataset#cache_dir)
            out[k] = _coerce_override(v)
            continue
        if k not in defaults and k not in _CLI_IDS:
            near = difflib.get_close_matches(k, [d for d in defaults if not d.startswith("_")], n=1, cutoff=0.6)
            hint = f"; did you mean --{near[0]}?" if near else f"; `{command} --help` lists the options"
            raise UsageError(f"--{k}: not an option of this bundle{hint}")
        if isinstance(v, str) and v.startswith("$"):
            try:
                compile(v[1:], f"--{k}", "eval")
            except SyntaxError as e:
                raise UsageError(f"--{k} {v!r}: not a valid Python expression ({e.msg})") from None
            out[k] = v
            continue
        d = defaults.get(k)
        out[k] = _as_type_of(d, v, k)
    return out


def _run_dir(output_dir: str | None, bundle: str | os.PathLike) -> Path:
    """The training run's folder: ``output_dir``, or ``runs/<bundle name>`` by default."""
    if output_dir is None:
        output_dir = os.path.join("runs", Path(str(bundle)).name)
    return Path(output_dir).expanduser().resolve()


def _check_thresholds(override: dict[str, Any]) -> dict[str, Any]:
    """``--threshold`` / ``--volume_threshold`` must be finite numbers (they replace the fitted thresholds)."""
    from monai_anomaly.utils.cli_errors import UsageError

    for name in ("threshold", "volume_threshold"):
        if override.get(name) is None:
            continue
        try:
            value = float(override[name])
        except (TypeError, ValueError):
            raise UsageError(f"--{name} takes a number, not {override[name]!r}") from None
        if not math.isfinite(value):
            raise UsageError(f"--{name} must be a finite number, not {override[name]!r}")
        override[name] = value
    return override


def _as_type_of(default: Any, value: Any, name: str) -> Any:
    from monai_anomaly.utils.cli_errors import UsageError

    if isinstance(default, str) and default[:1] in "$@%" or default is None:
        return _coerce_override(value)
    if isinstance(default, bool):
        return _flag(value, name)
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise UsageError(f"--{name} takes a whole number, not {value!r}")
        try:
            return int(value)
        except ValueError:
            raise UsageError(f"--{name} takes a whole number, not {value!r}") from None
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise UsageError(f"--{name} takes a number, not {value!r}")
        try:
            return float(value)
        except ValueError:
            raise UsageError(f"--{name} takes a number, not {value!r}") from None
    if isinstance(default, (list, tuple)) and not isinstance(value, (list, tuple)):
        raise UsageError(f"--{name} takes a list such as [{', '.join(map(str, default))}], not {value!r}")
    if isinstance(default, dict) and not isinstance(value, dict):
        raise UsageError(f"--{name} takes a dict such as {default!r}, not {value!r}")
    return _coerce_override(value)


def run_bundle(bundle: str | os.PathLike, configs: list[str], **override: Any) -> None:
    """Run ``python -m monai.bundle run`` on ``bundle`` with ``configs`` merged in order and ``override`` applied.

    A config given as an existing path is used as it is; otherwise it is looked up in the bundle's ``configs/``.
    Boolean words in ``override`` (``--quality false``) become booleans (:func:`_coerce_override`).
    """
    from monai.bundle import run

    override = {k: _coerce_override(v) for k, v in override.items()}

    root = find_bundle(bundle)
    files = [c if Path(c).is_file() else str(root / "configs" / c) for c in configs]
    for f in files:
        if not Path(f).is_file():
            raise FileNotFoundError(f"{f}: config file not found in bundle {root}")
    logging_file = root / "configs" / "logging.conf"
    _mute_config_root_notice()
    with warnings.catch_warnings():
        # MONAI notes on every run that a config's ``_target_`` values are imported and called: true of any bundle,
        # and these are the user's chosen bundle's own configs, so the notice is not shown
        warnings.filterwarnings("ignore", message=r"parsing config_file", category=UserWarning)
        run(
            meta_file=str(root / "configs" / "metadata.json"),
            config_file=files if len(files) > 1 else files[0],
            logging_file=str(logging_file) if logging_file.is_file() else None,
            bundle_root=str(root),
            **override,
        )


# settings saved in model.pt that decide how a model preprocesses and scores (config id -> settings key)
def _setting_ids() -> dict[str, str]:
    """``{config id: saved setting}`` of every setting saved in ``model.pt`` (from ``AnomalyModelSettings``)."""
    from monai_anomaly.utils.settings import AnomalyModelSettings

    return AnomalyModelSettings.config_ids()


def _refuse_inside_input(out: Path, inputs: str | os.PathLike, what: str = "output") -> None:
    """An output folder inside the input folder would be read back as input by the next run (and would write into
    the user's data set)."""
    inp = Path(inputs).expanduser().resolve()
    folder = inp if inp.is_dir() else None  # a manifest lists its files: outputs beside it are never read back
    if folder is not None and (out == folder or folder in out.parents):
        from monai_anomaly.utils.cli_errors import UsageError

        raise UsageError(
            f"{out}: the {what} folder is inside the input folder {folder}; a later run would read its maps and "
            "plots as input, and the data set would be changed. Choose a folder outside it."
        )


def _flag(value: Any, name: str) -> bool:
    """A boolean option: ``True`` / ``False``, or the words true/false, yes/no, on/off, 1/0 in any case; anything
    else is refused (``--skip_bad no`` must not mean yes).

    Example:
        >>> _flag("false", "overwrite"), _flag("YES", "overwrite"), _flag(True, "overwrite")
        (False, True, True)
    """
    from monai_anomaly.utils.cli_errors import UsageError

    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise UsageError(f"--{name} takes true or false (or yes/no, 1/0), not {value!r}.")


_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


def _has_checkpoint(models: Path) -> bool:
    return models.is_dir() and any(models.glob("*.pt"))


def _checkpoint_settings(ckpt: Path) -> dict[str, Any]:
    from monai_anomaly.utils.settings import load_model_settings

    return load_model_settings(ckpt) if ckpt.is_file() else {}


def _check_overrides(settings: dict[str, Any], override: dict[str, Any], ckpt: Path) -> None:
    """Refuse options that contradict how the model in ``ckpt`` was trained (its threshold would not match)."""
    from monai_anomaly.utils.cli_errors import UsageError

    for cid, key in _setting_ids().items():
        for name in {cid, key}:
            if name in override and key in settings and _norm(override[name]) != _norm(settings[key]):
                raise UsageError(
                    f"{ckpt}: the model was trained with {key}={settings[key]!r}, so --{name} {override[name]!r} "
                    "cannot be used with it (its threshold would not match); drop the option, the checkpoint's "
                    "setting is used."
                )


def _norm(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return [_norm(x) for x in v]
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return v
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v


def _demo_summary(report: Path, infer_dir: Path, total: float) -> str:
    """What the demo found and where to look, in plain words."""
    import json

    m = json.loads((report / "metrics.json").read_text())
    sl = (m.get("slice") or {}).get("metrics") or {}
    lines = [
        "",
        "monai_anomaly demo",
        "==================",
        "Trained on the slices of one healthy T1 brain volume (IXI012), thresholds fitted on a second healthy one",
        "(IXI015), tested on IXI015 with two SYNTHETIC lesions (demo data only, not a benchmark).",
        f"Slice AUROC {sl.get('auroc', float('nan')):.3f}, AUPRC {sl.get('auprc', float('nan')):.3f}: AUROC is the "
        "chance that a slice through a lesion scores above a lesion-free slice (0.5 is chance, 1 perfect).",
        f"  report:   {report / 'anomaly_report.txt'}",
        f"  pictures: {report}/roc_curve.png, score_distribution.png, confusion_matrix.png, training_curves.png, "
        "top_anomaly_*.png (image | reconstruction | difference | map)",
        "Whole scans scored end to end (volume score = mean of the top 5 % slice scores):",
    ]
    scans = json.loads((infer_dir / "scores.json").read_text())["scans"]
    for sc in scans:
        vt = sc.get("volume_threshold")
        lines.append(
            f"  {sc['volume_id']}: volume score {sc['volume_score']:.4g} vs threshold "
            f"{'n/a' if vt is None else f'{vt:.4g}'} -> {sc.get('prediction')}"
        )
        lines.append(f"    heatmap: {sc.get('anomaly_map')}")
        if sc.get("panels"):
            lines.append(f"    picture: {sc['panels']} (the three planes through its strongest anomaly)")
    if scans:
        t = scans[0].get("thresholds") or {}
        sl = t.get("slice") or {}
        params = sl.get("params") or {}
        lines.append(
            f"Decided by the {scans[0].get('decided_by', 'volume threshold')}; the slice threshold "
            f"{sl.get('value', float('nan')):.4g} is mean + {params.get('k', 3):g} std of {params.get('n', '?')} "
            f"normal validation slice scores, fitted at epoch {t.get('model_epoch')}. evaluate and infer score each "
            "slice the same way, at the training size, so they report the same volume score."
        )
    lines += [
        "  open a heatmap over its scan in 3D Slicer or ITK-SNAP (same affine); per-slice scores: "
        f"{infer_dir / 'detailed_results.csv'}",
        f"Finished in {total:.0f} s. Measured results on real data: docs/benchmarks.md.",
    ]
    return "\n".join(lines)


class AnomalyCLI:
    """Unsupervised anomaly detection in medical images (MONAI plugin). Run a sub-command with --help for details."""

    def train(
        self,
        dataset_dir: str,
        output_dir: str | None = None,
        bundle: str = DEFAULT_BUNDLE,
        resume: bool = False,
        overwrite: bool = False,
        config: str | None = None,
        **override: Any,
    ) -> str:
        """Train a bundle's model on the normal images of ``dataset_dir`` (any supported layout).

        Writes ``<output_dir>/models/model.pt`` (the best validation checkpoint, with its fitted thresholds and
        settings: what ``infer`` and ``evaluate`` load), ``<output_dir>/models/checkpoint_epoch=N.pt`` (the last two
        epochs, for ``--resume``) and TensorBoard logs in ``<output_dir>/logs``.

        Args:
            dataset_dir: folder in one of the supported layouts (see docs/data.md) or a CSV manifest.
            output_dir: where checkpoints and logs go (not inside ``dataset_dir``); default ``runs/<bundle name>``.
            bundle: bundle name (in bundles/) or path.
            resume: continue from the last checkpoint in ``<output_dir>/models`` (at most the current epoch is lost).
            overwrite: delete an earlier run's models/, logs/ and eval/ in ``output_dir`` first.
            config: extra config files merged on train.json, e.g. ``variants/dae.json`` (the coarse-noise denoising
                autoencoder) or ``protocols/medianomaly.json`` (the published protocol); comma-separated.
            override: other config ids, e.g. ``--max_epochs 20 --image_size 64 --model_type vae``.
        """
        from monai_anomaly.utils.cli_errors import UsageError
        from monai_anomaly.utils.outputs import TRAIN, claim_output

        resume, overwrite = _flag(resume, "resume"), _flag(overwrite, "overwrite")
        if resume and overwrite:
            raise UsageError("--resume continues an earlier run and --overwrite deletes it: give one of them.")
        configs = ["train.json", *_extra_configs(config)]
        override = _check_options(_config_defaults(bundle, configs), override, "train")
        out = _run_dir(output_dir, bundle)
        _refuse_inside_input(out, dataset_dir)
        if not resume and _has_checkpoint(out / "models") and not overwrite:
            raise FileExistsError(
                f"{out}: holds an earlier run (models/); pass --resume to continue it, --overwrite to replace it, "
                "or choose another --output_dir."
            )
        claim = claim_output(out, TRAIN, overwrite=overwrite, keep=resume)
        try:
            run_bundle(bundle, configs, dataset_dir=str(dataset_dir), output_dir=str(out), resume=resume, **override)
        except BaseException:
            if _has_checkpoint(out / "models") and not claim.nested:
                claim.finish(complete=False)  # an interrupted run can be continued with --resume
            else:
                claim.fail()
            raise
        claim.finish()
        return str(out / "models" / "model.pt")

    def evaluate(
        self,
        dataset_dir: str,
        output_dir: str | None = None,
        bundle: str = DEFAULT_BUNDLE,
        overwrite: bool = False,
        config: str | None = None,
        **override: Any,
    ) -> str:
        """Score the test split of ``dataset_dir`` with the model trained in ``output_dir`` and write the report.

        Pass the same ``--config`` as to ``train`` so that the split matches; the network, preprocessing and scoring
        settings are read from ``<output_dir>/models/model.pt`` (an option that contradicts them is refused).

        ``output_dir`` is the training run's folder (default ``runs/<bundle name>``). ``--threshold`` and
        ``--volume_threshold`` replace the fitted slice and volume thresholds; the report says which decided.

        ``--eval_mode transductive`` scores the unannotated mixed training set with its true labels revealed
        (Brainomaly's transductive mode) instead of the test split; ``--eval_dir`` puts the report elsewhere.

        The report goes to ``<output_dir>/eval``: detailed_results.csv (every slice score), volume_results.csv,
        metrics.json, anomaly_report.txt, roc_curve.png, pr_curve.png, score_distribution.png, confusion_matrix.png
        (slice and volume level, at the thresholds), training_curves.png (the training loss and validation curves
        that ``train`` logged in ``<output_dir>/logs``; not drawn when there are none), top_anomaly_*.png
        (image | heatmap | overlay) and NIfTI maps for volumes. metrics.json and the text report also give AUCp at
        test time: the known-normal validation slices and volumes against every evaluated sample, no label used.

        ``--quality True`` also measures how good the reconstructions are: SSIM, MS-SSIM and PSNR of the test normals'
        reconstructions, written to ``quality.json``, to a "Generative and reconstruction quality" section of
        anomaly_report.txt and to ``quality`` in metrics.json. ``--quality_features PATH`` (with ``--quality True``)
        adds FID (reconstructed normals and abnormals translated to healthy, each vs real normals) and the Inception
        Score, on the features of a 1-channel 2-class MONAI resnet18 checkpoint, e.g. a trained
        ``supervised_resnet18`` bundle's ``models/model.pt``; nothing is downloaded. See docs/evaluation.md.
        """
        from monai_anomaly.utils.outputs import EVALUATE, claim_output

        overwrite = _flag(overwrite, "overwrite")
        configs = ["train.json", "evaluate.json", *_extra_configs(config)]
        override = _check_thresholds(_check_options(_config_defaults(bundle, configs), override, "evaluate"))
        out = _run_dir(output_dir, bundle)
        ckpt = out / "models" / "model.pt"
        if not ckpt.is_file():
            raise FileNotFoundError(f"{ckpt}: no trained model; run `train` first.")
        _refuse_inside_input(out, dataset_dir)
        settings = _checkpoint_settings(ckpt)
        _check_overrides(settings, override, ckpt)
        stored = {cid: settings[key] for cid, key in _setting_ids().items() if key in settings}
        eval_dir = Path(str(override["eval_dir"])).expanduser().resolve() if "eval_dir" in override else out / "eval"
        _refuse_inside_input(eval_dir, dataset_dir, "report")
        override["eval_dir"] = str(eval_dir)
        rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
        if world > 1 and _flag(override.get("quality", False), "quality"):
            raise ValueError("--quality True runs in one process: run it without torchrun.")
        # under torchrun rank 0 claims the folder; the others wait for it in the bundle's init_process_group
        claim = claim_output(eval_dir, EVALUATE, overwrite=overwrite) if rank == 0 else contextlib.nullcontext()
        with claim:
            run_bundle(
                bundle,
                configs + (["multi_gpu_evaluate.json"] if world > 1 else []),
                dataset_dir=str(dataset_dir),
                output_dir=str(out),
                overwrite=True,  # the folder was claimed (and our earlier files removed) above
                **{**stored, **override},
            )
        return str(eval_dir)

    def infer(
        self,
        input: str,
        output_dir: str = "runs/infer",
        ckpt: str | None = None,
        bundle: str = DEFAULT_BUNDLE,
        overwrite: bool = False,
        skip_bad: bool = False,
        translate: bool = False,
        resume: bool = False,
        **override: Any,
    ) -> str:
        """Score images or volumes: per-slice scores, one score per volume, and the anomaly map as NIfTI.

        Writes to ``output_dir``: detailed_results.csv (one row per slice or image), volume_results.csv (one row per
        scan: volume score, threshold, prediction), scores.json (all of it, with the settings used),
        anomaly_report.txt, score_distribution.png and maps/ (``<scan>_anomaly_map.nii.gz`` on the scan's own grid).

        Each scan's map and result record (``scans/<scan>.json``) are written as soon as it is scored, so a cohort
        of any size runs in bounded memory, and a stopped run continues with ``--resume True``. Under ``torchrun``
        (``torchrun --nproc_per_node N -m monai_anomaly infer ...``) the scans are shared out over the processes
        (whole scans) and rank 0 writes the tables and the report: the same files as one process.

        Args:
            input: a file (PNG/JPEG/NIfTI/DICOM), a DICOM series folder, a folder of such files/series, or a
                manifest CSV with one scan path per row (column ``image`` or ``path``; relative to the CSV).
            output_dir: a new or empty folder, not inside ``input``.
            ckpt: the trained model (``<train output_dir>/models/model.pt``; default: the bundle's
                ``models/model.pt``). Its settings (image size, intensity, map, score, aggregation) are used.
            overwrite: replace an earlier result in ``output_dir`` whole.
            skip_bad: skip unreadable files (named in a warning and in the report) instead of stopping.
            translate: a CycleGAN model (``cyclegan_anomaly``) also writes each scan translated by both of its
                generators to ``translations/`` (``<scan>_to_normal`` and, for a two-domain model,
                ``<scan>_to_abnormal``; NIfTI on the scan's grid for volumes, PNG for 2D images) and
                ``translations/translations.csv``.
            resume: continue a stopped run in ``output_dir``: scans with a result record there are not scored
                again; the final files are those of an uninterrupted run.
            override: other config ids; ``--threshold`` / ``--volume_threshold`` replace the model's fitted slice /
                volume threshold (a volume threshold derived from the slice one follows ``--threshold``); scores.json
                and the report say which threshold decided.
        """
        from monai_anomaly.utils.outputs import INFER, claim_output

        overwrite, skip_bad = _flag(overwrite, "overwrite"), _flag(skip_bad, "skip_bad")
        translate, resume = _flag(translate, "translate"), _flag(resume, "resume")
        override = _check_thresholds(_check_options(_config_defaults(bundle, ["inference.json"]), override, "infer"))
        if resume and overwrite:
            raise ValueError("--resume continues the run in --output_dir and --overwrite replaces it: give one.")
        out = Path(output_dir).expanduser().resolve()
        if not Path(input).expanduser().exists():
            raise FileNotFoundError(f"{Path(input).expanduser().resolve()}: no such file or folder.")
        model = Path(ckpt).expanduser().resolve() if ckpt is not None else find_bundle(bundle) / "models" / "model.pt"
        if not model.is_file():
            raise FileNotFoundError(f"{model}: no trained model; pass --ckpt <train output_dir>/models/model.pt.")
        _check_overrides(_checkpoint_settings(model), override, model)  # also fails on an unreadable checkpoint
        if translate:
            from monai_anomaly.inferers.translate import load_generators

            load_generators(model)  # refuse a model without generators before scoring anything
        _refuse_inside_input(out, input)
        rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
        configs = ["inference.json"] + (["multi_gpu_inference.json"] if world > 1 else [])
        # under torchrun rank 0 claims the folder; the others wait for it in the bundle's init_process_group
        claim = claim_output(out, INFER, overwrite=overwrite, keep=resume) if rank == 0 else contextlib.nullcontext()
        with claim:
            run_bundle(
                bundle,
                configs,
                input_path=str(input),
                output_dir=str(out),
                ckpt_path=str(model),
                overwrite=True,  # the folder was claimed (and our earlier files removed) above
                skip_bad=skip_bad,
                resume=resume,
                **override,
            )
            if translate and rank == 0:
                run_bundle(
                    bundle,
                    ["inference.json", "translate.json"],
                    input_path=str(input),
                    output_dir=str(out),
                    ckpt_path=str(model),
                    skip_bad=skip_bad,
                    **{k: v for k, v in override.items() if k not in ("threshold", "volume_threshold")},
                )
        return str(out)

    def demo(
        self,
        output_dir: str = "monai_anomaly_demo",
        overwrite: bool = False,
        bundle: str = DEFAULT_BUNDLE,
        config: str | None = None,
        **override: Any,
    ) -> str:
        """Train, evaluate and run inference on the embedded 3D sample, and say where to look.

        The sample (``monai_anomaly/sample_data/volumes``) is two healthy IXI T1 brain volumes and a copy of the
        second with two clearly labelled SYNTHETIC lesions. The demo trains the default autoencoder on the slices
        of the first volume, fits the thresholds on the second (healthy) one, evaluates slice by slice on the
        lesion copy (report in ``<output_dir>/eval``: AUROC, curves, heatmap panels, NIfTI maps), then scores both
        volumes of the second subject end to end (``<output_dir>/infer``: a volume score and prediction each,
        per-slice scores, NIfTI heatmaps on the scans' own grid). About a minute on 2 CPU cores. ``--bundle``
        (e.g. ``healthy_gan_anomaly``; ``python -m monai_anomaly bundles`` lists them) chooses the method, and
        options such as ``--max_epochs`` or ``--image_size`` are passed to the bundle.
        """
        from monai_anomaly.utils.outputs import DEMO, claim_output

        overwrite = _flag(overwrite, "overwrite")
        out = Path(output_dir).expanduser().resolve()
        # about 60 training slices: small batches and 100 epochs give the network ~400 steps in under a minute
        settings = {"max_epochs": 100, "image_size": 64, "batch_size": 16, "val_interval": 20, **override}
        _check_options(_config_defaults(bundle, ["train.json", *_extra_configs(config)]), settings, "demo")
        t0 = time.time()
        vol_dir = sample_data_dir() / "volumes"
        manifest = str(vol_dir / "manifest.csv")
        with claim_output(out, DEMO, overwrite=overwrite):
            self.train(manifest, str(out), bundle=bundle, config=config, **settings)
            eval_settings = {k: v for k, v in settings.items() if k != "val_interval"}
            report = self.evaluate(manifest, str(out), bundle=bundle, config=config, **eval_settings)
            scans = out / "scans"
            scans.mkdir(parents=True, exist_ok=True)
            for name in ("IXI015-HH-1258_T1.nii.gz", "IXI015-HH-1258_T1_SYNTHETIC_LESION.nii.gz"):
                shutil.copyfile(vol_dir / name, scans / name)
            infer_dir = self.infer(str(scans), str(out / "infer"), ckpt=str(out / "models" / "model.pt"), bundle=bundle)
        print(_demo_summary(Path(report), Path(infer_dir), time.time() - t0))
        return report

    def bundles(self) -> list[str]:
        """List the bundles this installation knows."""
        return sorted({b.name for d in _bundle_dirs() if d.is_dir() for b in d.iterdir() if (b / "configs").is_dir()})

    def config(self) -> None:
        """Print the versions of monai_anomaly and everything it uses."""
        from monai_anomaly.utils.config import print_config

        print_config()

    def audit(
        self,
        dataset_dir: str,
        output_dir: str = "audit",
        overwrite: bool = False,
        skip_bad: bool = False,
        hash_threshold: int = 4,
        min_correlation: float | None = None,
        hash_method: str = "phash",
        hash_size: int = 8,
        layout: str = "auto",
        default_label: int | None = None,
        val_fraction: float = 0.15,
        test_fraction: float = 0.3,
        seed: int = 0,
        warn_auroc: float = 0.8,
    ) -> None:
        """Audit a data set before trusting a number: duplicates, split leaks, label conflicts, shortcuts.

        Finds near-duplicate groups (perceptual hash) and exact copies, the groups that cross the train/val/test split
        the bundles use or hold both classes, per-class file statistics, and a cross-validated "shortcut AUROC" of a
        trivial classifier on those statistics alone. Writes audit_report.txt, audit.json, audit_images.csv,
        duplicate_groups.csv, audit_features.png and audit_shortcut.png to ``output_dir`` (see docs/audit.md).

        Args:
            dataset_dir: folder in one of the supported layouts (see docs/data.md) or a CSV manifest.
            output_dir: where the report goes (must not exist or be empty, unless ``overwrite``).
            overwrite: write into an existing non-empty ``output_dir``.
            skip_bad: skip unreadable files (listed in the report) instead of stopping at the first.
            hash_threshold: largest Hamming distance between two files' hashes that makes them near-duplicates.
            min_correlation: also require the two files' 32x32 thumbnails to correlate this much (e.g. 0.98), for
                sets where hash links chain distinct images (the report warns when they do).
            hash_method: ``phash`` or ``dhash``.
            hash_size: hash side (8: 64-bit hashes, 16: 256-bit).
            layout: ``auto`` or a layout name; default_label: label of volumes in a folder without labels.csv.
            val_fraction, test_fraction, seed: the split to check (the bundle's train.json defaults).
            warn_auroc: shortcut AUROC at or above which the report warns.
        """
        from monai_anomaly.data.audit.report import AUDIT, write_audit_report
        from monai_anomaly.data.audit.run import audit_dataset
        from monai_anomaly.utils.outputs import claim_output

        overwrite, skip_bad = _flag(overwrite, "overwrite"), _flag(skip_bad, "skip_bad")
        _refuse_inside_input(Path(output_dir).expanduser().resolve(), dataset_dir, "audit report")
        with claim_output(output_dir, AUDIT, overwrite=overwrite) as claim:  # before reading thousands of files
            result = audit_dataset(
                dataset_dir,
                layout=layout,
                skip_bad=skip_bad,
                default_label=default_label,
                hash_method=hash_method,
                hash_size=hash_size,
                hash_threshold=hash_threshold,
                min_correlation=min_correlation,
                val_fraction=val_fraction,
                test_fraction=test_fraction,
                seed=seed,
                warn_auroc=warn_auroc,
            )
            out = write_audit_report(result, claim.path, overwrite=True)  # the folder was claimed above
            print("\n".join(f"- {s}" for s in result.findings))
            print(f"audit report written to {out} (start with {out / 'audit_report.txt'})")


def _output_arg(args: list[str]) -> str | None:
    """The output folder a command line names (for messages that have no file of their own)."""
    for flag in ("--eval_dir", "--output_dir"):
        for i, a in enumerate(args):
            if a == flag and i + 1 < len(args):
                return args[i + 1]
            if a.startswith(flag + "="):
                return a.split("=", 1)[1]
    return None


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every ``except BaseException`` clean-up runs."""


def _terminate_like_interrupt() -> Any:
    """Make SIGTERM raise :class:`_Terminated`; returns the previous handler (``None`` when it cannot be set)."""
    import signal

    def handler(signum, frame):  # noqa: ARG001
        raise _Terminated()

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (e.g. the CLI called from a test's worker thread)
        return None


def main(argv: list[str] | None = None) -> None:
    """Run the CLI. A failure prints ``monai_anomaly: error: <file>: <problem>`` and exits with 2 (bad input, bad
    options, outputs in the way) or 1 (anything else); ``--debug`` (or ``MONAI_ANOMALY_DEBUG=1``) shows tracebacks."""
    import fire

    from monai_anomaly.utils.cli_errors import debug_requested, exit_code, format_error, quiet_tracebacks

    debug, args = debug_requested(list(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    previous = None if debug else quiet_tracebacks()
    previous_sigterm = _terminate_like_interrupt()
    try:
        fire.Fire(AnomalyCLI(), command=args, name="monai_anomaly")
    except _Terminated:
        print("monai_anomaly: terminated (SIGTERM); the output folder was cleaned up", file=sys.stderr)
        sys.exit(143)
    except KeyboardInterrupt:
        print("monai_anomaly: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as e:  # fire's usage errors are SystemExit and pass through
        if debug:
            raise
        sys.stdout.flush()
        print(f"monai_anomaly: {format_error(e, _output_arg(args))}", file=sys.stderr)
        print("  (run again with --debug to see the traceback)", file=sys.stderr)
        sys.exit(exit_code(e))
    finally:
        if previous is not None:
            logging.setLogRecordFactory(previous)
        if previous_sigterm is not None:  # main() called from Python (tests, notebooks): leave the handler as found
            import signal

            signal.signal(signal.SIGTERM, previous_sigterm)


if __name__ == "__main__":
    main()
