"""Tests of monai_anomaly.transforms.postprocessing on synthetic images, reconstructions and maps."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose

from monai_anomaly.metrics.thresholds import Threshold
from monai_anomaly.scoring.maps import compute_anomaly_map
from monai_anomaly.transforms.postprocessing import (
    AnomalyScore,
    AnomalyScoreD,
    AnomalyScored,
    ReconstructionToAnomalyMap,
    ReconstructionToAnomalyMapd,
    VolumeAnomalyScore,
    VolumeAnomalyScored,
)


def _lesion_pair(shape=(1, 32, 32)):
    rng = np.random.default_rng(0)
    rec = torch.as_tensor(rng.random(shape, dtype=np.float32) * 0.3)
    img = rec.clone()
    img[:, 10:14, 20:24] += 0.7  # a bright square the "model" did not reconstruct
    return img, rec


def test_map_peaks_at_the_lesion_and_keeps_meta():
    img, rec = _lesion_pair()
    affine = torch.diag(torch.tensor([0.5, 0.5, 1.0, 1.0]))
    mimg = MetaTensor(img, affine=affine, meta={"filename_or_obj": "/d/a.png"})
    d = ReconstructionToAnomalyMapd(method="abs")({"image": mimg, "reconstruction": rec})
    m = d["anomaly_map"]
    assert isinstance(m, MetaTensor) and m.meta["filename_or_obj"] == "/d/a.png"
    torch.testing.assert_close(m.affine, affine.double())
    assert tuple(m.shape) == (1, 32, 32)
    assert torch.allclose(m[0, 10:14, 20:24], torch.full((4, 4), 0.7), atol=1e-6)
    outside = m.clone()
    outside[0, 10:14, 20:24] = 0
    assert float(outside.max()) == 0.0
    assert torch.equal(m.as_tensor(), compute_anomaly_map(img[None], rec[None], "abs")[0])


def test_identical_image_gives_zero_map_and_foreground_masks():
    img, _ = _lesion_pair()
    assert float(ReconstructionToAnomalyMap("ssim")(img, img).abs().max()) < 1e-4
    _, rec = _lesion_pair()
    fg = torch.zeros(1, 32, 32, dtype=torch.bool)
    fg[:, :16] = True  # lesion rows 10-13 inside, columns don't matter
    fg[:, 10:14, 20:24] = False
    d = ReconstructionToAnomalyMapd(foreground_key="fg")({"image": img, "reconstruction": rec, "fg": fg})
    assert float(d["anomaly_map"].max()) == 0.0
    with pytest.raises(KeyError, match="reconstruction"):
        ReconstructionToAnomalyMapd()({"image": img})
    assert "anomaly_map" not in ReconstructionToAnomalyMapd(allow_missing_keys=True)({"image": img})


def test_slice_axis_map_matches_per_slice_2d():
    rng = np.random.default_rng(2)
    vol = torch.as_tensor(rng.random((1, 16, 16, 3), dtype=np.float32))
    rec = vol * 0.8
    m = ReconstructionToAnomalyMap("ssim", slice_axis=2)(vol, rec)
    assert tuple(m.shape) == (1, 16, 16, 3)
    for z in range(3):
        ref = compute_anomaly_map(vol[None, ..., z], rec[None, ..., z], "ssim")[0]
        torch.testing.assert_close(m[..., z], ref)
    with pytest.raises(ValueError, match="differ"):
        ReconstructionToAnomalyMap()(vol, rec[..., :2])


def test_anomaly_scored_methods():
    m = torch.zeros(1, 10, 10)
    m[0, 0, :5] = 1.0
    assert AnomalyScored(score_method="mean")({"anomaly_map": m})["score"] == pytest.approx(0.05)
    assert AnomalyScored(score_method="max", output_key="s_max")({"anomaly_map": m})["s_max"] == 1.0
    assert AnomalyScoreD(score_method="topk", k=0.1)({"anomaly_map": m})["score"] == pytest.approx(0.5)
    assert float(AnomalyScore("percentile", q=100.0)(m.numpy())) == 1.0
    fg = torch.zeros(1, 10, 10)
    fg[0, 0] = 1  # only the first row counts
    d = AnomalyScored(score_method="mean", foreground_key="brain")({"anomaly_map": m, "brain": fg})
    assert d["score"] == pytest.approx(0.5)
    assert isinstance(d["score"], float)
    with pytest.raises(ValueError, match="score_method"):
        AnomalyScored(score_method="median")


def test_map_then_score_pipeline():
    img, rec = _lesion_pair()
    post = Compose([ReconstructionToAnomalyMapd(), AnomalyScored(score_method="max")])
    assert post({"image": img, "reconstruction": rec})["score"] == pytest.approx(0.7, abs=1e-6)
    assert post({"image": rec, "reconstruction": rec})["score"] == 0.0


def test_volume_scores_along_each_axis():
    m = torch.zeros(1, 4, 6, 5)
    m[0, :, :, 2] = 1.0  # slice 2 of the last axis is all anomalous
    r = VolumeAnomalyScore(axis=2, slice_method="mean", aggregation="max", threshold=0.5)(m)
    assert r["slice_scores"] == [0.0, 0.0, 1.0, 0.0, 0.0]
    assert r["volume_score"] == 1.0 and r["prediction"] == "anomalous"
    r0 = VolumeAnomalyScore(axis=0, aggregation="mean", threshold=0.5)(m)
    assert r0["slice_scores"] == pytest.approx([0.2] * 4) and r0["prediction"] == "normal"
    assert VolumeAnomalyScore()(m)["prediction"] is None
    with pytest.raises(ValueError, match=r"\(C, H, W, D\)"):
        VolumeAnomalyScore()(torch.zeros(4, 4))


def test_volume_scored_result_is_json_and_merges():
    m = MetaTensor(torch.zeros(1, 8, 8, 4))
    m[0, 2:4, 2:4, 1] = 4.0
    thr = Threshold(0.1, "mean_std", "val", {"k": 3.0})
    d = VolumeAnomalyScored(threshold=thr, aggregation="max")({"anomaly_map": m, "result": {"model": "ae"}})
    res = d["result"]
    assert res["model"] == "ae"
    assert res["slice_scores"] == pytest.approx([0.0, 0.25, 0.0, 0.0])
    assert res["volume_score"] == pytest.approx(0.25) == d["volume_score"]
    assert res["threshold"] == thr.to_dict() and res["prediction"] == "anomalous"
    json.dumps(res)  # JSON-able for MONAI Label


def test_fraction_above_aggregation():
    m = torch.zeros(1, 4, 4, 4)
    m[..., :3] = 1.0
    r = VolumeAnomalyScored(aggregation="fraction_above", threshold=0.5, volume_threshold=0.5)({"anomaly_map": m})
    assert r["result"]["volume_score"] == 0.75 and r["result"]["prediction"] == "anomalous"
    assert VolumeAnomalyScore(aggregation="fraction_above", threshold=0.5)(m)["prediction"] is None
    with pytest.raises(ValueError, match="fraction_above"):
        VolumeAnomalyScore(aggregation="fraction_above")


def test_volume_anomaly_score_takes_a_2d_map_as_one_slice():
    from monai_anomaly.transforms.postprocessing import VolumeAnomalyScored

    m = torch.zeros(1, 8, 8)
    m[0, :2] = 1.0
    d = VolumeAnomalyScored(threshold=0.2)({"anomaly_map": m})
    assert d["result"]["slice_scores"] == [0.25]
    assert d["result"]["volume_score"] == 0.25 and d["result"]["prediction"] == "anomalous"


def test_volume_score_leaves_out_near_empty_slices_and_masks_the_map():
    """Slices with almost no head are not scored (as in training); the map is zero outside the foreground."""
    from monai_anomaly.transforms.postprocessing import VolumeAnomalyScored

    m = torch.full((1, 8, 8, 4), 0.1)
    m[..., 0] = 5.0  # an empty slice with a large (meaningless) error: it would dominate without the selection
    m[:, 2:6, 2:6, 2] = 1.0  # a lesion inside the head
    fg = torch.zeros(1, 8, 8, 4)
    fg[:, 1:7, 1:7, 1:] = 1.0
    fg[:, 0, 0, 0] = 1.0  # 1 of 64 pixels: below min_foreground
    d = VolumeAnomalyScored(aggregation="max", min_foreground=0.05, foreground_key="foreground")(
        {"anomaly_map": m.clone(), "foreground": fg}
    )
    r = d["result"]
    assert r["scored_slices"] == [1, 2, 3] and r["slice_scores"][0] == 0.0
    assert r["volume_score"] == pytest.approx(r["slice_scores"][2]) and r["slice_scores"][2] > r["slice_scores"][1]
    assert float(d["anomaly_map"][fg == 0].abs().max()) == 0.0
    kept = VolumeAnomalyScored(aggregation="max")({"anomaly_map": m.clone()})["result"]
    assert kept["volume_score"] == pytest.approx(5.0)  # without a foreground the empty slice wins
    with pytest.raises(ValueError, match="min_foreground"):
        VolumeAnomalyScored(min_foreground=1.5)


def test_whole_slice_mean_is_taken_over_the_square_the_network_saw():
    """A non-square slice is padded to a square for the network: its 'image' mean matches that padded square's."""
    from monai_anomaly.inferers.slice import fit_to_square
    from monai_anomaly.transforms.postprocessing import VolumeAnomalyScore

    m = torch.zeros(1, 30, 40, 1)
    m[:, 10:20, 10:30] = 1.0
    fg = torch.ones_like(m)
    r = VolumeAnomalyScore(score_region="image", aggregation="mean")(m, fg)
    padded, _ = fit_to_square(m[..., 0][None], (40, 40))
    assert r["volume_score"] == pytest.approx(float(padded.mean()), rel=1e-4)
    assert VolumeAnomalyScore(aggregation="mean")(m, fg)["volume_score"] == pytest.approx(200 / 1200)
