"""One anomaly score per slice (or per 2D image) from its anomaly map."""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["SCORE_REGIONS", "SLICE_SCORE_METHODS", "score_slices", "slice_scores"]

SLICE_SCORE_METHODS = ("mean", "max", "topk", "percentile")
SCORE_REGIONS = ("foreground", "image")


def _sorted_score(v: torch.Tensor, method: str, k: float, q: float) -> torch.Tensor:
    """Score of one sample's (non-empty, 1-D, float64) pixel values."""
    if method == "mean":
        return v.mean()
    if method == "max":
        return v.max()
    s, _ = torch.sort(v, descending=True)
    n = s.numel()
    if method == "topk":
        return s[: max(1, math.ceil(k * n))].mean()
    # percentile with linear interpolation (numpy's default), on the ascending order
    pos = (q / 100.0) * (n - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, n - 1)
    frac = pos - lo
    a, b = s[n - 1 - lo], s[n - 1 - hi]
    return a + (b - a) * frac


def slice_scores(
    maps: torch.Tensor | np.ndarray,
    method: str = "mean",
    k: float = 0.01,
    q: float = 99.0,
    mask: torch.Tensor | np.ndarray | None = None,
) -> torch.Tensor:
    """Reduce each map of a batch to one score.

    Args:
        maps: ``(B, C, H, W[, D])`` anomaly maps (all channels' pixels count together).
        method: ``"mean"``, ``"max"``, ``"topk"`` (mean of the top ``k`` fraction of pixels, at least one pixel) or
            ``"percentile"`` (the ``q``-th percentile, linear interpolation as :func:`numpy.percentile`).
        k: fraction in ``(0, 1]`` for ``"topk"``.
        q: percentile in ``[0, 100]`` for ``"percentile"``.
        mask: optional bool / 0-1 mask broadcastable to ``maps`` (e.g. the brain foreground); only pixels inside it
            count, and a sample whose mask is empty scores 0.

    Returns:
        ``(B,)`` float32 tensor on the maps' device.

    Raises:
        ValueError: unknown method, ``k`` / ``q`` out of range, a mask that does not broadcast, or NaN in a map.

    Example:
        >>> m = torch.zeros(2, 1, 10, 10); m[1, 0, 0, :5] = 1.0
        >>> slice_scores(m, "topk", k=0.05).tolist()
        [0.0, 1.0]
    """
    if method not in SLICE_SCORE_METHODS:
        raise ValueError(f"method must be one of {SLICE_SCORE_METHODS}, got {method!r}")
    if method == "topk" and not 0 < k <= 1:
        raise ValueError(f"k must be a fraction in (0, 1], got {k}")
    if method == "percentile" and not 0 <= q <= 100:
        raise ValueError(f"q must be in [0, 100], got {q}")
    t = maps if isinstance(maps, torch.Tensor) else torch.as_tensor(np.asarray(maps))
    t = t.as_tensor() if hasattr(t, "as_tensor") else t
    if t.ndim < 2:
        raise ValueError(f"maps must be batched, (B, C, H, W[, D]); got shape {tuple(t.shape)}")
    device = t.device
    t = t.detach().to(torch.float64)
    if torch.isnan(t).any():
        bad = torch.isnan(t.reshape(t.shape[0], -1)).any(dim=1).nonzero().flatten().tolist()
        raise ValueError(f"anomaly maps contain NaN (batch indices {bad})")
    b = t.shape[0]
    if mask is not None:
        mk = mask if isinstance(mask, torch.Tensor) else torch.as_tensor(np.asarray(mask))
        mk = mk.as_tensor() if hasattr(mk, "as_tensor") else mk
        mk = mk.to(t.device)
        mk = mk if mk.dtype == torch.bool else mk > 0.5
        try:
            mk = torch.broadcast_to(mk, t.shape)
        except RuntimeError as e:
            raise ValueError(f"mask of shape {tuple(mk.shape)} does not broadcast to maps {tuple(t.shape)}") from e
        mk = mk.reshape(b, -1)
    flat = t.reshape(b, -1)
    out = torch.zeros(b, dtype=torch.float64)
    for i in range(b):
        v = flat[i] if mask is None else flat[i][mk[i]]
        if v.numel():
            out[i] = _sorted_score(v, method, k, q)
    return out.to(device=device, dtype=torch.float32)


def score_slices(
    maps: torch.Tensor,
    foreground: torch.Tensor | None = None,
    method: str = "mean",
    region: str = "foreground",
    k: float = 0.01,
    q: float = 99.0,
) -> torch.Tensor:
    """The slice scores of every door: validation, ``evaluate``, ``infer``, ``monai.bundle run`` and MONAI Label.

    Called on maps at the size the network was trained on (where the thresholds are fitted), already 0 outside the
    foreground (:meth:`AnomalyMapNet.predict <monai_anomaly.networks.anomaly_net.AnomalyMapNet.predict>`).

    Args:
        maps: ``(B, 1, H, W)`` anomaly maps.
        foreground: ``(B, 1, H, W)`` foreground masks, or ``None``.
        method: :data:`SLICE_SCORE_METHODS`.
        region: ``"foreground"`` scores the foreground pixels only; ``"image"`` the whole slice (the map being 0
            outside the foreground: a slice's total in-body error over the slice area, the published convention).
        k: ``"topk"`` fraction.
        q: ``"percentile"`` percentile.

    Example:
        >>> m = torch.ones(1, 1, 4, 4); fg = torch.zeros(1, 1, 4, 4); fg[..., :2, :] = 1
        >>> score_slices(m * fg, fg, "mean", "foreground").item(), score_slices(m * fg, fg, "mean", "image").item()
        (1.0, 0.5)
    """
    if region not in SCORE_REGIONS:
        raise ValueError(f"region must be one of {SCORE_REGIONS}, got {region!r}")
    mask = foreground if region == "foreground" else None
    return slice_scores(maps, method=method, k=k, q=q, mask=mask)
