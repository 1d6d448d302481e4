"""Tests for monai_anomaly.metrics.aucp on synthetic scores with a known AUC."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from monai_anomaly.metrics.aucp import debiased_auc, pseudo_auc


def _phi(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def test_pseudo_auc_is_auroc_of_normals_vs_unannotated():
    rng = np.random.default_rng(0)
    n, u = rng.normal(size=30), rng.normal(0.5, 1.0, size=40)
    assert pseudo_auc(n, u) == roc_auc_score(np.r_[np.zeros(30), np.ones(40)], np.r_[n, u])
    assert pseudo_auc([0.1, 0.2], [0.2, 0.1]) == 0.5  # ties count half


@pytest.mark.parametrize("d, pi", [(1.5, 0.4), (1.0, 0.7), (2.5, 0.2)])
def test_debiased_auc_recovers_true_auc(d, pi):
    rng = np.random.default_rng(42)
    true_auc = _phi(d / math.sqrt(2.0))  # two unit-variance Gaussians d apart
    known_normals = rng.normal(0.0, 1.0, 20000)
    n_u = 20000
    is_normal = rng.random(n_u) < pi
    unannotated = np.where(is_normal, rng.normal(0.0, 1.0, n_u), rng.normal(d, 1.0, n_u))
    aucp = pseudo_auc(known_normals, unannotated)
    # AUCp is biased towards 0.5 by the normals hidden in the unannotated set
    expected_aucp = (1 - pi) * true_auc + pi * 0.5
    assert aucp == pytest.approx(expected_aucp, abs=0.015)
    assert aucp < true_auc - 0.05
    est = debiased_auc(aucp, is_normal.mean())
    # the de-biasing divides the sampling error of AUCp by (1 - pi)
    assert est == pytest.approx(true_auc, abs=0.01 + 0.01 / (1 - pi))
    assert abs(est - true_auc) < abs(aucp - true_auc)


def test_debiased_auc_formula_and_clipping():
    assert debiased_auc(0.7, 0.0) == 0.7
    assert debiased_auc(0.7, 0.25) == pytest.approx((0.7 - 0.125) / 0.75)
    assert debiased_auc(0.8, 0.5) == 1.0  # 1.1 clipped
    assert debiased_auc(0.2, 0.5) == 0.0  # -0.1 clipped
    with pytest.raises(ValueError, match="normal_fraction"):
        debiased_auc(0.7, 1.0)
    with pytest.raises(ValueError, match="normal_fraction"):
        debiased_auc(0.7, -0.1)
    with pytest.raises(ValueError, match="aucp"):
        debiased_auc(1.2, 0.3)


def test_pseudo_auc_errors():
    with pytest.raises(ValueError, match="0 normal"):
        pseudo_auc([], [0.1])
    with pytest.raises(ValueError, match=r"unannotated scores contain 1 NaN/Inf value\(s\) at indices \[0\]"):
        pseudo_auc([0.1], [np.nan, 0.2])
