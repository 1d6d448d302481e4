"""Resize images to a square (cube) of a given size, keeping the aspect ratio."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import (
    CenterSpatialCrop,
    MapTransform,
    Orientation,
    Resize,
    SpatialPad,
    SpatialResample,
    Transform,
)
from monai.utils import TransformBackends, ensure_tuple_rep, optional_import

nib, _ = optional_import("nibabel")

__all__ = ["ResizeToSquare", "ResizeToSquared", "ResizeToSquareD", "ResizeToSquareDict", "restore_geometry"]

_NEAREST = ("nearest", "nearest-exact")


class ResizeToSquare(Transform):
    """Resize a channel-first image so it becomes ``size`` x ``size`` (x ``size``) without distorting it.

    ``mode="pad"`` (default) resizes the longest side to ``size`` with MONAI's ``Resize(size_mode="longest")`` and pads
    the short side symmetrically with ``value`` (:class:`~monai.transforms.SpatialPad`); the whole image is kept, and
    :meth:`restore` puts an output (an anomaly map) back onto the input's grid. Training, evaluation and inference
    all resize slices with this transform, so a slice reaches the network with the same values from every door.
    ``mode="crop"`` resizes the
    shortest side to ``size`` and crops the centre (:class:`~monai.transforms.CenterSpatialCrop`).

    Args:
        size: side of the output square.
        mode: ``"pad"`` or ``"crop"``.
        interp_mode: interpolation (``"bilinear"`` for images, ``"nearest"`` for masks and labels).
        anti_aliasing: smooth before shrinking (ignored for nearest interpolation).
        value: padding value (use the background value, e.g. ``-1`` for images scaled to ``[-1, 1]``).

    Example:
        >>> import torch
        >>> ResizeToSquare(32)(torch.rand(1, 40, 20)).shape
        torch.Size([1, 32, 32])
    """

    backend = [TransformBackends.TORCH]

    def __init__(
        self,
        size: int,
        mode: str = "pad",
        interp_mode: str = "bilinear",
        anti_aliasing: bool = True,
        value: float = 0.0,
    ) -> None:
        if int(size) < 1:
            raise ValueError(f"size must be a positive integer, got {size}")
        if mode not in ("pad", "crop"):
            raise ValueError(f"mode must be 'pad' or 'crop', got {mode!r}")
        self.size = int(size)
        self.mode = mode
        self.interp_mode = interp_mode
        self.anti_aliasing = anti_aliasing and interp_mode not in _NEAREST
        self.value = value

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        spatial = tuple(int(s) for s in img.shape[1:])
        nd = len(spatial)
        target = (self.size,) * nd
        if self.mode == "pad":
            resize = Resize(self.size, size_mode="longest", mode=self.interp_mode, anti_aliasing=self.anti_aliasing)
            out = resize(img)
            return SpatialPad(target, method="symmetric", value=self.value)(out)
        scale = self.size / min(spatial)
        new_size = tuple(max(self.size, int(round(s * scale))) for s in spatial)
        out = Resize(new_size, mode=self.interp_mode, anti_aliasing=self.anti_aliasing)(img)
        return CenterSpatialCrop(target)(out)

    def content_box(self, spatial_shape: Sequence[int]) -> tuple[tuple[int, int], ...]:
        """``(start, stop)`` per axis of the input's content inside the ``"pad"`` output (what :meth:`restore` crops).

        Example:
            >>> ResizeToSquare(32).content_box((40, 20))
            ((0, 32), (8, 24))
        """
        if self.mode != "pad":
            raise ValueError("content_box is defined for mode 'pad' only")
        scale = self.size / max(int(s) for s in spatial_shape)
        box = []
        for s in spatial_shape:
            n = int(round(int(s) * scale))  # MONAI Resize(size_mode="longest")
            start = (self.size - n) // 2  # SpatialPad(method="symmetric")
            box.append((start, start + n))
        return tuple(box)

    def restore(self, out: torch.Tensor, spatial_shape: Sequence[int]) -> torch.Tensor:
        """Undo :meth:`__call__` (mode ``"pad"``) on a ``(C, size, size)`` output such as an anomaly map: crop the
        padding and resize (bilinear) back to ``spatial_shape``. For display only: scores are taken before it.

        Example:
            >>> ResizeToSquare(32).restore(torch.ones(1, 32, 32), (40, 20)).shape
            torch.Size([1, 40, 20])
        """
        box = self.content_box(spatial_shape)
        crop = out[(slice(None), *(slice(a, b) for a, b in box))]
        spatial = tuple(int(s) for s in spatial_shape)
        if tuple(crop.shape[1:]) == spatial:
            return crop
        mode = "bilinear" if len(spatial) == 2 else "trilinear"
        return torch.nn.functional.interpolate(crop[None].float(), size=spatial, mode=mode, align_corners=False)[0]


class ResizeToSquared(MapTransform):
    """Dictionary wrapper of :class:`ResizeToSquare`; ``interp_mode`` may differ per key (``"nearest"`` for masks).

    Example:
        >>> import torch
        >>> t = ResizeToSquared(["image", "mask"], size=16, interp_mode=["bilinear", "nearest"])
        >>> out = t({"image": torch.rand(1, 30, 20), "mask": (torch.rand(1, 30, 20) > 0.5).float()})
        >>> sorted(out["mask"].unique().tolist()), tuple(out["image"].shape)
        ([0.0, 1.0], (1, 16, 16))
    """

    backend = ResizeToSquare.backend

    def __init__(
        self,
        keys: KeysCollection,
        size: int,
        mode: str = "pad",
        interp_mode: Sequence[str] | str = "bilinear",
        anti_aliasing: Sequence[bool] | bool = True,
        value: Sequence[float] | float = 0.0,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        n = len(self.keys)
        self.resizers = [
            ResizeToSquare(size, mode, m, a, v)
            for m, a, v in zip(
                ensure_tuple_rep(interp_mode, n), ensure_tuple_rep(anti_aliasing, n), ensure_tuple_rep(value, n)
            )
        ]

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key, resizer in self.key_iterator(d, self.resizers):
            d[key] = resizer(d[key])
        return d


ResizeToSquareD = ResizeToSquareDict = ResizeToSquared


def _affine(x: Any) -> np.ndarray | None:
    if x is None:
        return None
    a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    return a.astype(np.float64) if a.shape in ((4, 4), (3, 3)) else None


def restore_geometry(anomaly_map: MetaTensor, reference: MetaTensor) -> MetaTensor:
    """Bring a map back onto the voxel grid of the file ``reference`` was loaded from, so a viewer overlays it.

    ``reference`` is the preprocessed image: its ``meta["original_affine"]`` and ``meta["spatial_shape"]`` describe
    the file's grid. A 3D map that preprocessing reoriented (e.g. to RAS) is oriented back; one that was also resampled
    or resized is resampled onto the file's grid (bilinear). 2D maps of another size are resized.

    Args:
        anomaly_map: ``(1, H, W)`` or ``(1, H, W, D)`` map with ``reference``'s current affine.
        reference: the preprocessed image (a MetaTensor with the loader's meta).

    Returns:
        the map on the file's grid, its affine the file's (``original_affine``).
    """
    meta = dict(reference.meta) if isinstance(reference, MetaTensor) else {}
    m = anomaly_map if isinstance(anomaly_map, MetaTensor) else MetaTensor(anomaly_map)
    if not isinstance(anomaly_map, MetaTensor) or _affine(m.meta.get("affine")) is None:
        m = MetaTensor(m.as_tensor(), meta=meta)
    shape = meta.get("spatial_shape")
    shape = tuple(int(s) for s in np.asarray(shape).tolist()) if shape is not None else tuple(m.shape[1:])
    original = _affine(meta.get("original_affine"))
    m = m.float()
    if m.ndim == 3:  # 2D: same rows/columns as the picture
        if tuple(m.shape[1:]) != shape and len(shape) == 2:
            m = Resize(spatial_size=shape, mode="bilinear")(m)
        return m
    if original is None or original.shape != (4, 4):
        return m
    if nib is not None and not np.allclose(_affine(m.affine), original, atol=1e-4):
        codes = "".join(nib.orientations.aff2axcodes(original))
        m = Orientation(axcodes=codes, labels=(("L", "R"), ("P", "A"), ("I", "S")))(m)
    if tuple(m.shape[1:]) != shape or not np.allclose(_affine(m.affine), original, atol=1e-4):
        m = SpatialResample(mode="bilinear", padding_mode="zeros")(
            m, dst_affine=torch.as_tensor(original), spatial_size=shape
        )
    m.affine = torch.as_tensor(original)
    return m
