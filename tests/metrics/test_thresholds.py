"""Tests for monai_anomaly.metrics.thresholds."""

from __future__ import annotations

import json

import numpy as np
import pytest

from monai_anomaly.metrics.thresholds import Threshold, fit_threshold


def _labelled(seed=0, n0=120, n1=80, shift=1.5):
    rng = np.random.default_rng(seed)
    s = np.r_[rng.normal(0, 1, n0), rng.normal(shift, 1, n1)]
    lab = np.r_[np.zeros(n0, int), np.ones(n1, int)]
    return s, lab


def _brute(s, lab):
    """Every candidate threshold (each distinct score) with TPR, FPR, F1 for score >= t."""
    out = []
    for t in np.unique(s):
        p = s >= t
        tp, fp = np.sum(p & (lab == 1)), np.sum(p & (lab == 0))
        fn = np.sum(~p & (lab == 1))
        tpr, fpr = tp / lab.sum(), fp / (lab == 0).sum()
        f1 = 2 * tp / (2 * tp + fp + fn)
        out.append((t, tpr, fpr, f1))
    return np.array(out)


def test_mean_std_on_synthetic_normals():
    rng = np.random.default_rng(1)
    normals = rng.normal(2.0, 0.5, 5000)
    t = fit_threshold(normals, method="mean_std", k=3.0)
    assert t.value == pytest.approx(normals.mean() + 3 * normals.std())
    assert t.value == pytest.approx(3.5, abs=0.05)
    assert (t.method, t.split, t.params["k"], t.params["n"]) == ("mean_std", "val", 3.0, 5000)
    assert t.predict(normals).mean() == pytest.approx(0.00135, abs=0.002)  # Gaussian tail beyond 3 sd


def test_label_free_with_labels_uses_only_normals():
    s, lab = _labelled()
    t = fit_threshold(s, lab, method="mean_std", k=2.0)
    assert t.value == pytest.approx(s[lab == 0].mean() + 2 * s[lab == 0].std())
    p = fit_threshold(s, lab, method="percentile", q=95)
    assert p.value == pytest.approx(np.percentile(s[lab == 0], 95))
    assert p.predict(s[lab == 0]).mean() == pytest.approx(0.05, abs=0.01)
    # unknown (-1) labels are ignored by label-free methods
    lab2 = lab.copy()
    lab2[:10] = -1
    assert fit_threshold(s, lab2, method="percentile", q=50).value == pytest.approx(np.median(s[lab2 == 0]))


def test_youden_and_equal_error_match_brute_force():
    s, lab = _labelled(seed=2)
    b = _brute(s, lab)
    y = fit_threshold(s, lab, method="youden")
    j = b[:, 1] - b[:, 2]
    assert y.value in b[j == j.max(), 0]
    assert y.params["sensitivity"] - (1 - y.params["specificity"]) == pytest.approx(j.max())
    e = fit_threshold(s, lab, method="equal_error")
    gap = np.abs(b[:, 1] - (1 - b[:, 2]))
    assert e.value in b[gap == gap.min(), 0]
    assert abs(e.params["sensitivity"] - e.params["specificity"]) == pytest.approx(gap.min())


def test_f1_max_matches_brute_force_and_ties():
    s, lab = _labelled(seed=3)
    s = np.round(s, 1)  # many ties
    b = _brute(s, lab)
    f = fit_threshold(s, lab, method="f1_max")
    assert f.params["f1"] == pytest.approx(b[:, 3].max())
    assert f.value in b[np.isclose(b[:, 3], b[:, 3].max()), 0]


def test_separable_labels_give_a_separating_threshold():
    s = np.array([0.1, 0.2, 0.3, 0.7, 0.8])
    lab = np.array([0, 0, 0, 1, 1])
    for method in ("youden", "equal_error", "f1_max"):
        t = fit_threshold(s, lab, method=method)
        assert t.predict(s).tolist() == lab.tolist(), method
        assert t.params["n_normal"] == 3 and t.params["n_anomalous"] == 2


def test_manual_and_round_trip_through_json():
    t = fit_threshold([0.1, 0.2], method="manual", value=0.15)
    assert t == Threshold(0.15, "manual", "val", {})
    s, lab = _labelled()
    y = fit_threshold(s, lab, method="youden", split="val_normal")
    back = Threshold.from_dict(json.loads(json.dumps(y.to_dict())))
    assert back == y and back.split == "val_normal"
    pred = back.predict([back.value - 1e-9, back.value, back.value + 1])
    assert pred.dtype == np.int64 and pred.tolist() == [0, 1, 1]
    with pytest.raises(ValueError, match="misses"):
        Threshold.from_dict({"value": 1.0})


def test_errors():
    s, lab = _labelled()
    with pytest.raises(ValueError, match="never fitted on the test set"):
        fit_threshold(s, lab, method="youden", split="test")
    with pytest.raises(ValueError, match="never fitted on the test set"):
        fit_threshold(s, method="mean_std", split="test")
    for method in ("youden", "equal_error", "f1_max"):
        with pytest.raises(ValueError, match="needs anomalous"):
            fit_threshold(s[lab == 0], lab[lab == 0], method=method)
        with pytest.raises(ValueError, match="needs normal"):
            fit_threshold(s[lab == 1], lab[lab == 1], method=method)
        with pytest.raises(ValueError, match="needs labels"):
            fit_threshold(s, method=method)
    with pytest.raises(ValueError, match="exclude"):
        fit_threshold(s, np.r_[lab[:-1], -1], method="youden")
    with pytest.raises(ValueError, match="no label 0"):
        fit_threshold(s[lab == 1], lab[lab == 1], method="mean_std")
    with pytest.raises(ValueError, match="manual"):
        fit_threshold(s, method="manual")
    with pytest.raises(ValueError, match="method"):
        fit_threshold(s, method="otsu")
    with pytest.raises(ValueError, match=r"1 NaN/Inf value\(s\) at indices \[2\]"):
        fit_threshold([0.1, 0.2, np.nan], method="percentile")
