"""Tests for monai_anomaly.metrics.classification (compared with scikit-learn)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from monai_anomaly.metrics.classification import binary_metrics, pr_curve_points, roc_curve_points


def _cases():
    rng = np.random.default_rng(0)
    lab = rng.integers(0, 2, 200)
    yield "random", lab, rng.normal(size=200) + lab
    lab = rng.integers(0, 2, 60)
    yield "tied", lab, rng.integers(0, 4, 60).astype(float)  # heavy ties
    yield "perfect", np.array([0, 0, 0, 1, 1]), np.array([0.1, 0.2, 0.3, 0.8, 0.9])
    yield "inverted", np.array([0, 0, 1, 1]), np.array([0.9, 0.8, 0.2, 0.1])
    yield "constant", np.array([0, 1, 0, 1, 1]), np.full(5, 0.5)
    yield "two", np.array([1, 0]), np.array([0.3, 0.7])


@pytest.mark.parametrize("name, lab, s", list(_cases()), ids=[c[0] for c in _cases()])
def test_matches_sklearn(name, lab, s):
    thr = float(np.median(s))
    m = binary_metrics(lab, s, threshold=thr)
    pred = (s >= thr).astype(int)
    assert m["auroc"] == skm.roc_auc_score(lab, s)
    assert m["auprc"] == skm.average_precision_score(lab, s)
    assert (m["n"], m["n_normal"], m["n_anomalous"]) == (lab.size, int((lab == 0).sum()), int(lab.sum()))
    assert m["threshold"] == thr
    assert m["confusion_matrix"] == skm.confusion_matrix(lab, pred, labels=[0, 1]).tolist()
    assert m["sensitivity"] == pytest.approx(skm.recall_score(lab, pred))
    assert m["specificity"] == pytest.approx(skm.recall_score(lab, pred, pos_label=0))
    assert m["precision"] == skm.precision_score(lab, pred, zero_division=0)
    assert m["f1"] == skm.f1_score(lab, pred, zero_division=0)
    assert m["accuracy"] == skm.accuracy_score(lab, pred)
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(lab, pred))


def test_hand_example_and_input_types():
    m = binary_metrics(torch.tensor([0, 0, 1, 1]), torch.tensor([0.1, 0.4, 0.35, 0.8]), threshold=0.3)
    assert m["auroc"] == 0.75
    assert m["confusion_matrix"] == [[1, 1], [0, 2]]
    assert (m["sensitivity"], m["specificity"]) == (1.0, 0.5)
    assert set(binary_metrics([0, 1], [0.0, 1.0])) == {"auroc", "auprc", "n", "n_normal", "n_anomalous"}
    assert binary_metrics([0.0, 1.0], [0.0, 1.0])["auroc"] == 1.0  # float labels 0.0 / 1.0 are fine


def test_threshold_above_all_scores_predicts_nothing():
    m = binary_metrics([0, 1, 1], [0.1, 0.2, 0.3], threshold=1.0)
    assert m["confusion_matrix"] == [[1, 0], [2, 0]]
    assert (m["sensitivity"], m["specificity"], m["precision"], m["f1"]) == (0.0, 1.0, 0.0, 0.0)


def test_one_class():
    with pytest.raises(ValueError, match="all 3 labels are normal"):
        binary_metrics([0, 0, 0], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="anomalous"):
        binary_metrics([1, 1], [0.1, 0.2], threshold=0.15)
    m = binary_metrics([0, 0, 0], [0.1, 0.2, 0.3], threshold=0.25, require_both_classes=False)
    assert np.isnan(m["auroc"]) and np.isnan(m["sensitivity"])
    assert m["specificity"] == pytest.approx(2 / 3)


def test_bad_input_errors():
    with pytest.raises(ValueError, match=r"2 NaN/Inf value\(s\) at indices \[1, 3\]"):
        binary_metrics([0, 1, 0, 1], [0.1, np.nan, 0.2, np.inf])
    with pytest.raises(ValueError, match="differ in length: 3 labels, 2 scores"):
        binary_metrics([0, 1, 0], [0.1, 0.2])
    with pytest.raises(ValueError, match="exclude those samples"):
        binary_metrics([0, 1, -1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match=r"found \[2.0\]"):
        binary_metrics([0, 1, 2], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="empty"):
        binary_metrics([], [])
    with pytest.raises(ValueError, match="finite"):
        binary_metrics([0, 1], [0.1, 0.2], threshold=float("nan"))


def test_curve_points_match_sklearn():
    rng = np.random.default_rng(3)
    lab = rng.integers(0, 2, 50)
    s = rng.random(50) + 0.3 * lab
    for got, want in zip(roc_curve_points(lab, s), skm.roc_curve(lab, s)):
        assert isinstance(got, np.ndarray)
        np.testing.assert_array_equal(got, want)
    for got, want in zip(pr_curve_points(lab, s), skm.precision_recall_curve(lab, s)):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match="both classes"):
        roc_curve_points([1, 1], [0.1, 0.2])
