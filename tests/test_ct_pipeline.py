"""CT in Hounsfield units end to end through the CLI: ``train --intensity_mode ct`` (the HU window), ``evaluate`` and
``infer`` on small synthetic head CT volumes (air -1000 HU, soft tissue ~40 HU, a bone ring ~700 HU, one volume with
a hyperdense lesion and its mask), in the ``volumes_csv`` layout of docs/data.md."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from monai_anomaly.cli import main

pytestmark = pytest.mark.slow

SHAPE = (32, 32, 12)
TINY = ["--image_size", "32", "--channels", "[8,16]", "--strides", "[2,2]", "--latent_size", "16"]
TINY += ["--hidden_size", "32", "--val_interval", "1", "--num_workers", "0"]


def _head_ct(seed: int, lesion: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic head CT (HU): air outside an ellipse, a ~700 HU skull ring, ~40 HU soft tissue with noise; with
    ``lesion`` a ~130 HU (hyperdense, haemorrhage-like) blob on slices 4-7 and its 0/1 mask."""
    rng = np.random.default_rng(seed)
    x, y = np.mgrid[: SHAPE[0], : SHAPE[1]].astype(np.float32)
    cx, cy = 16 + rng.uniform(-1, 1), 16 + rng.uniform(-1, 1)
    ax, ay = 13 + rng.uniform(-1, 1), 11 + rng.uniform(-1, 1)
    r = np.sqrt(((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2)
    vol = np.full(SHAPE, -1000.0, np.float32) + rng.normal(0, 5, SHAPE).astype(np.float32)
    tissue = np.repeat((r < 0.82)[..., None], SHAPE[2], axis=2)
    bone = np.repeat(((r >= 0.82) & (r < 1.0))[..., None], SHAPE[2], axis=2)
    vol[tissue] = 40.0 + rng.normal(0, 8, int(tissue.sum()))
    vol[bone] = 700.0 + rng.normal(0, 30, int(bone.sum()))
    mask = np.zeros(SHAPE, np.uint8)
    if lesion:
        blob = np.sqrt((x - cx - 3) ** 2 + (y - cy + 2) ** 2) < 4
        mask[..., 4:8] = blob[..., None]
        vol[mask > 0] = 130.0 + rng.normal(0, 8, int(mask.sum()))
    return vol, mask


def _ct_dataset(root: Path) -> Path:
    """``volumes/*.nii.gz`` + ``masks/`` + ``labels.csv``: 3 train normals, 1 val normal, a test normal and a test
    volume with a lesion mask (the split is given, so every split has what it needs)."""
    (root / "volumes").mkdir(parents=True)
    (root / "masks").mkdir()
    affine = np.diag([0.9, 0.9, 5.0, 1.0])
    rows = []
    cases = [("ct_n0", "train"), ("ct_n1", "train"), ("ct_n2", "train"), ("ct_n3", "val"), ("ct_n4", "test")]
    for i, (case, split) in enumerate(cases + [("ct_lesion", "test")]):
        lesion = case == "ct_lesion"
        vol, mask = _head_ct(seed=i, lesion=lesion)
        nib.save(nib.Nifti1Image(vol.astype(np.int16), affine), str(root / "volumes" / f"{case}.nii.gz"))
        row = {"case_id": case, "image": f"volumes/{case}.nii.gz", "mask": "", "label": int(lesion), "split": split}
        if lesion:
            nib.save(nib.Nifti1Image(mask, affine), str(root / "masks" / f"{case}_mask.nii.gz"))
            row["mask"] = f"masks/{case}_mask.nii.gz"
        rows.append(row)
    with open(root / "labels.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root


def _preprocess(ckpt: Path, image: Path) -> torch.Tensor:
    """The scan as ``infer`` preprocesses it: inference.json's preprocessing, settings read from ``ckpt``."""
    from monai.bundle import ConfigParser

    from monai_anomaly.cli import find_bundle

    bundle = find_bundle("autoencoder_anomaly")
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    parser.update({"bundle_root": str(bundle), "ckpt_path": str(ckpt), "input_path": str(image)})
    (item,) = parser.get_parsed_content("datalist")  # the scan as find_scans lists it
    return parser.get_parsed_content("preprocessing")(item)["image"]


def test_ct_hu_window_train_evaluate_infer(tmp_path):
    data = _ct_dataset(tmp_path / "ct")
    run, infer_dir = tmp_path / "run", tmp_path / "infer"
    main(
        [
            "train",
            str(data),
            "--output_dir",
            str(run),
            "--intensity_mode",
            "ct",
            "--max_epochs",
            "2",
            "--batch_size",
            "4",
        ]
        + TINY
    )
    ckpt = run / "models" / "model.pt"
    settings = torch.load(ckpt, map_location="cpu", weights_only=True)["settings"]
    assert settings["intensity_mode"] == "ct" and settings["image_size"] == 32

    # the saved mode drives the preprocessing: the -160..240 HU window onto [0, 1]
    img = _preprocess(ckpt, data / "volumes" / "ct_lesion.nii.gz")
    assert img.meta["intensity_mode"] == "ct"
    raw = nib.load(str(data / "volumes" / "ct_lesion.nii.gz")).get_fdata()
    out = img[0].numpy()
    assert out.shape == raw.shape and 0.0 <= out.min() and out.max() <= 1.0
    assert np.all(out[raw < -500] == 0.0)  # air at the bottom of the window
    assert np.all(out[raw > 240] == 1.0)  # bone above its top
    tissue = (raw > 0) & (raw < 100)
    np.testing.assert_allclose(out[tissue], (raw[tissue] + 160.0) / 400.0, atol=1e-5)  # linear inside the window

    main(["evaluate", str(data), "--output_dir", str(run)])
    ev = run / "eval"
    metrics = json.loads((ev / "metrics.json").read_text())
    assert metrics["run_info"]["intensity_mode"] == "ct"
    with open(ev / "volume_results.csv", newline="") as f:
        vols = {r["volume_id"]: r for r in csv.DictReader(f)}
    assert set(vols) == {"ct_n4", "ct_lesion"}  # the test split
    assert all(math.isfinite(float(v["volume_score"])) for v in vols.values())
    with open(ev / "detailed_results.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["score"]]
    assert rows and all(math.isfinite(float(r["score"])) for r in rows)
    assert {r["label"] for r in rows if r["volume_id"] == "ct_lesion"} == {"0", "1"}  # slice labels from the mask
    for name in ("anomaly_report.txt", "score_distribution.png", "confusion_matrix.png", "training_curves.png"):
        assert (ev / name).is_file(), name

    main(["infer", str(data / "volumes"), "--output_dir", str(infer_dir), "--ckpt", str(ckpt)])
    scans = json.loads((infer_dir / "scores.json").read_text())["scans"]
    assert {s["volume_id"] for s in scans} == {p.name[: -len(".nii.gz")] for p in (data / "volumes").iterdir()}
    for s in scans:
        assert math.isfinite(s["volume_score"]) and s["prediction"] in ("normal", "anomalous"), s
        assert nib.load(s["anomaly_map"]).shape == SHAPE
