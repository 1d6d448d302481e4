"""Translate 2D images and, slice by slice, 3D volumes with an image-to-image generator, at the training size.

A two-domain CycleGAN has two generators: ``to_normal`` (abnormal -> healthy, whose output the anomaly map compares
with the input) and ``to_abnormal`` (healthy -> abnormal). :class:`SliceTranslator` runs either on a whole scan the
way :class:`~monai_anomaly.inferers.slice.AnomalySliceInferer` scores it: each slice resized with the transform of
training (:class:`~monai_anomaly.transforms.spatial.ResizeToSquare`), translated, and put back onto the slice's grid.
Every slice is translated (a translation of an empty slice is harmless, and a viewer wants the whole scan).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from monai.data import MetaTensor

from monai_anomaly.transforms.spatial import ResizeToSquare

__all__ = ["SliceTranslator"]


class SliceTranslator:
    """Apply a generator to every slice of a ``(C, H, W)`` image or ``(C, H, W, D)`` volume at ``spatial_size``.

    Args:
        spatial_size: the side the generator was trained on (``image_size``).
        spatial_dim: the axis of ``(H, W, D)`` to slice along (2 = axial for RAS volumes).
        sw_batch_size: slices per generator call.

    Example:
        >>> import torch
        >>> t = SliceTranslator(16, sw_batch_size=4)
        >>> out = t(torch.rand(1, 20, 24, 3), lambda x: x * 0 - 1)
        >>> tuple(out.shape), float(out.max())
        ((1, 20, 24, 3), -1.0)
    """

    def __init__(self, spatial_size: int, spatial_dim: int = 2, sw_batch_size: int = 16) -> None:
        if spatial_dim not in (0, 1, 2):
            raise ValueError(f"spatial_dim must be 0, 1 or 2 (an axis of H, W, D), got {spatial_dim}.")
        self.spatial_dim = int(spatial_dim)
        self.sw_batch_size = max(1, int(sw_batch_size))
        self.resize = ResizeToSquare(int(spatial_size), interp_mode="bilinear", anti_aliasing=True)

    @torch.no_grad()
    def __call__(self, image: torch.Tensor, generator: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """The translated image, on ``image``'s grid (a plain tensor; the caller keeps the geometry)."""
        vol = image.as_tensor() if isinstance(image, MetaTensor) else torch.as_tensor(image)
        if vol.ndim not in (3, 4):
            raise ValueError(f"SliceTranslator takes (C, H, W) images or (C, H, W, D) volumes, got {tuple(vol.shape)}")
        dim = self.spatial_dim + 1
        cut = [vol] if vol.ndim == 3 else [vol.select(dim, i) for i in range(vol.shape[dim])]
        spatial = tuple(cut[0].shape[1:])
        xs = [torch.as_tensor(self.resize(s)).float() for s in cut]
        outs: list[torch.Tensor] = []
        for start in range(0, len(xs), self.sw_batch_size):
            y = generator(torch.stack(xs[start : start + self.sw_batch_size]))
            outs.extend(self.resize.restore(yi.float().cpu(), spatial)[:1] for yi in y)
        if vol.ndim == 3:
            return outs[0]
        return torch.stack(outs, dim=dim)
