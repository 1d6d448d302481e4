"""Pixel-level localisation metrics of anomaly maps against lesion masks."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

__all__ = ["dice_sweep", "pixel_metrics"]


def _np(x: Any, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if a.dtype == object:
        raise ValueError(f"{name} cannot be read as an array")
    return a


def dice_sweep(values: np.ndarray, positives: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Dice of ``values >= t`` against ``positives`` for every threshold, pooled over all given pixels.

    Counts are exact over all pixels (one ``searchsorted`` and two ``bincount`` calls, no per-threshold pass).

    Args:
        values: 1-D map values.
        positives: 1-D bool ground truth, same length.
        thresholds: 1-D thresholds.

    Returns:
        Dice per threshold (same order as ``thresholds``).
    """
    order = np.argsort(thresholds, kind="stable")
    t = np.asarray(thresholds, dtype=np.float64)[order]
    n_t = t.size
    b = np.searchsorted(t, values, side="right")  # number of thresholds <= value
    total = np.bincount(b, minlength=n_t + 1)
    pos = np.bincount(b, weights=positives.astype(np.float64), minlength=n_t + 1)
    # v >= t_j  <=>  b >= j + 1
    n_pred = np.cumsum(total[::-1])[::-1][1:]
    tp = np.cumsum(pos[::-1])[::-1][1:]
    denom = n_pred + positives.sum()
    dice_sorted = np.where(denom > 0, 2.0 * tp / np.maximum(denom, 1), 0.0)
    out = np.empty(n_t)
    out[order] = dice_sorted
    return out


def _subsample(y: np.ndarray, max_pixels: int, seed: int) -> np.ndarray:
    """Indices of a deterministic, class-stratified subsample (keeps at least one pixel of each present class)."""
    rng = np.random.default_rng(seed)
    pos = np.flatnonzero(y)
    neg = np.flatnonzero(~y)
    n_pos = min(pos.size, max(1, round(max_pixels * pos.size / y.size)))
    n_neg = min(neg.size, max(1, max_pixels - n_pos))
    keep = np.concatenate([rng.choice(pos, n_pos, replace=False), rng.choice(neg, n_neg, replace=False)])
    return np.sort(keep)


def pixel_metrics(
    maps: Any,
    masks: Any,
    foreground: Any = None,
    max_pixels: int = 2_000_000,
    seed: int = 0,
    n_thresholds: int | None = None,
) -> dict[str, Any]:
    """Pixel AUROC / AUPRC and the best pooled Dice of anomaly maps against lesion masks.

    Args:
        maps: anomaly maps, any shape (e.g. ``(B, 1, H, W)``), tensor or array.
        masks: lesion masks broadcastable to ``maps`` (bool or 0/1; values > 0.5 are lesion).
        foreground: optional mask broadcastable to ``maps``; only its pixels count (e.g. the brain).
        max_pixels: above this many pixels, AUROC / AUPRC and the Dice thresholds use a deterministic,
            class-stratified random subsample of this size (``seed``); Dice itself is counted on all pixels.
        seed: subsampling seed.
        n_thresholds: ``None`` sweeps every distinct map value (of the subsample when subsampled), which gives the
            exact best Dice; an int takes that many evenly spaced quantiles of the map values instead (coarser: with
            small lesions few quantiles fall in the lesion's intensity range).

    Returns:
        dict with "pixel_auroc", "pixel_auprc" (average precision), "best_dice", "best_dice_threshold" (prediction =
        ``map >= threshold``), "n_pixels", "n_positive" and "subsampled".

    Raises:
        ValueError: shapes that do not broadcast, NaN/Inf in the maps, no lesion pixel, or no non-lesion pixel.

    Example:
        >>> m = np.zeros((1, 1, 8, 8)); gt = np.zeros_like(m); gt[..., 2:4, 2:4] = 1; m[..., 2:4, 2:4] = 0.9
        >>> r = pixel_metrics(m, gt)
        >>> r["pixel_auroc"], r["best_dice"], r["best_dice_threshold"]
        (1.0, 1.0, 0.9)
    """
    if max_pixels < 2:
        raise ValueError(f"max_pixels must be >= 2, got {max_pixels}")
    m = _np(maps, "maps").astype(np.float64, copy=False)
    try:
        y = np.broadcast_to(_np(masks, "masks"), m.shape) > 0.5
        fg = None if foreground is None else np.broadcast_to(_np(foreground, "foreground"), m.shape) > 0.5
    except ValueError as e:
        raise ValueError(f"masks / foreground do not broadcast to the maps' shape {m.shape}: {e}") from e
    v, y = m.reshape(-1), y.reshape(-1)
    if fg is not None:
        keep = fg.reshape(-1)
        v, y = v[keep], y[keep]
    bad = np.flatnonzero(~np.isfinite(v))
    if bad.size:
        raise ValueError(f"anomaly maps contain {bad.size} NaN/Inf pixel(s) (within the foreground)")
    n_pos = int(y.sum())
    if n_pos == 0:
        raise ValueError(
            "masks contain no positive (lesion) pixel" + (" inside the foreground" if fg is not None else "")
        )
    if n_pos == y.size:
        raise ValueError("masks contain no negative pixel: every counted pixel is lesion")
    subsampled = v.size > max_pixels
    if subsampled:
        idx = _subsample(y, max_pixels, seed)
        vs, ys = v[idx], y[idx]
    else:
        vs, ys = v, y
    if n_thresholds is None:
        thresholds = np.unique(vs)
    else:
        thresholds = np.unique(np.quantile(vs, np.linspace(0.0, 1.0, max(2, n_thresholds)), method="lower"))
    dice = dice_sweep(v, y, thresholds)
    best = int(np.argmax(dice))
    return {
        "pixel_auroc": float(roc_auc_score(ys, vs)),
        "pixel_auprc": float(average_precision_score(ys, vs)),
        "best_dice": float(dice[best]),
        "best_dice_threshold": float(thresholds[best]),
        "n_pixels": int(v.size),
        "n_positive": n_pos,
        "subsampled": bool(subsampled),
    }
