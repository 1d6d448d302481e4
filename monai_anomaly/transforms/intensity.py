"""Per-volume intensity normalisation and foreground masks.

Statistics are computed once over the whole image or volume (never per slice), so that every slice of a volume is
scaled the same way and a slice's brightness still says something about the volume it came from. When a foreground
mask (or a threshold) is given, statistics come from foreground voxels only, so the amount of air around the head
does not change the scale.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import FillHoles, MapTransform, ScaleIntensityRange, Transform
from monai.transforms.utils_pytorch_numpy_unification import percentile
from monai.utils import TransformBackends, convert_to_tensor, ensure_tuple_rep
from scipy import ndimage

from monai_anomaly.utils.enums import AnomalyKeys
from monai_anomaly.utils.errors import BadInputError

__all__ = [
    "content_bit_range",
    "ForegroundMask",
    "ForegroundMaskd",
    "ForegroundMaskD",
    "ForegroundMaskDict",
    "PercentileScale",
    "PercentileScaled",
    "PercentileScaleD",
    "PercentileScaleDict",
    "ForegroundZScore",
    "ForegroundZScored",
    "ForegroundZScoreD",
    "ForegroundZScoreDict",
    "INTENSITY_MODES",
    "resolve_intensity_mode",
    "resolve_dataset_intensity_mode",
    "ScaleIntensityByKind",
    "ScaleIntensityByKindd",
    "ScaleIntensityByKindD",
    "ScaleIntensityByKindDict",
]


def _source(img: torch.Tensor) -> str:
    meta = getattr(img, "meta", None) or {}
    return str(meta.get("filename_or_obj", "<image>"))


def _largest_component(mask: torch.Tensor) -> torch.Tensor:
    """Keep the largest connected component (full connectivity) of a ``(1, *spatial)`` 0/1 mask, with scipy."""
    arr = mask[0].cpu().numpy() > 0
    labels, n = ndimage.label(arr, structure=np.ones((3,) * arr.ndim, dtype=bool))
    if n <= 1:
        return mask
    sizes = np.bincount(labels.reshape(-1))[1:]
    keep = labels == (int(np.argmax(sizes)) + 1)
    return torch.as_tensor(keep[None], dtype=mask.dtype, device=mask.device)


def _foreground(img: torch.Tensor, mask: torch.Tensor | None, threshold: float | None) -> torch.Tensor | None:
    """Boolean selection shaped like the image: ``mask > 0`` (broadcast over channels), ``img > threshold``, or None."""
    if mask is not None:
        m = convert_to_tensor(mask, track_meta=False) > 0
        if m.ndim == img.ndim and m.shape[0] == 1 and img.shape[0] != 1:
            m = m.expand_as(img)
        if m.shape != img.shape:
            raise ValueError(f"mask shape {tuple(m.shape)} does not match image shape {tuple(img.shape)}")
        return m
    if threshold is not None:
        return img > threshold
    return None


class ForegroundMask(Transform):
    """Non-background voxels of an image: ``image > threshold`` in any channel, optionally cleaned up.

    Holes are filled with MONAI's :class:`~monai.transforms.FillHoles` and the largest connected component kept with
    ``scipy.ndimage.label`` (MONAI's ``KeepLargestConnectedComponent`` needs scikit-image), in 2D or 3D.

    Args:
        threshold: intensity above which a voxel is foreground (0 suits skull-stripped MRI with a zero background).
        fill_holes: fill enclosed background holes (e.g. dark ventricles inside a thresholded brain).
        largest_component: keep only the largest connected component (drops noise specks, markers).

    Returns:
        a float32 ``(1, *spatial)`` mask of 0/1 carrying the image's metadata (affine, filename).

    Example:
        >>> import torch
        >>> img = torch.zeros(1, 8, 8); img[0, 2:6, 2:6] = 5.0; img[0, 3, 3] = 0.0
        >>> ForegroundMask(threshold=0.0, fill_holes=True)(img).sum().item()
        16.0
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, threshold: float = 0.0, fill_holes: bool = False, largest_component: bool = False) -> None:
        self.threshold = threshold
        self._fill = FillHoles(applied_labels=[1]) if fill_holes else None
        self.largest_component = largest_component

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        t = convert_to_tensor(img, track_meta=False)
        mask = (t > self.threshold).any(dim=0, keepdim=True).to(torch.uint8)
        if self.largest_component:
            mask = _largest_component(mask)
        if self._fill is not None:
            mask = convert_to_tensor(self._fill(mask), track_meta=False)
        mask = mask.to(torch.float32)
        if isinstance(img, MetaTensor):
            return MetaTensor(mask, meta=dict(img.meta), applied_operations=list(img.applied_operations))
        return mask


class ForegroundMaskd(MapTransform):
    """Dictionary wrapper of :class:`ForegroundMask`: adds the mask of ``keys`` under ``mask_keys``.

    Args:
        keys: image keys to compute masks from.
        mask_keys: where to store the masks, one per key (default ``"foreground"``).
        threshold, fill_holes, largest_component: see :class:`ForegroundMask`.
        allow_missing_keys: do not fail when a key is absent.

    Example:
        >>> import torch
        >>> d = ForegroundMaskd(keys="image")({"image": torch.rand(1, 8, 8, 4) + 0.1})
        >>> d["foreground"].shape
        torch.Size([1, 8, 8, 4])
    """

    backend = ForegroundMask.backend

    def __init__(
        self,
        keys: KeysCollection,
        mask_keys: Sequence[str] | str = AnomalyKeys.FOREGROUND,
        threshold: float = 0.0,
        fill_holes: bool = False,
        largest_component: bool = False,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.mask_keys = ensure_tuple_rep(mask_keys, len(self.keys))
        self.masker = ForegroundMask(threshold, fill_holes, largest_component)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key, mask_key in self.key_iterator(d, self.mask_keys):
            d[mask_key] = self.masker(d[key])
        return d


class PercentileScale(Transform):
    """Clip an image to its ``[lower, upper]`` intensity percentiles and scale that range to ``[b_min, b_max]``.

    Percentiles are computed once over the whole volume, from the foreground only when a ``mask`` is passed or a
    ``threshold`` set (voxels ``> threshold``). The scaling is MONAI's :class:`~monai.transforms.ScaleIntensityRange`.
    Use ``b_min=-1, b_max=1`` for networks with a ``tanh`` output.

    Args:
        lower: lower percentile (0-100).
        upper: upper percentile (0-100).
        b_min: output value of the lower percentile.
        b_max: output value of the upper percentile.
        clip: clip the output to ``[b_min, b_max]``.
        threshold: when no mask is given, the foreground is ``image > threshold``; ``None`` uses every voxel.

    Raises:
        BadInputError: the foreground is empty (the message names the image's file).

    Example:
        >>> import torch
        >>> out = PercentileScale(lower=0, upper=100)(torch.arange(11.0).reshape(1, 11, 1))
        >>> (out.min().item(), out.max().item())
        (0.0, 1.0)
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        lower: float = 0.5,
        upper: float = 99.5,
        b_min: float = 0.0,
        b_max: float = 1.0,
        clip: bool = True,
        threshold: float | None = None,
    ) -> None:
        if not 0 <= lower < upper <= 100:
            raise ValueError(f"need 0 <= lower < upper <= 100, got lower={lower}, upper={upper}")
        self.lower, self.upper = lower, upper
        self.b_min, self.b_max, self.clip = b_min, b_max, clip
        self.threshold = threshold

    def percentiles(self, img: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[float, float]:
        """The ``(lower, upper)`` percentile values over the foreground of ``img``."""
        t = convert_to_tensor(img, track_meta=False)
        sel = _foreground(t, mask, self.threshold)
        values = t[sel] if sel is not None else t.reshape(-1)
        if values.numel() == 0:
            raise BadInputError(_source(img), "has no foreground voxels to compute intensity percentiles from")
        lo, hi = percentile(values.float(), [self.lower, self.upper])
        return float(lo), float(hi)

    def __call__(self, img: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        a_min, a_max = self.percentiles(img, mask)
        if a_max <= a_min:
            warnings.warn(
                f"{_source(img)}: intensity percentiles are equal ({a_min:g}); output set to b_min", stacklevel=2
            )
            out = img.float() * 0 + self.b_min
            return out
        return ScaleIntensityRange(a_min, a_max, self.b_min, self.b_max, clip=self.clip, dtype=torch.float32)(img)


class PercentileScaled(MapTransform):
    """Dictionary wrapper of :class:`PercentileScale`; ``mask_key`` names a foreground mask to take percentiles from.

    Example:
        >>> import torch
        >>> d = {"image": torch.rand(1, 8, 8, 4) * 100, "foreground": torch.ones(1, 8, 8, 4)}
        >>> out = PercentileScaled(keys="image", mask_key="foreground", b_min=-1, b_max=1)(d)
        >>> bool(out["image"].min() >= -1 and out["image"].max() <= 1)
        True
    """

    backend = PercentileScale.backend

    def __init__(
        self,
        keys: KeysCollection,
        lower: float = 0.5,
        upper: float = 99.5,
        b_min: float = 0.0,
        b_max: float = 1.0,
        clip: bool = True,
        threshold: float | None = None,
        mask_key: str | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.scaler = PercentileScale(lower, upper, b_min, b_max, clip, threshold)
        self.mask_key = mask_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        mask = d[self.mask_key] if self.mask_key is not None else None
        for key in self.key_iterator(d):
            d[key] = self.scaler(d[key], mask)
        return d


class ForegroundZScore(Transform):
    """Z-score an image with the mean and standard deviation of its foreground; background set to ``background``.

    Like MONAI's ``NormalizeIntensity(nonzero=True)``, but the foreground is a given mask (or ``image > threshold``)
    and the background gets a fixed value, so that it does not pull the statistics.

    Args:
        threshold: foreground is ``image > threshold`` when no mask is passed.
        background: value written outside the foreground.
        eps: added to the standard deviation.

    Raises:
        BadInputError: the foreground is empty (the message names the image's file).

    Example:
        >>> import torch
        >>> img = torch.tensor([[[0.0, 1.0, 3.0]]])
        >>> ForegroundZScore(threshold=0.0, eps=0.0)(img).tolist()
        [[[0.0, -1.0, 1.0]]]
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, threshold: float = 0.0, background: float = 0.0, eps: float = 1e-8) -> None:
        self.threshold, self.background, self.eps = threshold, background, eps

    def __call__(self, img: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        t = convert_to_tensor(img, track_meta=False).float()
        sel = _foreground(t, mask, self.threshold)
        values = t[sel]
        if values.numel() == 0:
            raise BadInputError(_source(img), "has no foreground voxels to compute a z-score from")
        mean = values.mean()
        std = values.std(unbiased=False) if values.numel() > 1 else torch.zeros(())
        out = torch.where(sel, (t - mean) / (std + self.eps if std > 0 else 1.0), torch.full_like(t, self.background))
        if isinstance(img, MetaTensor):
            return MetaTensor(out, meta=dict(img.meta), applied_operations=list(img.applied_operations))
        return out


class ForegroundZScored(MapTransform):
    """Dictionary wrapper of :class:`ForegroundZScore`; ``mask_key`` names the foreground mask (e.g. ``foreground``).

    Example:
        >>> import torch
        >>> d = ForegroundZScored(keys="image")({"image": torch.rand(1, 8, 8) + 1.0})
        >>> abs(d["image"].mean().item()) < 1e-5
        True
    """

    backend = ForegroundZScore.backend

    def __init__(
        self,
        keys: KeysCollection,
        threshold: float = 0.0,
        background: float = 0.0,
        eps: float = 1e-8,
        mask_key: str | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.zscore = ForegroundZScore(threshold, background, eps)
        self.mask_key = mask_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        mask = d[self.mask_key] if self.mask_key is not None else None
        for key in self.key_iterator(d):
            d[key] = self.zscore(d[key], mask)
        return d


ForegroundMaskD = ForegroundMaskDict = ForegroundMaskd
PercentileScaleD = PercentileScaleDict = PercentileScaled
ForegroundZScoreD = ForegroundZScoreDict = ForegroundZScored


INTENSITY_MODES = ("auto", "fixed", "percentile", "ct", "zscore")
"""How :class:`ScaleIntensityByKind` scales an input: ``"auto"`` decides by input kind (see there)."""

# a volume whose 1st intensity percentile is below this is taken as CT in Hounsfield units (air is -1000 HU)
_CT_AIR_HU = -500.0


def _filename(img: Any) -> str:
    meta = getattr(img, "meta", None) or {}
    return str(meta.get("filename_or_obj", ""))


def resolve_intensity_mode(img: Any, mode: str = "auto") -> str:
    """The concrete intensity mode for one loaded image (``mode`` itself unless it is ``"auto"``).

    ``"auto"`` decides by input kind, once per input:

    - a 2D PNG/JPEG file (8- or 16-bit) -> ``"fixed"``: its fixed range (0-255, or the bit depth its values need,
      :func:`content_bit_range`: 0-4095 for 12-bit data in a 16-bit file), so that brightness and contrast keep
      their meaning across images (no per-image stretching);
    - a volume whose 1st intensity percentile is below -500 (air in Hounsfield units) -> ``"ct"``: a HU window;
    - any other volume (MRI, PET...) or 2D array -> ``"percentile"``: per-volume percentiles inside the foreground.

    Args:
        img: a loaded image (``MetaTensor`` with ``filename_or_obj`` in its meta, as :class:`LoadScan` gives).
        mode: one of :data:`INTENSITY_MODES`.

    Raises:
        ValueError: an unknown mode.

    Example:
        >>> import torch
        >>> from monai.data import MetaTensor
        >>> resolve_intensity_mode(MetaTensor(torch.zeros(1, 4, 4), meta={"filename_or_obj": "a.png"}))
        'fixed'
        >>> resolve_intensity_mode(MetaTensor(torch.full((1, 4, 4, 4), -1000.0), meta={"filename_or_obj": "ct.nii"}))
        'ct'
    """
    if mode not in INTENSITY_MODES:
        raise ValueError(f"intensity mode must be one of {INTENSITY_MODES}, got {mode!r}")
    if mode != "auto":
        return mode
    name = _filename(img).lower()
    if name.endswith((".png", ".jpg", ".jpeg")):
        return "fixed"
    t = convert_to_tensor(img, track_meta=False).reshape(-1)
    if t.numel() > 1_000_000:  # a strided subsample is enough for a 1st percentile
        t = t[:: t.numel() // 1_000_000 + 1]
    if float(percentile(t.float(), 1.0)) < _CT_AIR_HU:
        return "ct"
    return "percentile"


class ScaleIntensityByKind(Transform):
    """Scale intensities the way the input kind needs, to ``[b_min, b_max]``; the mode used goes in the meta.

    - ``"fixed"``: a fixed range (``fixed_range``, default 0-255 or :func:`content_bit_range`) for 8/16-bit
      2D files (X-ray, MRI slices exported as PNG/JPEG): no per-image stretching, so an abnormally bright or dark
      image stays so.
    - ``"percentile"``: per-volume ``[lower, upper]`` percentiles inside the foreground (:class:`PercentileScale`),
      for MRI whose raw scale is arbitrary.
    - ``"ct"``: a Hounsfield window ``ct_window`` (default soft tissue, -160..240 HU).
    - ``"zscore"``: :class:`ForegroundZScore` (the output is not bounded by ``b_min`` / ``b_max``).
    - ``"auto"``: :func:`resolve_intensity_mode` per input.

    Store the resolved mode with the model (the bundles record it in ``model.pt``) and pass it explicitly at inference,
    so that training and inference always scale alike.

    Args:
        mode: one of :data:`INTENSITY_MODES`.
        b_min: output of the low end.
        b_max: output of the high end.
        lower: lower percentile (``"percentile"``).
        upper: upper percentile (``"percentile"``).
        ct_window: ``(low, high)`` HU window (``"ct"``).
        fixed_range: ``(low, high)`` input range for ``"fixed"`` (default: by the image's bit depth).

    Example:
        >>> import torch
        >>> from monai.data import MetaTensor
        >>> img = MetaTensor(torch.tensor([[[0.0, 51.0, 255.0]]]), meta={"filename_or_obj": "x.png"})
        >>> out = ScaleIntensityByKind("auto")(img)
        >>> [round(v, 3) for v in out.flatten().tolist()], out.meta["intensity_mode"]
        ([0.0, 0.2, 1.0], 'fixed')
    """

    backend = [TransformBackends.TORCH]

    def __init__(
        self,
        mode: str = "auto",
        b_min: float = 0.0,
        b_max: float = 1.0,
        lower: float = 0.5,
        upper: float = 99.5,
        ct_window: Sequence[float] = (-160.0, 240.0),
        fixed_range: Sequence[float] | None = None,
    ) -> None:
        if mode not in INTENSITY_MODES:
            raise ValueError(f"intensity mode must be one of {INTENSITY_MODES}, got {mode!r}")
        if len(ct_window) != 2 or ct_window[0] >= ct_window[1]:
            raise ValueError(f"ct_window must be (low, high) with low < high, got {ct_window!r}")
        if fixed_range is not None and (len(fixed_range) != 2 or fixed_range[0] >= fixed_range[1]):
            raise ValueError(f"fixed_range must be (low, high) with low < high, got {fixed_range!r}")
        self.mode = mode
        self.b_min, self.b_max = float(b_min), float(b_max)
        self.ct_window = (float(ct_window[0]), float(ct_window[1]))
        self.fixed_range = None if fixed_range is None else (float(fixed_range[0]), float(fixed_range[1]))
        self.percentile = PercentileScale(lower, upper, self.b_min, self.b_max)
        self.zscore = ForegroundZScore()

    def __call__(self, img: Any, mask: Any = None) -> Any:
        mode = resolve_intensity_mode(img, self.mode)
        if mode == "percentile":
            out = self.percentile(img, mask)
        elif mode == "zscore":
            out = self.zscore(img, mask)
        else:
            if mode == "ct":
                a_min, a_max = self.ct_window
            elif self.fixed_range is not None:
                a_min, a_max = self.fixed_range
            else:
                a_min, a_max = 0.0, content_bit_range(float(convert_to_tensor(img, track_meta=False).max()))
            out = ScaleIntensityRange(a_min, a_max, self.b_min, self.b_max, clip=True, dtype=torch.float32)(img)
        if isinstance(out, MetaTensor):
            out.meta["intensity_mode"] = mode
        return out


def content_bit_range(vmax: float) -> float:
    """The full-scale value of an integer image by its content: 255 for 8-bit values, else the smallest even bit
    depth from 10 to 16 that holds ``vmax`` (1023, 4095, 16383, 65535). A 12-bit scan stored in a 16-bit PNG is then
    scaled by 4095, as its 8-bit version is by 255, not by 65535 (which made it 16 times darker).

    Example:
        >>> content_bit_range(200), content_bit_range(3000), content_bit_range(40000)
        (255.0, 4095.0, 65535.0)
    """
    if vmax <= 255:
        return 255.0
    for bits in (10, 12, 14, 16):
        if vmax <= 2**bits - 1:
            return float(2**bits - 1)
    return float(vmax)


class ScaleIntensityByKindd(MapTransform):
    """Dictionary wrapper of :class:`ScaleIntensityByKind`; ``mask_key`` names the foreground for percentiles.

    Example:
        >>> import torch
        >>> from monai.data import MetaTensor
        >>> d = {"image": MetaTensor(torch.tensor([[[-1000.0, 40.0, 2000.0]]]), meta={"filename_or_obj": "ct.nii"})}
        >>> out = ScaleIntensityByKindd("image", mode="ct", ct_window=(-160, 240))(d)
        >>> [round(v, 2) for v in out["image"].flatten().tolist()]
        [0.0, 0.5, 1.0]
    """

    backend = ScaleIntensityByKind.backend

    def __init__(
        self,
        keys: KeysCollection,
        mode: str = "auto",
        b_min: float = 0.0,
        b_max: float = 1.0,
        lower: float = 0.5,
        upper: float = 99.5,
        ct_window: Sequence[float] = (-160.0, 240.0),
        fixed_range: Sequence[float] | None = None,
        mask_key: str | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.scaler = ScaleIntensityByKind(mode, b_min, b_max, lower, upper, ct_window, fixed_range)
        self.mask_key = mask_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        mask = d.get(self.mask_key) if self.mask_key is not None else None
        for key in self.key_iterator(d):
            d[key] = self.scaler(d[key], mask)
        return d


ScaleIntensityByKindD = ScaleIntensityByKindDict = ScaleIntensityByKindd


def resolve_dataset_intensity_mode(
    items: Sequence[Mapping[str, Any] | str], mode: str = "auto", key: str = "image"
) -> str:
    """The one intensity mode for a training set: ``mode`` unless ``"auto"``, else decided from its first input.

    All inputs of a training set must be of one kind (all 2D 8-bit files, or all volumes), since the model learns
    one intensity scale; a set that mixes PNG/JPEG files with volumes is refused. The result is what the bundles
    store in ``model.pt`` (``settings["intensity_mode"]``) and reuse at inference.

    Args:
        items: datalist items (dicts with ``key``) or paths.
        mode: one of :data:`INTENSITY_MODES`.
        key: the image key of dict items.

    Raises:
        ValueError: an unknown mode, no items, or a mix of 2D image files and volumes with ``mode="auto"``.
    """
    if mode not in INTENSITY_MODES:
        raise ValueError(f"intensity mode must be one of {INTENSITY_MODES}, got {mode!r}")
    if mode != "auto":
        return mode
    paths = [str(i[key]) if isinstance(i, Mapping) else str(i) for i in items]
    if not paths:
        raise ValueError("no training items to decide the intensity mode from")
    is_2d = [p.lower().endswith((".png", ".jpg", ".jpeg")) for p in paths]
    if any(is_2d) and not all(is_2d):
        first_2d = paths[is_2d.index(True)]
        first_vol = paths[is_2d.index(False)]
        raise ValueError(
            f"the training set mixes 2D image files ({first_2d}) and volumes ({first_vol}); they need different "
            "intensity scaling: train on one kind, or pass intensity_mode explicitly"
        )
    if all(is_2d):
        return "fixed"
    from monai_anomaly.transforms.io import LoadScan  # noqa: PLC0415 (the loader is only needed for volumes)

    return resolve_intensity_mode(LoadScan()(paths[0]), "auto")
