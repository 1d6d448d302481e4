"""Volume scores from the slice scores of each volume."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["AGGREGATION_METHODS", "aggregate_by_volume", "aggregate_scores"]

AGGREGATION_METHODS = ("mean", "max", "topk", "percentile", "fraction_above")


def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _plain(v: Any) -> Any:
    """A python scalar for numpy / torch scalars, the value itself otherwise."""
    if isinstance(v, torch.Tensor):
        return v.item()
    if isinstance(v, np.generic):
        return v.item()
    return v


def aggregate_scores(
    scores: Sequence[float] | np.ndarray | torch.Tensor,
    method: str = "mean",
    k: float = 0.1,
    q: float = 90.0,
    threshold: float | None = None,
) -> float:
    """One volume's score from its slice scores.

    Args:
        scores: the volume's slice scores (any order).
        method: ``"mean"``, ``"max"``, ``"topk"`` (mean of the top ``k`` fraction of slices, at least one slice),
            ``"percentile"`` (``q``-th percentile, :func:`numpy.percentile`), or ``"fraction_above"`` (share of
            slices with score ``>= threshold``, the same rule as :meth:`Threshold.predict
            <monai_anomaly.metrics.thresholds.Threshold.predict>`).
        k: fraction in ``(0, 1]`` for ``"topk"``.
        q: percentile in ``[0, 100]`` for ``"percentile"``.
        threshold: slice threshold for ``"fraction_above"``.

    Returns:
        the volume score as a float.

    Raises:
        ValueError: unknown method, no scores, non-finite scores, ``fraction_above`` without a threshold, or ``k`` /
            ``q`` out of range.

    Example:
        >>> aggregate_scores([0.1, 0.2, 0.9, 0.7], "topk", k=0.5)
        0.8
    """
    if method not in AGGREGATION_METHODS:
        raise ValueError(f"method must be one of {AGGREGATION_METHODS}, got {method!r}")
    s = _to_numpy(scores).astype(np.float64).reshape(-1)
    if s.size == 0:
        raise ValueError("cannot aggregate an empty list of slice scores")
    bad = np.flatnonzero(~np.isfinite(s))
    if bad.size:
        raise ValueError(f"slice scores contain {bad.size} NaN/Inf value(s) at indices {bad[:10].tolist()}")
    if method == "mean":
        return float(s.mean())
    if method == "max":
        return float(s.max())
    if method == "topk":
        if not 0 < k <= 1:
            raise ValueError(f"k must be a fraction in (0, 1], got {k}")
        n = max(1, math.ceil(k * s.size))
        return float(np.sort(s)[::-1][:n].mean())
    if method == "percentile":
        if not 0 <= q <= 100:
            raise ValueError(f"q must be in [0, 100], got {q}")
        return float(np.percentile(s, q))
    if threshold is None:
        raise ValueError("method 'fraction_above' needs a slice threshold (threshold=...)")
    return float(np.mean(s >= float(threshold)))


def aggregate_by_volume(
    volume_ids: Sequence[Any],
    scores: Sequence[float] | np.ndarray | torch.Tensor,
    labels: Sequence[int] | np.ndarray | torch.Tensor | None = None,
    method: str = "mean",
    **kw: Any,
) -> list[dict[str, Any]]:
    """Group slice scores by volume and aggregate each group.

    Args:
        volume_ids: one id per slice.
        scores: one score per slice.
        labels: optional slice labels (0 normal, 1 anomalous, -1 unknown); a volume's label is the max of its slices'.
        method: aggregation method of :func:`aggregate_scores`.
        kw: ``k``, ``q``, ``threshold`` for :func:`aggregate_scores`.

    Returns:
        one row per volume, in order of first appearance:
        ``{"volume_id", "volume_score", "n_slices", "label"}`` (``label`` is -1 when no labels are given).

    Raises:
        ValueError: lengths differ, or an :func:`aggregate_scores` error (with the volume id in the message).

    Example:
        >>> rows = aggregate_by_volume(["a", "a", "b"], [0.1, 0.3, 0.5], labels=[0, 1, 0], method="max")
        >>> [(r["volume_id"], r["volume_score"], r["n_slices"], r["label"]) for r in rows]
        [('a', 0.3, 2, 1), ('b', 0.5, 1, 0)]
    """
    raw = volume_ids.tolist() if isinstance(volume_ids, (np.ndarray, torch.Tensor)) else list(volume_ids)
    ids = [_plain(v) for v in raw]
    s = _to_numpy(scores).astype(np.float64).reshape(-1)
    if len(ids) != s.size:
        raise ValueError(f"got {len(ids)} volume ids but {s.size} scores")
    lab = None
    if labels is not None:
        lab = _to_numpy(labels).reshape(-1).astype(np.int64)
        if lab.size != s.size:
            raise ValueError(f"got {s.size} scores but {lab.size} labels")
    groups: dict[Any, list[int]] = {}
    for i, v in enumerate(ids):
        groups.setdefault(v, []).append(i)
    rows = []
    for v, idx in groups.items():
        try:
            vs = aggregate_scores(s[idx], method=method, **kw)
        except ValueError as e:
            raise ValueError(f"volume {v!r}: {e}") from e
        rows.append(
            {
                "volume_id": v,
                "volume_score": vs,
                "n_slices": len(idx),
                "label": int(lab[idx].max()) if lab is not None else -1,
            }
        )
    return rows
