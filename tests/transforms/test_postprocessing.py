"""Tests of monai_anomaly.transforms.postprocessing: volume score and verdict from the inferer's slice scores."""

from __future__ import annotations

import json

import pytest
import torch
from monai.data import MetaTensor

from monai_anomaly.metrics.thresholds import DecisionThresholds, Threshold
from monai_anomaly.scoring.aggregation import aggregate_scores
from monai_anomaly.transforms.postprocessing import VolumeAnomalyScore, VolumeAnomalyScored


def _thresholds(slice_value=0.5, volume=0.5, rule="derived: the slice threshold applied to the max"):
    return DecisionThresholds(Threshold(slice_value, "mean_std", "val", {"k": 3.0}), volume, rule, 42)


def test_volume_score_is_the_aggregate_of_the_scored_slices_only():
    scores = torch.tensor([0.0, 0.9, 0.2, 0.4, 0.0])
    scored = torch.tensor([False, True, True, True, False])
    r = VolumeAnomalyScore("topk", {"k": 0.5}, _thresholds(0.5, 0.5))(scores, scored)
    assert r["volume_score"] == pytest.approx(aggregate_scores([0.9, 0.2, 0.4], "topk", k=0.5))
    assert r["scored_slices"] == [1, 2, 3] and r["prediction"] == "anomalous"
    assert r["model_epoch"] == 42 and r["volume_threshold"] == 0.5
    assert r["decided_by"].startswith("volume threshold 0.5 (derived")
    json.dumps(r)  # JSON-able as it is
    low = VolumeAnomalyScore("mean", thresholds=_thresholds(0.1, 0.8, "fitted (mean_std) on 6 normal val volumes"))
    assert low(scores, scored)["prediction"] == "normal"  # the volume threshold decides, not the slice one


def test_without_thresholds_scores_only_and_fraction_above_needs_a_slice_threshold():
    r = VolumeAnomalyScore("max")(torch.tensor([0.1, 0.3]))
    assert r["prediction"] is None and r["volume_score"] == pytest.approx(0.3)
    assert r["decided_by"] == "no volume threshold: scores only"
    with pytest.raises(ValueError, match="fraction_above"):
        VolumeAnomalyScore("fraction_above")
    r = VolumeAnomalyScore("fraction_above", thresholds=_thresholds(0.25, 0.4))(torch.tensor([0.1, 0.3, 0.5]))
    assert r["volume_score"] == pytest.approx(2 / 3) and r["prediction"] == "anomalous"
    with pytest.raises(ValueError, match="aggregation"):
        VolumeAnomalyScore("median")


def test_dictionary_version_leaves_the_map_with_the_image_meta():
    img = MetaTensor(torch.rand(1, 8, 8, 3), meta={"filename_or_obj": "/d/scan.nii.gz"})
    pred = {"anomaly_map": torch.rand(1, 8, 8, 3), "slice_scores": torch.tensor([0.2, 0.6, 0.1]),
            "scored": torch.tensor([True, True, False])}  # fmt: skip
    d = VolumeAnomalyScored("pred", "max", thresholds=_thresholds(0.5, 0.5))({"image": img, "pred": pred})
    assert isinstance(d["pred"], MetaTensor) and d["pred"].meta["filename_or_obj"] == "/d/scan.nii.gz"
    assert torch.equal(d["pred"].as_tensor(), pred["anomaly_map"])
    assert d["volume_score"] == pytest.approx(0.6) and d["result"]["prediction"] == "anomalous"
    assert d["result"]["slice_scores"] == pytest.approx([0.2, 0.6, 0.1])
    with pytest.raises(ValueError, match="AnomalySliceInferer"):
        VolumeAnomalyScored("pred")({"pred": torch.zeros(1, 4, 4)})


def test_thresholds_override_follow_the_rule():
    t = _thresholds(0.3, 0.3)
    assert t.override(slice=0.6).volume == 0.6  # a derived volume threshold follows the slice override
    fitted = _thresholds(0.3, 0.45, "fitted (mean_std) on 7 normal val volumes")
    assert fitted.override(slice=0.6).volume == 0.45  # a fitted one stays
    both = fitted.override(slice=0.6, volume=0.7)
    assert (both.slice.value, both.volume, both.slice_source, both.volume_source) == (
        0.6, 0.7, "--threshold", "--volume_threshold"
    )  # fmt: skip
    assert both.decided_by() == "volume threshold 0.7 (--volume_threshold)"
    assert t.to_dict()["model_epoch"] == 42 and fitted.slice.value == 0.3  # the original is unchanged
