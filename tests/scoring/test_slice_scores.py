"""Tests for monai_anomaly.scoring.slice_scores."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from monai_anomaly.scoring.slice_scores import slice_scores


def _np_score(v: np.ndarray, method: str, k: float, q: float) -> float:
    if v.size == 0:
        return 0.0
    if method == "mean":
        return float(v.mean())
    if method == "max":
        return float(v.max())
    if method == "topk":
        return float(np.sort(v)[::-1][: max(1, math.ceil(k * v.size))].mean())
    return float(np.percentile(v, q))


@pytest.mark.parametrize("method", ["mean", "max", "topk", "percentile"])
@pytest.mark.parametrize("shape", [(3, 1, 16, 16), (2, 2, 8, 8, 4)])
def test_matches_numpy_reference(method, shape):
    rng = np.random.default_rng(0)
    maps = rng.gamma(2.0, 1.0, size=shape).astype(np.float32)
    got = slice_scores(torch.from_numpy(maps), method=method, k=0.05, q=97.5)
    assert got.shape == (shape[0],) and got.dtype == torch.float32
    want = [_np_score(maps[i].astype(np.float64).ravel(), method, 0.05, 97.5) for i in range(shape[0])]
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-6)


@pytest.mark.parametrize("method", ["mean", "max", "topk", "percentile"])
def test_mask_restricts_pixels_and_empty_mask_scores_zero(method):
    rng = np.random.default_rng(1)
    maps = rng.random((3, 1, 12, 12))
    mask = np.zeros((3, 1, 12, 12), dtype=bool)
    mask[0, 0, 2:6, 2:9] = True
    mask[1] = rng.random((1, 12, 12)) > 0.5
    # sample 2: empty mask
    maps[:, :, 11, 11] = 50.0  # a hot pixel outside every mask must not count
    got = slice_scores(maps, method=method, k=0.1, q=90, mask=mask)
    want = [_np_score(maps[i][mask[i]], method, 0.1, 90) for i in range(3)]
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-6)
    assert got[2] == 0.0


def test_broadcast_mask_and_hand_values():
    m = torch.zeros(2, 1, 10, 10)
    m[1, 0, 0, :5] = 1.0  # 5 hot pixels of 100
    assert slice_scores(m, "max").tolist() == [0.0, 1.0]
    assert slice_scores(m, "mean").tolist() == pytest.approx([0.0, 0.05])
    assert slice_scores(m, "topk", k=0.05).tolist() == [0.0, 1.0]
    assert slice_scores(m, "topk", k=0.1).tolist() == pytest.approx([0.0, 0.5])
    assert slice_scores(m, "topk", k=1e-6).tolist() == [0.0, 1.0]  # at least one pixel
    fg = torch.zeros(1, 1, 10, 10)
    fg[..., 1:, :] = 1  # excludes the hot row for every sample
    assert slice_scores(m, "max", mask=fg).tolist() == [0.0, 0.0]


def test_ties_and_constant_maps():
    m = torch.full((1, 1, 4, 4), 0.3)
    for method in ("mean", "max", "topk", "percentile"):
        assert slice_scores(m, method).item() == pytest.approx(0.3)


def test_errors():
    m = torch.rand(2, 1, 4, 4)
    with pytest.raises(ValueError, match="method"):
        slice_scores(m, "median")
    with pytest.raises(ValueError, match="k must"):
        slice_scores(m, "topk", k=0)
    with pytest.raises(ValueError, match="q must"):
        slice_scores(m, "percentile", q=101)
    with pytest.raises(ValueError, match="broadcast"):
        slice_scores(m, mask=torch.ones(3, 1, 4, 4))
    m[1, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"NaN \(batch indices \[1\]\)"):
        slice_scores(m)
