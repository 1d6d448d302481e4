"""Cut volumes into 2D slices for training, and stack 2D maps back into volumes.

A volume ``(C, H, W, D)`` is cut along one spatial ``axis`` (``2`` = the last axis, axial after RAS orientation) into
``(C, H, W)``-style slices (the two remaining spatial axes in their order). Each slice's ``meta`` keeps what is needed
to put it back: ``volume_affine`` (the source volume's affine), ``volume_shape`` (its spatial shape when sliced),
``slice_axis``, ``slice_index``, ``volume_id`` and the source ``filename_or_obj``; the slice's own ``affine`` is a 2D
one carrying the in-plane pixel spacing, so MONAI's 2D spatial transforms see the right pixel size.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends, convert_to_tensor

from monai_anomaly.data.inputs import scan_id
from monai_anomaly.utils.enums import AnomalyKeys

__all__ = [
    "SLICE_META_KEYS",
    "foreground_fractions",
    "select_slices",
    "skip_reason",
    "skipped_slices",
    "take_slice",
    "stack_slices",
    "VolumeToSlices",
    "VolumeToSlicesd",
    "VolumeToSlicesD",
    "VolumeToSlicesDict",
    "StackSlices",
    "StackSlicesd",
    "StackSlicesD",
    "StackSlicesDict",
]

SLICE_META_KEYS = ("volume_affine", "volume_shape", "slice_axis", "slice_index", "volume_id")


def _check_axis(axis: int) -> int:
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0, 1 or 2 (a spatial axis of a (C, H, W, D) volume), got {axis}")
    return int(axis)


def _range(n: int, slice_range: Sequence[float] | Sequence[int] | None) -> range:
    """Indices kept by ``slice_range``: fractions ``(0.2, 0.8)`` of ``n`` (any float) or absolute ``(start, stop)``."""
    if slice_range is None:
        return range(n)
    if len(slice_range) != 2:
        raise ValueError(f"slice_range must be (start, stop), got {slice_range}")
    start, stop = slice_range
    if any(isinstance(v, float) for v in (start, stop)):
        if not 0.0 <= start < stop <= 1.0:
            raise ValueError(f"fractional slice_range must satisfy 0 <= start < stop <= 1, got {slice_range}")
        return range(int(round(start * n)), int(round(stop * n)))
    return range(max(0, int(start)), min(n, int(stop)))


def _volume_id(d: Mapping[Hashable, Any], img: Any) -> str:
    vid = d.get(AnomalyKeys.VOLUME_ID)
    if vid not in (None, ""):
        return str(vid)
    meta = getattr(img, "meta", None) or {}
    src = meta.get("filename_or_obj")
    return scan_id(src) if src else ""


def foreground_fractions(
    img: torch.Tensor, axis: int = 2, foreground: torch.Tensor | None = None, background: float = 0.0
) -> torch.Tensor:
    """The share of each slice's pixels in the foreground, ``(n_slices,)``: what ``min_foreground`` is compared with.

    Args:
        img: a ``(C, H, W, D)`` volume.
        axis: spatial axis to slice along.
        foreground: a mask whose ``> 0`` voxels are foreground; default ``img > background`` in any channel.
        background: the background intensity when no mask is given.

    Example:
        >>> vol = torch.zeros(1, 2, 2, 3); vol[0, 0, 0, 1] = 1.0; vol[..., 2] = 1.0
        >>> foreground_fractions(vol).tolist()
        [0.0, 0.25, 1.0]
    """
    axis = _check_axis(axis)
    src = convert_to_tensor(foreground if foreground is not None else img, track_meta=False)
    fg = (src > 0) if foreground is not None else (src > background)
    fg = fg.any(dim=0)  # (H, W, D)
    return fg.float().mean(dim=[a for a in range(3) if a != axis])


def skip_reason(fraction: float, min_foreground: float) -> str:
    """Why a slice with foreground share ``fraction`` is not scored, in words.

    Example:
        >>> skip_reason(0.0, 0.005), skip_reason(0.002, 0.005)
        ('no foreground', 'foreground 0.20 % of the slice, below min_foreground 0.50 %')
    """
    if fraction <= 0:
        return "no foreground"
    return f"foreground {100 * fraction:.2f} % of the slice, below min_foreground {100 * min_foreground:.2f} %"


def select_slices(
    img: torch.Tensor,
    axis: int = 2,
    min_foreground: float = 0.0,
    slice_range: Sequence[float] | Sequence[int] | None = None,
    foreground: torch.Tensor | None = None,
    background: float = 0.0,
    fractions: torch.Tensor | None = None,
) -> list[int]:
    """Indices along ``axis`` of the slices to keep.

    Args:
        img: a ``(C, H, W, D)`` volume.
        axis: spatial axis to slice along.
        min_foreground: keep slices whose foreground fraction (:func:`foreground_fractions`) is at least this
            (``0`` keeps every slice).
        slice_range: keep only ``(start, stop)``: fractions of the axis if any is a float, else indices.
        foreground: a mask whose ``> 0`` voxels are foreground; default ``img > background`` in any channel.
        background: the background intensity when no mask is given.
        fractions: the slices' :func:`foreground_fractions`, when the caller has them already.

    Example:
        >>> vol = torch.zeros(1, 4, 4, 10); vol[..., 3:7] = 1.0
        >>> select_slices(vol, min_foreground=0.5)
        [3, 4, 5, 6]
    """
    axis = _check_axis(axis)
    n = img.shape[axis + 1]
    keep = list(_range(n, slice_range))
    if min_foreground > 0 and keep:
        frac = foreground_fractions(img, axis, foreground, background) if fractions is None else fractions
        keep = [i for i in keep if float(frac[i]) >= min_foreground]
    return keep


def skipped_slices(
    img: torch.Tensor,
    kept: Sequence[int],
    axis: int = 2,
    min_foreground: float = 0.0,
    foreground: torch.Tensor | None = None,
    background: float = 0.0,
    slice_range: Sequence[float] | Sequence[int] | None = None,
) -> list[dict[str, Any]]:
    """The slices of ``img`` not in ``kept``, each with its foreground share and the reason it is not scored.

    Returns:
        ``[{"slice_index", "foreground_fraction", "skip_reason"}, ...]`` in slice order.

    Example:
        >>> vol = torch.zeros(1, 4, 4, 3); vol[..., 1:] = 1.0
        >>> skipped_slices(vol, [1, 2], min_foreground=0.1)
        [{'slice_index': 0, 'foreground_fraction': 0.0, 'skip_reason': 'no foreground'}]
    """
    axis = _check_axis(axis)
    n = img.shape[axis + 1]
    kept_set = set(int(i) for i in kept)
    if len(kept_set) == n:
        return []
    frac = foreground_fractions(img, axis, foreground, background)
    in_range = set(_range(n, slice_range))
    out = []
    for i in range(n):
        if i in kept_set:
            continue
        f = float(frac[i])
        reason = "outside slice_range" if i not in in_range else skip_reason(f, min_foreground)
        out.append({"slice_index": i, "foreground_fraction": round(f, 6), "skip_reason": reason})
    return out


def _inplane_affine(volume_affine: torch.Tensor, axis: int) -> torch.Tensor:
    other = [a for a in range(3) if a != axis]
    spacing = torch.linalg.norm(volume_affine[:3, :3].double(), dim=0)[other]
    return torch.diag(torch.tensor([float(spacing[0]), float(spacing[1]), 1.0, 1.0], dtype=torch.float64))


def take_slice(img: torch.Tensor, axis: int, index: int, volume_id: str | None = None) -> MetaTensor:
    """Slice ``index`` along spatial ``axis`` of a ``(C, H, W, D)`` volume, as a contiguous ``(C, ., .)`` MetaTensor.

    The slice's meta copies the volume's and adds ``volume_affine``, ``volume_shape``, ``slice_axis``,
    ``slice_index`` (and ``volume_id`` when given); its ``affine`` is the 2D in-plane spacing.

    Example:
        >>> take_slice(torch.rand(1, 4, 5, 6), axis=2, index=3).meta["slice_index"]
        3
    """
    axis = _check_axis(axis)
    data = convert_to_tensor(img, track_meta=False).select(axis + 1, int(index)).clone()
    meta = dict(img.meta) if isinstance(img, MetaTensor) else {}
    volume_affine = img.affine.clone() if isinstance(img, MetaTensor) else torch.eye(4, dtype=torch.float64)
    meta["volume_affine"] = volume_affine
    meta["volume_shape"] = np.asarray(img.shape[1:])
    meta["slice_axis"] = axis
    meta["slice_index"] = int(index)
    if volume_id is not None:
        meta["volume_id"] = volume_id
    meta["affine"] = _inplane_affine(volume_affine, axis)
    return MetaTensor(data, meta=meta)


class VolumeToSlices(Transform):
    """Cut a ``(C, H, W, D)`` volume into a list of 2D slices along ``axis`` (see :func:`select_slices`).

    2D inputs ``(C, H, W)`` come back as a one-element list, unchanged.

    Args:
        axis: spatial axis to slice along (2 = axial for RAS-oriented volumes).
        min_foreground: keep slices whose foreground fraction is at least this (``0`` keeps all).
        slice_range: keep only a middle range: fractions ``(0.2, 0.8)`` or indices ``(20, 130)``.
        background: intensity of the background when no foreground mask is passed.

    Example:
        >>> slices = VolumeToSlices(axis=2)(torch.rand(1, 8, 8, 5))
        >>> len(slices), tuple(slices[0].shape), slices[4].meta["slice_index"]
        (5, (1, 8, 8), 4)
    """

    backend = [TransformBackends.TORCH]

    def __init__(
        self,
        axis: int = 2,
        min_foreground: float = 0.0,
        slice_range: Sequence[float] | Sequence[int] | None = None,
        background: float = 0.0,
    ) -> None:
        self.axis = _check_axis(axis)
        self.min_foreground = min_foreground
        self.slice_range = slice_range
        self.background = background

    def indices(self, img: torch.Tensor, foreground: torch.Tensor | None = None) -> list[int]:
        """The slice indices this transform keeps for ``img``."""
        return select_slices(img, self.axis, self.min_foreground, self.slice_range, foreground, self.background)

    def __call__(self, img: torch.Tensor, foreground: torch.Tensor | None = None) -> list[torch.Tensor]:
        if img.ndim == 3:
            return [img]
        if img.ndim != 4:
            raise ValueError(f"expected a (C, H, W, D) volume or a (C, H, W) image, got shape {tuple(img.shape)}")
        return [take_slice(img, self.axis, i) for i in self.indices(img, foreground)]


class VolumeToSlicesd(MapTransform):
    """Cut the volumes under ``keys`` into a LIST of slice dictionaries (MONAI's ``Compose`` maps later transforms).

    Each output dictionary holds the 2D slice of every key, the other entries of the input (shared, not copied),
    ``volume_id`` (the input's, else the file stem), ``slice_index`` (index along ``axis``) and, with
    ``label_from_mask_key``, ``label`` = 1 when that mask's slice has a positive voxel, else 0. The slices to keep are
    chosen once per volume from the foreground fraction of ``foreground_key`` (or of the first key's image
    ``> background``) and ``slice_range``; when no slice has ``min_foreground``, every slice (of ``slice_range``) is
    kept, as :class:`~monai_anomaly.inferers.slice.AnomalySliceInferer` then scores every slice, so ``evaluate`` and
    ``infer`` score the same slices of such a volume. A 2D input gives a one-element list.

    Args:
        keys: keys of volumes with the same spatial shape (image, mask, foreground ...).
        axis: spatial axis to slice along (2 = axial for RAS-oriented volumes).
        min_foreground: minimum fraction of foreground pixels in a kept slice (``0`` keeps all).
        slice_range: keep only ``(start, stop)``: fractions if any is a float, else indices.
        foreground_key: a mask key to measure foreground on; default the first key ``> background``.
        background: background intensity when no ``foreground_key``.
        label_from_mask_key: a lesion mask key; each slice's ``label`` says whether it has lesion voxels.
        record_skipped: give every kept slice of a volume the list of the volume's slices left out, under
            ``skipped_slices`` (``AnomalyKeys.SKIPPED_SLICES``): :func:`skipped_slices`, plus ``label`` from
            ``label_from_mask_key``, so a report can say which slices were not scored and why
            (:class:`~monai_anomaly.data.datasets.SliceDataset` collects it).
        allow_missing_keys: do not fail when a key is absent.

    Example:
        >>> vol = torch.zeros(1, 8, 8, 6); vol[:, 2:6, 2:6, 1:5] = 1.0
        >>> mask = torch.zeros(1, 8, 8, 6); mask[:, 3, 3, 2] = 1.0
        >>> out = VolumeToSlicesd(keys=["image", "mask"], min_foreground=0.1, label_from_mask_key="mask")(
        ...     {"image": vol, "mask": mask, "volume_id": "v1"})
        >>> [(s["slice_index"], s["label"]) for s in out]
        [(1, 0), (2, 1), (3, 0), (4, 0)]
    """

    backend = VolumeToSlices.backend

    def __init__(
        self,
        keys: KeysCollection,
        axis: int = 2,
        min_foreground: float = 0.0,
        slice_range: Sequence[float] | Sequence[int] | None = None,
        foreground_key: str | None = None,
        background: float = 0.0,
        label_from_mask_key: str | None = None,
        record_skipped: bool = False,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.slicer = VolumeToSlices(axis, min_foreground, slice_range, background)
        self.foreground_key = foreground_key
        self.label_from_mask_key = label_from_mask_key
        self.record_skipped = bool(record_skipped)

    def __call__(self, data: Mapping[Hashable, Any]) -> list[dict[Hashable, Any]]:
        d = dict(data)
        present = list(self.key_iterator(d))
        if not present:
            return [d]
        ref = d[present[0]]
        vid = _volume_id(d, ref)
        mask = None
        if self.label_from_mask_key is not None:
            if self.label_from_mask_key in d:
                mask = d[self.label_from_mask_key]
            elif not self.allow_missing_keys:
                raise KeyError(f"label_from_mask_key {self.label_from_mask_key!r} is not in the data")
        if ref.ndim == 3:  # a 2D image: one "slice"
            out = dict(d)
            out[AnomalyKeys.VOLUME_ID] = vid
            out.setdefault(AnomalyKeys.SLICE_INDEX, 0)
            if mask is not None:
                out[AnomalyKeys.LABEL] = int(bool((convert_to_tensor(mask, track_meta=False) > 0).any()))
            return [out]
        for key in present:
            if tuple(d[key].shape[1:]) != tuple(ref.shape[1:]):
                raise ValueError(
                    f"{key!r} has spatial shape {tuple(d[key].shape[1:])}, expected {tuple(ref.shape[1:])}"
                )
        fg = d[self.foreground_key] if self.foreground_key is not None else None
        axis = self.slicer.axis
        mask_t = convert_to_tensor(mask, track_meta=False) > 0 if mask is not None else None
        results = []
        kept = self.slicer.indices(ref, fg)
        if not kept:  # as inference does (AnomalySliceInferer): no slice has enough foreground, so every one is scored
            kept = list(_range(ref.shape[axis + 1], self.slicer.slice_range))
        skipped: list[dict[str, Any]] = []
        if self.record_skipped:
            sl = self.slicer
            skipped = skipped_slices(ref, kept, axis, sl.min_foreground, fg, sl.background, sl.slice_range)
            for k in skipped:
                if mask_t is not None:
                    k[AnomalyKeys.LABEL] = int(bool(mask_t.select(axis + 1, k["slice_index"]).any()))
        for i in kept:
            s = dict(d)
            for key in present:
                s[key] = take_slice(d[key], axis, i, volume_id=vid)
            s[AnomalyKeys.VOLUME_ID] = vid
            s[AnomalyKeys.SLICE_INDEX] = int(i)
            if mask_t is not None:
                s[AnomalyKeys.LABEL] = int(bool(mask_t.select(axis + 1, i).any()))
            if self.record_skipped:
                s[AnomalyKeys.SKIPPED_SLICES] = skipped
            results.append(s)
        return results


def stack_slices(
    slices: Sequence[torch.Tensor] | torch.Tensor,
    slice_indices: Sequence[int],
    axis: int,
    spatial_shape: Sequence[int],
    affine: torch.Tensor | np.ndarray | None = None,
    fill: float = 0.0,
    meta: Mapping[str, Any] | None = None,
) -> MetaTensor:
    """Stack 2D maps back into a ``(C, H, W, D)`` volume; slices not given are filled with ``fill``.

    Args:
        slices: ``(C, ., .)`` tensors, or one ``(N, C, ., .)`` batch.
        slice_indices: index along ``axis`` of each slice.
        axis: spatial axis the slices were cut along.
        spatial_shape: the volume's spatial shape ``(H, W, D)``.
        affine: the volume's affine (``meta["volume_affine"]`` of a slice); identity when None.
        fill: value of the slices that were dropped.
        meta: extra metadata for the volume (e.g. the source ``filename_or_obj``).

    Returns:
        a MetaTensor with the slices' dtype and the given affine.

    Raises:
        ValueError: counts, indices or slice shapes that do not fit the volume.

    Example:
        >>> vol = torch.rand(1, 4, 5, 6)
        >>> back = stack_slices([vol[..., i] for i in range(6)], range(6), axis=2, spatial_shape=(4, 5, 6))
        >>> torch.equal(back.as_tensor(), vol)
        True
    """
    axis = _check_axis(axis)
    items = list(slices.unbind(0)) if isinstance(slices, torch.Tensor) else list(slices)
    indices = [int(i) for i in slice_indices]
    if len(items) != len(indices):
        raise ValueError(f"got {len(items)} slices but {len(indices)} slice indices")
    shape = tuple(int(s) for s in spatial_shape)
    if len(shape) != 3:
        raise ValueError(f"spatial_shape must have 3 values, got {shape}")
    plane = tuple(s for a, s in enumerate(shape) if a != axis)
    tensors = [convert_to_tensor(x, track_meta=False) for x in items]
    if not tensors:
        raise ValueError("no slices to stack")
    channels, dtype, device = tensors[0].shape[0], tensors[0].dtype, tensors[0].device
    volume = torch.full((channels, *shape), fill, dtype=dtype, device=device)
    for t, i in zip(tensors, indices):
        if t.ndim != 3 or tuple(t.shape[1:]) != plane or t.shape[0] != channels:
            raise ValueError(f"slice {i} has shape {tuple(t.shape)}, expected ({channels}, {plane[0]}, {plane[1]})")
        if not 0 <= i < shape[axis]:
            raise ValueError(f"slice index {i} is outside 0..{shape[axis] - 1}")
        volume.select(axis + 1, i).copy_(t)
    out_meta = {k: v for k, v in (meta or {}).items() if k not in SLICE_META_KEYS}
    out_meta["affine"] = torch.as_tensor(np.asarray(affine) if affine is not None else np.eye(4), dtype=torch.float64)
    out_meta["spatial_shape"] = np.asarray(shape)
    return MetaTensor(volume, meta=out_meta)


def _slice_meta(x: Any) -> dict:
    return dict(getattr(x, "meta", None) or {})


def _scalar(v: Any) -> Any:
    if isinstance(v, (torch.Tensor, np.ndarray)) and np.asarray(v).size == 1:
        return np.asarray(v).reshape(()).item()
    return v


class StackSlices(Transform):
    """Stack slices made by :class:`VolumeToSlices` (or maps computed on them) back into a volume.

    Indices, axis, shape and affine default to what the first slice's ``meta`` recorded (``slice_index``,
    ``slice_axis``, ``volume_shape``, ``volume_affine``), so maps that kept the slices' meta stack with no arguments.

    Args:
        axis: spatial axis; default the slices' ``slice_axis``.
        fill: value of dropped slices.

    Example:
        >>> vol = torch.rand(1, 4, 5, 6)
        >>> torch.equal(StackSlices()(VolumeToSlices(axis=1)(vol)).as_tensor(), vol)
        True
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, axis: int | None = None, fill: float = 0.0) -> None:
        self.axis = axis
        self.fill = fill

    def __call__(
        self,
        slices: Sequence[torch.Tensor],
        slice_indices: Sequence[int] | None = None,
        spatial_shape: Sequence[int] | None = None,
        affine: torch.Tensor | np.ndarray | None = None,
    ) -> MetaTensor:
        if len(slices) == 0:
            raise ValueError("no slices to stack")
        first = _slice_meta(slices[0])
        axis = self.axis if self.axis is not None else first.get("slice_axis")
        if axis is None:
            raise ValueError("give axis: the slices carry no 'slice_axis' meta")
        if slice_indices is None:
            slice_indices = [int(_scalar(_slice_meta(s)["slice_index"])) for s in slices]
        if spatial_shape is None:
            spatial_shape = [int(v) for v in np.asarray(first["volume_shape"]).reshape(-1)]
        if affine is None:
            affine = first.get("volume_affine")
        return stack_slices(slices, slice_indices, int(_scalar(axis)), spatial_shape, affine, self.fill, first)


class StackSlicesd(MapTransform):
    """Stack a list of slice dictionaries of ONE volume (as made by :class:`VolumeToSlicesd`) back into one dictionary.

    Call it on the list directly (in a ``Compose`` use ``map_items=False``, since ``Compose`` would otherwise hand it
    one slice at a time). Each key is stacked with :class:`StackSlices` (indices from the slices' ``slice_index``);
    ``volume_id`` and the other entries of the first slice are kept, ``label`` becomes the maximum over the slices.

    Example:
        >>> vol = torch.rand(1, 4, 5, 6)
        >>> parts = VolumeToSlicesd(keys="image")({"image": vol, "volume_id": "v"})
        >>> out = StackSlicesd(keys="image")(parts)
        >>> out["volume_id"], torch.equal(out["image"].as_tensor(), vol)
        ('v', True)
    """

    backend = StackSlices.backend

    def __init__(
        self, keys: KeysCollection, axis: int | None = None, fill: float = 0.0, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.stacker = StackSlices(axis, fill)

    def __call__(self, data: Sequence[Mapping[Hashable, Any]]) -> dict[Hashable, Any]:  # type: ignore[override]
        items = list(data)
        if not items:
            raise ValueError("no slices to stack")
        ids = {str(_scalar(s.get(AnomalyKeys.VOLUME_ID, ""))) for s in items}
        if len(ids) > 1:
            raise ValueError(f"slices of several volumes given: {sorted(ids)}; stack one volume at a time")
        out = {k: v for k, v in items[0].items() if k != AnomalyKeys.SLICE_INDEX}
        indices = [int(_scalar(s[AnomalyKeys.SLICE_INDEX])) for s in items]
        for key in self.key_iterator(items[0]):
            out[key] = self.stacker([s[key] for s in items], slice_indices=indices)
        labels = [_scalar(s[AnomalyKeys.LABEL]) for s in items if AnomalyKeys.LABEL in s]
        if len(labels) == len(items):
            out[AnomalyKeys.LABEL] = int(max(labels))
        return out


VolumeToSlicesD = VolumeToSlicesDict = VolumeToSlicesd
StackSlicesD = StackSlicesDict = StackSlicesd
