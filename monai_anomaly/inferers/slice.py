"""Run a 2D anomaly network on 2D images and, slice by slice, on 3D volumes at the size it was trained on."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from monai.inferers import SliceInferer
from monai.utils import ensure_tuple_rep

__all__ = ["AnomalySliceInferer", "fit_to_square", "restore_from_square"]


def fit_to_square(x: torch.Tensor, size: Sequence[int]) -> tuple[torch.Tensor, tuple[int, int, int, int, int, int]]:
    """Resize a ``(B, C, H, W)`` batch so its longest side is ``size`` (aspect kept), then zero-pad to ``size``.

    This is the tensor twin of :class:`monai_anomaly.transforms.spatial.ResizeToSquare` used at training time.

    Returns:
        the resized batch and ``(h, w, top, bottom, left, right)`` to undo it with :func:`restore_from_square`.
    """
    th, tw = (int(s) for s in size)
    h, w = x.shape[-2:]
    scale = min(th / h, tw / w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    y = F.interpolate(x.float(), size=(nh, nw), mode="bilinear", align_corners=False, antialias=scale < 1)
    top, left = (th - nh) // 2, (tw - nw) // 2
    bottom, right = th - nh - top, tw - nw - left
    y = F.pad(y, (left, right, top, bottom))
    return y, (h, w, top, bottom, left, right)


def restore_from_square(y: torch.Tensor, geometry: tuple[int, int, int, int, int, int]) -> torch.Tensor:
    """Undo :func:`fit_to_square`: crop the padding and resize back to the original ``(h, w)``."""
    h, w, top, bottom, left, right = geometry
    y = y[..., top : y.shape[-2] - bottom, left : y.shape[-1] - right]
    if tuple(y.shape[-2:]) != (h, w):
        y = F.interpolate(y, size=(h, w), mode="bilinear", align_corners=False)
    return y


class AnomalySliceInferer(SliceInferer):
    """Apply a 2D network to 2D images, or slice by slice to 3D volumes, at its training size.

    Each slice (or image) is resized to ``spatial_size`` keeping its aspect ratio and padded, passed through the
    network, and its output (an anomaly map or a reconstruction) resized back, so the result has the input's shape and
    overlays it. For ``(B, C, H, W, D)`` volumes, MONAI's :class:`~monai.inferers.SliceInferer` walks the slices of
    ``spatial_dim`` in batches of ``sw_batch_size``.

    Args:
        spatial_size: the 2D size the network was trained on, e.g. ``(128, 128)`` or ``128``.
        spatial_dim: the axis of ``(H, W, D)`` to slice along (2 = axial for RAS volumes).
        sw_batch_size: number of slices per network call.
        kwargs: other arguments of :class:`~monai.inferers.SlidingWindowInferer` (e.g. ``progress``).

    Example:
        >>> import torch
        >>> inferer = AnomalySliceInferer(spatial_size=32, spatial_dim=2, sw_batch_size=8)
        >>> inferer(torch.rand(1, 1, 40, 48, 5), lambda x: x * 0 + 1).shape
        torch.Size([1, 1, 40, 48, 5])
    """

    def __init__(self, spatial_size: Sequence[int] | int, spatial_dim: int = 2, sw_batch_size: int = 16, **kwargs: Any):
        if spatial_dim not in (0, 1, 2):
            raise ValueError(f"spatial_dim must be 0, 1 or 2 (an axis of H, W, D), got {spatial_dim}.")
        self.spatial_size = ensure_tuple_rep(spatial_size, 2)
        kwargs.setdefault("overlap", 0.0)
        super().__init__(spatial_dim, roi_size=self.spatial_size, sw_batch_size=sw_batch_size, **kwargs)

    def _resized(self, network: Callable[..., Any]) -> Callable[..., torch.Tensor]:
        def run(x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
            y, geometry = fit_to_square(x, self.spatial_size)
            out = network(y, *args, **kwargs)
            if isinstance(out, (tuple, list)):  # e.g. a VAE's (recon, mu, logvar, z)
                out = out[0]
            return restore_from_square(out, geometry)

        return run

    def __call__(self, inputs: torch.Tensor, network: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if inputs.ndim == 4:
            return self._resized(network)(inputs, *args, **kwargs)
        if inputs.ndim != 5:
            raise ValueError(
                f"AnomalySliceInferer takes (B, C, H, W) images or (B, C, H, W, D) volumes, got shape "
                f"{tuple(inputs.shape)}."
            )
        slice_shape = [s for i, s in enumerate(inputs.shape[2:]) if i != self.spatial_dim]
        # one window per slice: the whole slice, resized inside the network wrapper
        self.orig_roi_size = tuple(slice_shape)
        return super().__call__(inputs, self._resized(network), *args, **kwargs)
