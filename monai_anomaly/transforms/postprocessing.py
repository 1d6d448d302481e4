"""Post-transforms from a model's output to anomaly maps, slice scores and volume results.

They work on one sample (channel first, no batch axis), as MONAI post-transforms after ``decollate_batch``, so they fit
a bundle's ``postprocessing`` and a MONAI Label task:

- :class:`ReconstructionToAnomalyMapd`: ``image`` + ``reconstruction`` -> ``anomaly_map`` ``(1, H, W[, D])``;
- :class:`AnomalyScored`: ``anomaly_map`` -> ``score`` (float) of a 2D image / slice;
- :class:`VolumeAnomalyScored`: a 3D ``anomaly_map`` -> per-slice scores, the volume score and a prediction, in
  ``d["result"]`` as JSON-able values.
"""

from __future__ import annotations

import copy
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends

from monai_anomaly.metrics.thresholds import Threshold
from monai_anomaly.scoring.aggregation import AGGREGATION_METHODS, aggregate_scores
from monai_anomaly.scoring.maps import MAP_METHODS, compute_anomaly_map
from monai_anomaly.scoring.slice_scores import SLICE_SCORE_METHODS, slice_scores
from monai_anomaly.utils.enums import AnomalyKeys

__all__ = [
    "AnomalyScore",
    "AnomalyScoreD",
    "AnomalyScoreDict",
    "AnomalyScored",
    "ReconstructionToAnomalyMap",
    "ReconstructionToAnomalyMapD",
    "ReconstructionToAnomalyMapDict",
    "ReconstructionToAnomalyMapd",
    "VolumeAnomalyScore",
    "VolumeAnomalyScoreD",
    "VolumeAnomalyScoreDict",
    "VolumeAnomalyScored",
]


def _tensor(x: Any) -> torch.Tensor:
    if isinstance(x, MetaTensor):
        return x.as_tensor()
    if isinstance(x, torch.Tensor):
        return x
    return torch.as_tensor(np.asarray(x))


def _threshold_value(threshold: float | Threshold | Mapping[str, Any] | None) -> tuple[float | None, Any]:
    """``(value, JSON-able description)`` of a threshold given as a float, a Threshold or its dict."""
    if threshold is None:
        return None, None
    if isinstance(threshold, Threshold):
        return float(threshold.value), threshold.to_dict()
    if isinstance(threshold, Mapping):
        t = Threshold.from_dict(dict(threshold))
        return float(t.value), t.to_dict()
    return float(threshold), float(threshold)


# ------------------------------------------------------------------------------------------------ reconstruction map
class ReconstructionToAnomalyMap(Transform):
    """Anomaly map of one sample from its image and its reconstruction.

    See :func:`~monai_anomaly.scoring.maps.compute_anomaly_map`.

    Args:
        method: ``"abs"``, ``"squared"``, ``"ssim"`` or ``"combined"``.
        weights: ``"combined"`` weights (``{"abs": .., "ssim": ..}`` or a pair).
        smooth_sigma: Gaussian smoothing sigma in pixels (0: none).
        win_size: SSIM window.
        data_range: SSIM data range (``None``: per sample).
        slice_axis: for a 3D sample ``(C, H, W, D)``, compute the map slice by slice along this spatial axis (0, 1
            or 2), as a 2D method would see it; ``None`` computes it in 3D (or 2D for a 2D sample).

    Example:
        >>> img = torch.zeros(1, 16, 16); rec = img.clone(); img[0, 4:8, 4:8] = 1.0
        >>> m = ReconstructionToAnomalyMap("abs")(img, rec)
        >>> tuple(m.shape), float(m.max())
        ((1, 16, 16), 1.0)
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        method: str = "abs",
        weights: Mapping[str, float] | Sequence[float] | None = None,
        smooth_sigma: float = 0.0,
        win_size: int = 7,
        data_range: float | None = None,
        slice_axis: int | None = None,
    ) -> None:
        if method not in MAP_METHODS:
            raise ValueError(f"method must be one of {MAP_METHODS}, got {method!r}")
        if slice_axis is not None and slice_axis not in (0, 1, 2):
            raise ValueError(f"slice_axis must be 0, 1, 2 or None, got {slice_axis}")
        self.method = method
        self.weights = weights
        self.smooth_sigma = smooth_sigma
        self.win_size = win_size
        self.data_range = data_range
        self.slice_axis = slice_axis

    def __call__(self, image: Any, reconstruction: Any, foreground: Any = None) -> torch.Tensor:
        """Map ``(1, *spatial)`` of a channel-first sample (MetaTensor input keeps its metadata)."""
        img, rec = _tensor(image).float(), _tensor(reconstruction).float()
        if img.shape != rec.shape:
            raise ValueError(f"image shape {tuple(img.shape)} and reconstruction shape {tuple(rec.shape)} differ")
        if img.ndim not in (3, 4):
            raise ValueError(f"expected a channel-first sample (C, H, W) or (C, H, W, D), got shape {tuple(img.shape)}")
        fg = None if foreground is None else _tensor(foreground).to(img.device)
        kw = {
            "method": self.method,
            "weights": self.weights,
            "smooth_sigma": self.smooth_sigma,
            "win_size": self.win_size,
            "data_range": self.data_range,
        }
        if img.ndim == 4 and self.slice_axis is not None:
            dim = self.slice_axis + 1  # spatial axis in (C, H, W, D)
            to_slices = lambda t: t.movedim(dim, 0)  # noqa: E731  (S, C, h, w)
            fgs = None if fg is None else to_slices(fg.expand_as(img) if fg.ndim == 4 else fg)
            m = compute_anomaly_map(to_slices(img), to_slices(rec), foreground=fgs, **kw)  # (S, 1, h, w)
            out = m.movedim(0, dim)
        else:
            out = compute_anomaly_map(img[None], rec[None], foreground=None if fg is None else fg[None], **kw)[0]
        if isinstance(image, MetaTensor):
            out = MetaTensor(out, meta=copy.deepcopy(image.meta))
        return out


class ReconstructionToAnomalyMapd(MapTransform):
    """Dictionary version of :class:`ReconstructionToAnomalyMap`: ``d[output_key] = map(d[image_key], d[recon_key])``.

    Args:
        image_key: the input image.
        recon_key: the network's reconstruction.
        method: map method (see :class:`ReconstructionToAnomalyMap`).
        weights: ``"combined"`` weights.
        smooth_sigma: Gaussian smoothing sigma.
        foreground_key: optional foreground mask key; the map is 0 outside it.
        output_key: where the map goes.
        win_size: SSIM window.
        data_range: SSIM data range.
        slice_axis: slice-by-slice maps of 3D samples along this spatial axis.
        allow_missing_keys: skip samples without image / reconstruction instead of raising.

    Example:
        >>> d = {"image": torch.rand(1, 16, 16)}; d["reconstruction"] = d["image"] * 0.5
        >>> out = ReconstructionToAnomalyMapd("image", "reconstruction")(d)
        >>> tuple(out["anomaly_map"].shape)
        (1, 16, 16)
    """

    backend = ReconstructionToAnomalyMap.backend

    def __init__(
        self,
        image_key: str = AnomalyKeys.IMAGE,
        recon_key: str = AnomalyKeys.RECONSTRUCTION,
        method: str = "abs",
        weights: Mapping[str, float] | Sequence[float] | None = None,
        smooth_sigma: float = 0.0,
        foreground_key: str | None = None,
        output_key: str = AnomalyKeys.ANOMALY_MAP,
        win_size: int = 7,
        data_range: float | None = None,
        slice_axis: int | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__([image_key, recon_key], allow_missing_keys)
        self.image_key, self.recon_key = image_key, recon_key
        self.foreground_key = foreground_key
        self.output_key = output_key
        self.mapper = ReconstructionToAnomalyMap(method, weights, smooth_sigma, win_size, data_range, slice_axis)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        if self.image_key not in d or self.recon_key not in d:
            if self.allow_missing_keys:
                return d
            missing = [k for k in (self.image_key, self.recon_key) if k not in d]
            raise KeyError(f"ReconstructionToAnomalyMapd: key(s) {missing} not in the data (keys: {list(d)})")
        fg = d.get(self.foreground_key) if self.foreground_key else None
        d[self.output_key] = self.mapper(d[self.image_key], d[self.recon_key], fg)
        return d


# ---------------------------------------------------------------------------------------------------- slice score
class AnomalyScore(Transform):
    """One anomaly score from a sample's anomaly map (:func:`~monai_anomaly.scoring.slice_scores.slice_scores`).

    Args:
        score_method: ``"mean"``, ``"max"``, ``"topk"`` or ``"percentile"``.
        k: top fraction for ``"topk"``.
        q: percentile for ``"percentile"``.

    Example:
        >>> m = torch.zeros(1, 10, 10); m[0, 0, :5] = 1.0
        >>> float(AnomalyScore("topk", k=0.05)(m))
        1.0
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, score_method: str = "mean", k: float = 0.01, q: float = 99.0) -> None:
        if score_method not in SLICE_SCORE_METHODS:
            raise ValueError(f"score_method must be one of {SLICE_SCORE_METHODS}, got {score_method!r}")
        self.score_method, self.k, self.q = score_method, k, q

    def __call__(self, anomaly_map: Any, mask: Any = None) -> torch.Tensor:
        """0-d float tensor: the score of a channel-first map ``(C, *spatial)``; only ``mask`` pixels count."""
        m = _tensor(anomaly_map)
        msk = None if mask is None else _tensor(mask).to(m.device)[None]
        return slice_scores(m[None], method=self.score_method, k=self.k, q=self.q, mask=msk)[0]


class AnomalyScored(MapTransform):
    """Dictionary version of :class:`AnomalyScore`: ``d[output_key] = score(d[key])`` as a python float.

    Args:
        keys: the anomaly map key (one key, or several with as many ``output_key`` values).
        score_method: ``"mean"``, ``"max"``, ``"topk"`` or ``"percentile"``.
        k: top fraction for ``"topk"``.
        q: percentile for ``"percentile"``.
        foreground_key: optional mask key; only its pixels count (an empty mask scores 0).
        output_key: where the score goes (a sequence, one per key, for several keys).
        allow_missing_keys: skip missing keys.

    Example:
        >>> m = torch.zeros(1, 8, 8); m[0, 0, 0] = 6.4
        >>> AnomalyScored(score_method="mean")({"anomaly_map": m})["score"]
        0.1
    """

    backend = AnomalyScore.backend

    def __init__(
        self,
        keys: KeysCollection = AnomalyKeys.ANOMALY_MAP,
        score_method: str = "mean",
        k: float = 0.01,
        q: float = 99.0,
        foreground_key: str | None = None,
        output_key: str | Sequence[str] = AnomalyKeys.SCORE,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        out = [output_key] if isinstance(output_key, str) else list(output_key)
        if len(out) != len(self.keys):
            raise ValueError(f"got {len(self.keys)} keys but {len(out)} output keys")
        self.output_keys = out
        self.foreground_key = foreground_key
        self.scorer = AnomalyScore(score_method, k, q)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        fg = d.get(self.foreground_key) if self.foreground_key else None
        for key, out in self.key_iterator(d, self.output_keys):
            d[out] = float(f"{float(self.scorer(d[key], fg)):.7g}")
        return d


# ----------------------------------------------------------------------------------------------------- volume score
class VolumeAnomalyScore(Transform):
    """Slice scores, volume score and prediction of a 3D anomaly map ``(C, H, W, D)`` computed slice by slice.

    A 2D map ``(C, H, W)`` (a PNG/JPEG image) counts as a volume of one slice, so one post-transform serves both.

    Args:
        axis: spatial axis of ``(H, W, D)`` that indexes the slices (2: axial for RAS volumes).
        slice_method: slice score method (``"mean"``, ``"max"``, ``"topk"``, ``"percentile"``).
        aggregation: volume aggregation (``"mean"``, ``"max"``, ``"topk"``, ``"percentile"``, ``"fraction_above"``).
        threshold: slice-score threshold (float, :class:`~monai_anomaly.metrics.thresholds.Threshold` or its dict);
            the volume prediction uses it on the volume score, except with ``"fraction_above"`` (the share of slices
            at or above it), whose prediction needs ``volume_threshold``.
        k: slice ``"topk"`` fraction.
        q: slice ``"percentile"``.
        aggregation_kwargs: ``k`` / ``q`` of the aggregation.
        volume_threshold: threshold on the volume score (default: ``threshold``, see above).
        min_foreground: with a foreground ``mask``, slices whose foreground fraction is below this are not scored
            (the same selection as training, which never saw near-empty slices): their score is reported as 0.0,
            they are left out of the volume score, and ``scored_slices`` lists the slices that were scored.
        score_region: with a ``mask``, ``"foreground"`` scores each slice over its foreground pixels only, ``"image"``
            over the whole slice (the map should then be 0 outside the foreground, as the dictionary version makes it);
            a ``"mean"`` over the whole slice is taken over the slice padded to a square, as the network saw it.

    Example:
        >>> m = torch.zeros(1, 8, 8, 4); m[..., 3] = 1.0
        >>> r = VolumeAnomalyScore(aggregation="max", threshold=0.5)(m)
        >>> r["slice_scores"], r["volume_score"], r["prediction"]
        ([0.0, 0.0, 0.0, 1.0], 1.0, 'anomalous')
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        axis: int = 2,
        slice_method: str = "mean",
        aggregation: str = "mean",
        threshold: float | Threshold | Mapping[str, Any] | None = None,
        k: float = 0.01,
        q: float = 99.0,
        aggregation_kwargs: Mapping[str, Any] | None = None,
        volume_threshold: float | None = None,
        min_foreground: float = 0.0,
        score_region: str = "foreground",
    ) -> None:
        if score_region not in ("foreground", "image"):
            raise ValueError(f"score_region must be 'foreground' or 'image', got {score_region!r}")
        self.score_region = score_region
        if not 0.0 <= float(min_foreground) < 1.0:
            raise ValueError(f"min_foreground must be in [0, 1), got {min_foreground}")
        self.min_foreground = float(min_foreground)
        if axis not in (0, 1, 2):
            raise ValueError(f"axis must be 0, 1 or 2 (a spatial axis of (H, W, D)), got {axis}")
        if aggregation not in AGGREGATION_METHODS:
            raise ValueError(f"aggregation must be one of {AGGREGATION_METHODS}, got {aggregation!r}")
        self.axis = axis
        self.scorer = AnomalyScore(slice_method, k, q)
        self.aggregation = aggregation
        self.threshold_value, self.threshold_info = _threshold_value(threshold)
        self.aggregation_kwargs = dict(aggregation_kwargs or {})
        if aggregation == "fraction_above":
            if self.aggregation_kwargs.get("threshold") is None:
                if self.threshold_value is None:
                    raise ValueError("aggregation 'fraction_above' needs a slice threshold (threshold=...)")
                self.aggregation_kwargs["threshold"] = self.threshold_value
            self.volume_threshold = volume_threshold
        else:
            self.volume_threshold = self.threshold_value if volume_threshold is None else float(volume_threshold)

    def __call__(self, anomaly_map: Any, mask: Any = None) -> dict[str, Any]:
        """``{"volume_score", "slice_scores", "threshold", "volume_threshold", "prediction", "aggregation", "axis"}``
        with python values (``prediction`` is ``"normal"``, ``"anomalous"`` or ``None`` without threshold)."""
        m = _tensor(anomaly_map)
        if m.ndim == 3:  # a 2D image's map (C, H, W): one slice
            m = m[..., None]
            mask = None if mask is None else _tensor(mask)[..., None]
            dim = 3
        elif m.ndim == 4:
            dim = self.axis + 1
        else:
            raise ValueError(f"expected a channel-first map (C, H, W) or (C, H, W, D), got shape {tuple(m.shape)}")
        slices = m.movedim(dim, 0)  # (S, C, h, w)
        msk = None
        if mask is not None:
            mk = _tensor(mask).to(m.device)
            msk = (mk.expand_as(m) if mk.ndim == 4 else mk).movedim(dim, 0)
        s = slice_scores(
            slices,
            method=self.scorer.score_method,
            k=self.scorer.k,
            q=self.scorer.q,
            mask=msk if self.score_region == "foreground" else None,
        )
        s = s.detach().cpu().double()
        if self.score_region == "image" and self.scorer.score_method == "mean":
            # training and evaluation see each slice padded to a square (aspect kept): average over that square, so
            # that scores of non-square slices are on the same scale as the threshold fitted at validation
            h, w = slices.shape[-2:]
            s = s * (h * w) / float(max(h, w) ** 2)
        keep = torch.ones(len(s), dtype=torch.bool)
        if msk is not None and self.min_foreground > 0:
            keep = (msk[:, :1] > 0).flatten(1).double().mean(1).cpu() >= self.min_foreground
            if not bool(keep.any()):  # nothing passes: score every slice rather than nothing
                keep = torch.ones(len(s), dtype=torch.bool)
        s = torch.where(keep, torch.nan_to_num(s, nan=0.0), torch.zeros_like(s))
        scores = [float(f"{float(v):.7g}") for v in s]  # 7 significant digits: MSE scores can be ~1e-5
        vs = aggregate_scores(s[keep], method=self.aggregation, **self.aggregation_kwargs)
        pred = None
        if self.volume_threshold is not None:
            pred = "anomalous" if vs >= self.volume_threshold else "normal"
        return {
            "volume_score": float(vs),
            "slice_scores": scores,
            "threshold": self.threshold_info,
            "volume_threshold": self.volume_threshold,
            "prediction": pred,
            "aggregation": self.aggregation,
            "axis": self.axis,
            "scored_slices": [int(i) for i in torch.nonzero(keep).flatten()],
            "min_foreground": self.min_foreground,
        }


class VolumeAnomalyScored(MapTransform):
    """Dictionary version of :class:`VolumeAnomalyScore`, for a bundle's ``postprocessing`` and MONAI Label.

    Writes ``d["volume_score"]`` (float) and merges the JSON-able result (``volume_score``, ``slice_scores``,
    ``threshold``, ``prediction`` ...) into ``d[result_key]`` (``"result"``, which MONAI Label returns to the client).

    Args:
        keys: the 3D anomaly map key.
        axis: slice axis of ``(H, W, D)``.
        slice_method: slice score method.
        aggregation: volume aggregation.
        threshold: slice threshold (float, Threshold or its dict).
        k: slice ``"topk"`` fraction.
        q: slice ``"percentile"``.
        aggregation_kwargs: ``k`` / ``q`` of the aggregation.
        volume_threshold: threshold on the volume score.
        foreground_key: optional mask key; only its voxels count, and the map is set to 0 outside it (``mask_map``).
        min_foreground: slices with less foreground than this are not scored (see :class:`VolumeAnomalyScore`).
        score_region: ``"foreground"`` or ``"image"`` (see :class:`VolumeAnomalyScore`).
        mask_map: zero the map outside the foreground, so the written heatmap shows only what was scored.
        result_key: where the JSON-able result goes.
        allow_missing_keys: skip a missing map.

    Example:
        >>> m = torch.zeros(1, 8, 8, 4); m[..., 0] = 1.0
        >>> d = VolumeAnomalyScored(threshold=0.2)({"anomaly_map": m})
        >>> d["result"]["volume_score"], d["result"]["prediction"]
        (0.25, 'anomalous')
    """

    backend = VolumeAnomalyScore.backend

    def __init__(
        self,
        keys: KeysCollection = AnomalyKeys.ANOMALY_MAP,
        axis: int = 2,
        slice_method: str = "mean",
        aggregation: str = "mean",
        threshold: float | Threshold | Mapping[str, Any] | None = None,
        k: float = 0.01,
        q: float = 99.0,
        aggregation_kwargs: Mapping[str, Any] | None = None,
        volume_threshold: float | None = None,
        foreground_key: str | None = None,
        result_key: str = AnomalyKeys.RESULT,
        allow_missing_keys: bool = False,
        min_foreground: float = 0.0,
        mask_map: bool = True,
        score_region: str = "foreground",
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if len(self.keys) != 1:
            raise ValueError(f"VolumeAnomalyScored takes one map key, got {self.keys}")
        self.scorer = VolumeAnomalyScore(
            axis,
            slice_method,
            aggregation,
            threshold,
            k,
            q,
            aggregation_kwargs,
            volume_threshold,
            min_foreground,
            score_region,
        )
        self.foreground_key = foreground_key
        self.mask_map = mask_map
        self.result_key = result_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        fg = d.get(self.foreground_key) if self.foreground_key else None
        for key in self.key_iterator(d):
            if fg is not None and self.mask_map:
                m = d[key]
                d[key] = m * (_tensor(fg).to(device=_tensor(m).device) > 0).to(_tensor(m).dtype)
            r = self.scorer(d[key], fg)
            d[AnomalyKeys.VOLUME_SCORE] = r["volume_score"]
            prev = d.get(self.result_key)
            d[self.result_key] = {**(dict(prev) if isinstance(prev, Mapping) else {}), **r}
        return d


ReconstructionToAnomalyMapD = ReconstructionToAnomalyMapDict = ReconstructionToAnomalyMapd
AnomalyScoreD = AnomalyScoreDict = AnomalyScored
VolumeAnomalyScoreD = VolumeAnomalyScoreDict = VolumeAnomalyScored
