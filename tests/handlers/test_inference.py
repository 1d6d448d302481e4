from __future__ import annotations

import csv
import json

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from monai_anomaly.handlers.inference import InferenceResultWriter
from monai_anomaly.metrics.thresholds import DecisionThresholds, Threshold
from monai_anomaly.transforms.io import LoadScand
from monai_anomaly.transforms.postprocessing import VolumeAnomalyScored
from monai_anomaly.utils.errors import SkipLog, SkippedFile

THRESHOLDS = DecisionThresholds(Threshold(0.2, "mean_std", "val"), 0.2, "derived: the slice threshold applied", 7)


def _volume_item(tmp_path):
    """A NIfTI with a non-RAS affine, loaded (so reoriented to RAS) and given a map that marks two slices."""
    affine = np.array([[-2.0, 0, 0, 10], [0, -2.0, 0, 20], [0, 0, 3.0, -5], [0, 0, 0, 1]])
    vol = np.random.default_rng(0).random((10, 12, 5)).astype(np.float32) + 0.1
    nib.save(nib.Nifti1Image(vol, affine), str(tmp_path / "case.nii.gz"))
    d = LoadScand("image")({"image": str(tmp_path / "case.nii.gz")})
    amap = torch.zeros_like(d["image"].as_tensor())
    amap[..., 1] = 1.0
    amap[..., 3] = 0.5
    pred = {"anomaly_map": amap, "slice_scores": amap.mean((0, 1, 2)), "scored": torch.ones(5, dtype=torch.bool)}
    d = VolumeAnomalyScored(keys="pred", thresholds=THRESHOLDS)({**d, "pred": pred, "volume_id": "case", "label": -1})
    return d, affine


def test_writer_puts_scores_csv_json_and_aligned_map(tmp_path):
    item, affine = _volume_item(tmp_path)
    log = SkipLog(skip_bad=True)
    log.skipped.append(SkippedFile("bad.png", "truncated"))
    w = InferenceResultWriter(tmp_path / "out", thresholds=THRESHOLDS, skip_log=log)
    png = {
        "image": MetaTensor(torch.rand(1, 16, 20), meta={"filename_or_obj": "x/slice.png"}),
        "pred": torch.rand(1, 16, 20),
        "volume_id": "slice",
        "result": {"volume_score": 0.5, "slice_scores": [0.5], "prediction": "anomalous"},
    }
    w.add(item)
    w.add(png)
    w.write()
    out = tmp_path / "out"
    with open(out / "detailed_results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 5 + 1
    case_rows = [r for r in rows if r["volume_id"] == "case"]
    assert [float(r["score"]) for r in case_rows] == pytest.approx([0, 1, 0, 0.5, 0])
    with open(out / "volume_results.csv") as f:
        vols = {r["volume_id"]: r for r in csv.DictReader(f)}
    assert float(vols["case"]["volume_score"]) == pytest.approx(0.3)  # the postprocessing's, written as it is
    scans = json.loads((out / "scores.json").read_text())
    case = next(s for s in scans["scans"] if s["volume_id"] == "case")
    assert case["model_epoch"] == 7 and case["decided_by"].startswith("volume threshold 0.2")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["thresholds"]["model_epoch"] == 7 and metrics["run_info"]["model_epoch"] == 7
    assert scans["skipped"] == [{"path": "bad.png", "problem": "truncated"}]
    heat = nib.load(out / "maps" / "case_anomaly_map.nii.gz")
    assert heat.shape == (10, 12, 5)
    np.testing.assert_allclose(heat.affine, affine, atol=1e-5)
    np.testing.assert_allclose(np.asarray(heat.dataobj)[..., 1], 1.0)  # the marked slice is still slice 1 on disk
    assert (out / "maps" / "slice_heatmap.png").is_file()
    assert "truncated" in (out / "anomaly_report.txt").read_text()


def test_writer_refuses_to_overwrite(tmp_path):
    item, _ = _volume_item(tmp_path)
    w = InferenceResultWriter(tmp_path / "out")
    w.add(item)
    w.write()
    again = InferenceResultWriter(tmp_path / "out")
    with pytest.raises(FileExistsError):
        again.add(item)
        again.write()
