"""One scan, one checkpoint, one answer: every door gives the same slice scores, volume score and verdict.

For every bundle (its tiny trained checkpoint, shared with tests/bundles/test_bundles.py) and for one 3D NIfTI and one
2D PNG, the doors compared are: the CLI ``evaluate`` (the scans as the test split of a manifest), the CLI ``infer``,
``python -m monai.bundle run`` with ``inference.json``, the MONAI Label runner (what the MONAI Label task wraps), and
the TorchScript export of ``network_def`` (``ckpt_export``) where the bundle exports; the supervised reference refuses
export with a clear message (its Grad-CAM needs autograd at run time).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import run
from monai.transforms import LoadImage

from monai_anomaly.apps.monailabel.lib.runner import AnomalyBundleRunner
from monai_anomaly.cli import AnomalyCLI
from monai_anomaly.inferers.slice import AnomalySliceInferer

pytestmark = pytest.mark.bundle

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "monai_anomaly" / "sample_data"
TOL = {"rtol": 1e-5, "atol": 1e-6}
ENV = {**os.environ, "PYTHONWARNINGS": "ignore"}


def _pngs(kind: str, n: int) -> list[Path]:
    return sorted((SAMPLE / kind).rglob("*.png"))[:n]


@pytest.fixture(scope="module")
def scans(tmp_path_factory) -> Path:
    """``vol.nii.gz`` (8 abnormal sample slices stacked, then an empty slice and a slice with a 3 x 3 speck of
    foreground: neither is scored; LPS affine with 1.2 mm slices) and ``img.png`` (a normal sample slice), plus a
    manifest that puts both in the test split beside a few normal train/val images."""
    root = tmp_path_factory.mktemp("parity")
    load = LoadImage(image_only=True, ensure_channel_first=False)
    slices = []
    for p in _pngs("abnormal", 8):
        a = np.asarray(load(str(p)), dtype=np.float32)
        slices.append(a if a.ndim == 2 else a[..., 0])
    shape = np.min([s.shape for s in slices], axis=0)
    speck = np.zeros(shape, np.float32)
    speck[10:13, 10:13] = float(np.max(slices[0]))
    slices += [np.zeros(shape, np.float32), speck]
    vol = np.stack([s[: shape[0], : shape[1]] for s in slices], axis=-1)
    nib.save(nib.Nifti1Image(vol, np.diag([-0.9, -0.9, 1.2, 1.0])), str(root / "vol.nii.gz"))
    shutil.copy(_pngs("normal", 1)[0], root / "img.png")
    rows = [("vol.nii.gz", 1, "vol", "test"), ("img.png", 0, "img", "test")]
    for i, p in enumerate(_pngs("normal", 7)[1:]):
        shutil.copy(p, root / f"n{i}.png")
        rows.append((f"n{i}.png", 0, f"n{i}", "train" if i < 3 else "val"))
    with open(root / "manifest.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "volume_id", "group", "split"])
        w.writerows([(p, lab, vid, vid, split) for p, lab, vid, split in rows])
    (root / "scans").mkdir()
    for name in ("vol.nii.gz", "img.png"):
        shutil.copy(root / name, root / "scans" / name)
    return root


def _entry(r: dict) -> dict:
    """One door's result for a scan: scored slices' scores, the skipped slices' reasons, volume score, verdict."""
    return {
        "slices": {i: r["slice_scores"][i] for i in r["scored_slices"]},
        "skipped": {k["slice_index"]: k["skip_reason"] for k in r["skipped_slices"]},
        "volume": r["volume_score"],
        "prediction": r["prediction"],
    }


def _from_scores_json(path: Path) -> dict[str, dict]:
    return {s["volume_id"]: _entry(s) for s in json.loads(path.read_text())["scans"]}


def _from_evaluate(eval_dir: Path) -> dict[str, dict]:
    out: dict[str, dict] = {}
    with open(eval_dir / "detailed_results.csv", newline="") as f:
        for r in csv.DictReader(f):
            e = out.setdefault(r["volume_id"], {"slices": {}, "skipped": {}})
            if r.get("skip_reason"):
                assert r["score"] == "", r
                e["skipped"][int(r["slice_index"])] = r["skip_reason"]
            else:
                e["slices"][int(r["slice_index"])] = float(r["score"])
    with open(eval_dir / "volume_results.csv", newline="") as f:
        for r in csv.DictReader(f):
            out[r["volume_id"]]["volume"] = float(r["volume_score"])
            out[r["volume_id"]]["prediction"] = {"1": "anomalous", "0": "normal"}.get(r["prediction"])
    return out


def _same(door: str, got: dict[str, dict], want: dict[str, dict]) -> None:
    assert set(got) == set(want), (door, sorted(got), sorted(want))
    for vid, w in want.items():
        g = got[vid]
        assert sorted(g["slices"]) == sorted(w["slices"]), (door, vid, "scored slices differ")
        assert g["skipped"] == w["skipped"], (door, vid, "skipped slices or reasons differ")
        idx = sorted(w["slices"])
        np.testing.assert_allclose([g["slices"][i] for i in idx], [w["slices"][i] for i in idx], **TOL, err_msg=door)
        np.testing.assert_allclose(g["volume"], w["volume"], **TOL, err_msg=f"{door}: {vid} volume score")
        assert g["prediction"] == w["prediction"], (door, vid, g["prediction"], w["prediction"])


# every bundle, and the autoencoder's AE-U variant (its network predicts a mean and a log-variance)
_BUNDLES = sorted(
    p.parent.parent.name for p in (Path(__file__).resolve().parents[2] / "bundles").glob("*/configs/metadata.json")
)


@pytest.mark.parametrize("trained_bundle", [*_BUNDLES, "autoencoder_anomaly:aeu"], indirect=True)
def test_every_door_gives_the_same_scores_and_verdict(trained_bundle, scans, tmp_path):
    bundle = trained_bundle
    ckpt = bundle / "models" / "model.pt"
    cli = AnomalyCLI()

    # the reference: CLI evaluate, the two scans being the manifest's test split
    run_dir = tmp_path / "run"
    (run_dir / "models").mkdir(parents=True)
    shutil.copy(ckpt, run_dir / "models" / "model.pt")
    cli.evaluate(str(scans / "manifest.csv"), output_dir=str(run_dir), bundle=str(bundle), val_batch_size=1)
    want = _from_evaluate(run_dir / "eval")
    assert set(want) == {"vol", "img"} and len(want["vol"]["slices"]) >= 6 and want["vol"]["prediction"] is not None
    assert want["vol"]["skipped"][8] == "no foreground" and want["vol"]["skipped"][9].startswith("foreground 0.")

    # CLI infer
    cli.infer(str(scans / "scans"), output_dir=str(tmp_path / "infer"), ckpt=str(ckpt), bundle=str(bundle))
    _same("infer", _from_scores_json(tmp_path / "infer" / "scores.json"), want)
    with open(tmp_path / "infer" / "volume_results.csv", newline="") as f:  # the report repeats, never recomputes
        vols = {r["volume_id"]: float(r["volume_score"]) for r in csv.DictReader(f)}
    np.testing.assert_allclose([vols["vol"], vols["img"]], [want["vol"]["volume"], want["img"]["volume"]], **TOL)

    # python -m monai.bundle run with inference.json (in process), the settings read from model.pt
    run(
        config_file=str(bundle / "configs" / "inference.json"),
        meta_file=str(bundle / "configs" / "metadata.json"),
        bundle_root=str(bundle),
        input_path=str(scans / "scans"),
        output_dir=str(tmp_path / "bundle_run"),
        ckpt_path=str(ckpt),
    )
    _same("monai.bundle run", _from_scores_json(tmp_path / "bundle_run" / "scores.json"), want)

    # the MONAI Label runner
    runner = AnomalyBundleRunner(bundle)
    label = {}
    for vid, name in (("vol", "vol.nii.gz"), ("img", "img.png")):
        _, r = runner(scans / "scans" / name)
        label[vid] = _entry(r)
    _same("MONAI Label runner", label, want)

    # the TorchScript export of network_def
    ts = tmp_path / "model.ts"
    size = json.loads((bundle / "configs" / "train.json").read_text())["image_size"]
    cmd = [sys.executable, "-m", "monai.bundle", "ckpt_export", "network_def", "--filepath", str(ts), "--ckpt_file",
           str(ckpt), "--key_in_ckpt", "model", "--config_file", "configs/inference.json", "--use_trace", "True",
           "--input_shape", f"[1, 1, {size}, {size}]"]  # fmt: skip
    res = subprocess.run(cmd, cwd=bundle, env=ENV, capture_output=True, text=True, timeout=300)
    if bundle.name == "supervised_resnet18":
        assert res.returncode != 0 and "cannot be exported to TorchScript" in res.stdout + res.stderr
        return
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    exported = torch.jit.load(str(ts)).eval()
    parts = runner._load()
    inferer: AnomalySliceInferer = parts["inferer"]
    post = parts["post"]
    out = {}
    for vid, name in (("vol", "vol.nii.gz"), ("img", "img.png")):
        d = parts["pre"]({"image": str(scans / "scans" / name), "volume_id": vid, "label": -1})
        with torch.no_grad():
            twice = [inferer(d["image"][None], exported, foreground=d["foreground"][None]) for _ in range(2)]
        torch.testing.assert_close(twice[0]["slice_scores"], twice[1]["slice_scores"], rtol=0, atol=0)  # deterministic
        pred = {k: v[0] for k, v in twice[0].items()}
        out[vid] = _entry(post({**d, "pred": pred})["result"])
    _same("TorchScript export", out, want)


@pytest.mark.parametrize("trained_bundle", ["autoencoder_anomaly"], indirect=True)
def test_bundle_run_evaluate_reads_the_settings_saved_in_model_pt(trained_bundle, scans, tmp_path):
    """``monai.bundle run`` with the shipped train.json + evaluate.json and a model trained with other settings
    (32 px, other channels): the settings come from model.pt, none has to be repeated on the command line."""
    shipped = REPO / "bundles" / "autoencoder_anomaly"
    assert json.loads((shipped / "configs" / "train.json").read_text())["image_size"] != 32
    run_dir = tmp_path / "run"
    (run_dir / "models").mkdir(parents=True)
    shutil.copy(trained_bundle / "models" / "model.pt", run_dir / "models" / "model.pt")
    run(
        config_file=[str(shipped / "configs" / "train.json"), str(shipped / "configs" / "evaluate.json")],
        meta_file=str(shipped / "configs" / "metadata.json"),
        bundle_root=str(shipped),
        dataset_dir=str(scans / "manifest.csv"),
        output_dir=str(run_dir),
        val_batch_size=1,
    )
    metrics = json.loads((run_dir / "eval" / "metrics.json").read_text())
    assert metrics["run_info"]["image_size"] == 32 and metrics["run_info"]["bundle"] == "autoencoder_anomaly"
    assert metrics["thresholds"]["model_epoch"] >= 1 and metrics["thresholds"]["decided_by"].startswith("volume")
