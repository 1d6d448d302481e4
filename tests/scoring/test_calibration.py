"""Tests for monai_anomaly.scoring.calibration."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from monai_anomaly.scoring.calibration import NormalCalibrator


def test_empirical_cdf_values():
    cal = NormalCalibrator().fit([4.0, 1.0, 3.0, 2.0])
    assert cal.n_samples == 4 and cal.split == "val" and cal.fitted
    got = cal(np.array([0.5, 1.0, 2.0, 2.5, 4.0, 9.0]))
    np.testing.assert_allclose(got, [0.0, 0.25, 0.5, 0.625, 1.0, 1.0])


def test_ties_count_all_equal_normals():
    cal = NormalCalibrator().fit([1.0, 2.0, 2.0, 2.0, 5.0])
    assert cal(2.0) == pytest.approx(0.8)  # 4 of 5 normals are <= 2
    assert cal(1.0) == pytest.approx(0.2)
    assert cal(3.5) == pytest.approx(0.9)


def test_matches_percentile_rank_on_gaussians_and_is_monotone():
    rng = np.random.default_rng(0)
    normals = rng.normal(size=2000)
    cal = NormalCalibrator().fit(torch.from_numpy(normals))
    x = np.linspace(-4, 4, 101)
    p = cal(x)
    assert np.all(np.diff(p) >= 0) and p[0] == 0.0 and p[-1] == 1.0
    empirical = (normals[None, :] <= x[:, None]).mean(axis=1)
    assert np.max(np.abs(p - empirical)) <= 1.0 / normals.size + 1e-12
    assert cal(0.0) == pytest.approx(0.5, abs=0.03)


def test_output_type_follows_input():
    cal = NormalCalibrator().fit([0.0, 1.0])
    t = cal(torch.tensor([[0.5, 2.0]]))
    assert isinstance(t, torch.Tensor) and t.shape == (1, 2)
    assert torch.allclose(t, torch.tensor([[0.75, 1.0]]))
    assert isinstance(cal(0.5), float)
    assert isinstance(cal([0.5]), np.ndarray)
    assert np.isnan(cal(float("nan")))


def test_state_dict_round_trip_with_weights_only(tmp_path):
    cal = NormalCalibrator(split="val_normal").fit([0.3, 0.1, 0.2])
    path = tmp_path / "calib.pt"
    torch.save({"calibrator": cal.state_dict()}, path)
    loaded = torch.load(path, weights_only=True)["calibrator"]
    assert loaded["split"] == "val_normal" and loaded["n_samples"] == 3
    cal2 = NormalCalibrator().load_state_dict(loaded)
    assert cal2.split == "val_normal" and cal2.n_samples == 3
    x = np.array([0.05, 0.15, 0.25, 0.35])
    np.testing.assert_array_equal(cal2(x), cal(x))


def test_errors():
    with pytest.raises(RuntimeError, match="not fitted"):
        NormalCalibrator()(0.5)
    with pytest.raises(RuntimeError, match="not fitted"):
        NormalCalibrator().state_dict()
    with pytest.raises(ValueError, match="test set"):
        NormalCalibrator(split="test")
    with pytest.raises(ValueError, match="test set"):
        NormalCalibrator().fit([1.0], split="test")
    with pytest.raises(ValueError, match="zero normal"):
        NormalCalibrator().fit([])
    with pytest.raises(ValueError, match=r"1 NaN/Inf value\(s\) at indices \[1\]"):
        NormalCalibrator().fit([0.1, float("inf"), 0.2])
    with pytest.raises(ValueError, match="n_samples"):
        NormalCalibrator().load_state_dict({"normal_scores": torch.zeros(2), "split": "val", "n_samples": 3})
