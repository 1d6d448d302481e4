"""Tests for monai_anomaly.metrics.pixel (compared with scikit-learn and a brute-force Dice)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from monai_anomaly.metrics.pixel import dice_sweep, pixel_metrics


def _maps_and_masks(seed=0, shape=(3, 1, 24, 24)):
    rng = np.random.default_rng(seed)
    masks = np.zeros(shape, dtype=np.uint8)
    masks[0, 0, 4:10, 5:12] = 1
    masks[2, 0, 15:20, 2:6] = 1
    maps = rng.random(shape) * 0.6 + 0.5 * masks  # lesions brighter, overlapping ranges
    return maps.astype(np.float32), masks


def _dice(pred, gt):
    return 2 * np.sum(pred & gt) / (pred.sum() + gt.sum())


def test_matches_sklearn_and_brute_force_dice():
    maps, masks = _maps_and_masks()
    r = pixel_metrics(torch.from_numpy(maps), torch.from_numpy(masks), n_thresholds=50)
    v, y = maps.ravel().astype(np.float64), masks.ravel() > 0
    assert r["pixel_auroc"] == roc_auc_score(y, v)
    assert r["pixel_auprc"] == average_precision_score(y, v)
    assert (r["n_pixels"], r["n_positive"], r["subsampled"]) == (v.size, int(y.sum()), False)
    cands = np.unique(np.quantile(v, np.linspace(0, 1, 50), method="lower"))
    dices = [_dice(v >= t, y) for t in cands]
    assert r["best_dice"] == pytest.approx(max(dices))
    assert r["best_dice_threshold"] == cands[int(np.argmax(dices))]
    assert _dice(v >= r["best_dice_threshold"], y) == pytest.approx(r["best_dice"])
    exact = pixel_metrics(maps, masks)  # every distinct value is a candidate
    assert exact["best_dice"] == pytest.approx(max(_dice(v >= t, y) for t in np.unique(v)))
    assert exact["best_dice"] >= r["best_dice"]


def test_perfect_map_and_ties():
    m = np.zeros((1, 1, 8, 8))
    gt = np.zeros_like(m)
    gt[..., 2:4, 2:4] = 1
    m[..., 2:4, 2:4] = 0.9
    r = pixel_metrics(m, gt)
    assert (r["pixel_auroc"], r["pixel_auprc"], r["best_dice"], r["best_dice_threshold"]) == (1.0, 1.0, 1.0, 0.9)
    r = pixel_metrics(np.full((1, 1, 8, 8), 0.5), gt)  # a constant map: no information
    assert r["pixel_auroc"] == 0.5
    assert r["best_dice"] == pytest.approx(2 * 4 / (64 + 4))


def test_foreground_restricts_pixels():
    maps, masks = _maps_and_masks(seed=1)
    fg = np.zeros((1, 1, 24, 24), dtype=bool)  # broadcast over the batch
    fg[..., :, :12] = True
    r = pixel_metrics(maps, masks, foreground=fg)
    keep = np.broadcast_to(fg, maps.shape).ravel()
    v, y = maps.ravel()[keep].astype(np.float64), masks.ravel()[keep] > 0
    assert r["n_pixels"] == keep.sum()
    assert r["pixel_auroc"] == roc_auc_score(y, v)
    maps2 = maps.copy()
    maps2[..., 12:] = 100.0  # outside the foreground: must not matter
    assert pixel_metrics(maps2, masks, foreground=fg) == r


def test_subsampling_is_deterministic_and_close():
    maps, masks = _maps_and_masks(seed=2, shape=(4, 1, 32, 32))
    full = pixel_metrics(maps, masks)
    a = pixel_metrics(maps, masks, max_pixels=1500, seed=7)
    b = pixel_metrics(maps, masks, max_pixels=1500, seed=7)
    assert a == b and a["subsampled"] and not full["subsampled"]
    assert a["n_pixels"] == full["n_pixels"]  # Dice still counts every pixel
    assert a["pixel_auroc"] == pytest.approx(full["pixel_auroc"], abs=0.03)
    assert a["best_dice"] == pytest.approx(full["best_dice"], abs=0.05)


def test_dice_sweep_unsorted_thresholds():
    v = np.array([0.1, 0.5, 0.9, 0.7])
    gt = np.array([False, False, True, True])
    np.testing.assert_allclose(dice_sweep(v, gt, np.array([0.8, 0.0, 0.6])), [2 / 3, 4 / 6, 1.0])


def test_errors():
    maps, masks = _maps_and_masks()
    with pytest.raises(ValueError, match="no positive"):
        pixel_metrics(maps, np.zeros_like(masks))
    with pytest.raises(ValueError, match="inside the foreground"):
        pixel_metrics(maps, masks, foreground=np.zeros_like(masks))
    with pytest.raises(ValueError, match="no negative"):
        pixel_metrics(maps, np.ones_like(masks))
    with pytest.raises(ValueError, match="broadcast"):
        pixel_metrics(maps, masks[:, :, :10])
    bad = maps.copy()
    bad[0, 0, 0, :3] = np.nan
    with pytest.raises(ValueError, match="3 NaN/Inf"):
        pixel_metrics(bad, masks)
