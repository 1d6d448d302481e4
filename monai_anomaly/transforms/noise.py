"""Coarse noise for denoising autoencoders (Kascenas, Pugeault and O'Neil, MIDL 2022).

A denoising autoencoder trained to remove *coarse* (low-frequency) noise from healthy images learns to replace any
blob that does not look healthy, so a lesion, which is also a blob, is "denoised" away and shows in the residual.
Fine, pixel-wise noise would not teach that.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from monai.transforms import Randomizable, Transform
from monai.utils import TransformBackends

__all__ = ["RandCoarseNoise"]


class RandCoarseNoise(Randomizable, Transform):
    """Add low-resolution Gaussian noise, up-sampled to the image size and randomly rolled, inside the foreground.

    Works on one channel-first image ``(C, H, W[, D])`` or a batch ``(B, C, H, W[, D])`` (set ``batched=True``);
    each image gets its own noise. Noise of std ``std`` is drawn on a grid of ``resolution`` points per side
    (16 for 128-pixel images in the paper: blobs about 8 pixels wide), up-sampled (bi/trilinear), rolled by a random
    offset so the blob grid does not sit at fixed positions, and added where the image is above ``fg_threshold``
    (noise in the air would only teach the model to clean the background).

    Args:
        std: standard deviation of the noise, in image intensity units (0.2 for images scaled to about [0, 1]).
        resolution: noise grid points per side, or ``None`` for ``size // scale`` with ``scale``.
        scale: blob size in pixels when ``resolution`` is ``None`` (8: a 64-pixel image gets an 8x8 grid).
        prob: probability of corrupting each image.
        fg_threshold: pixels above this value get noise; ``None`` for everywhere.
        batched: the input has a batch axis.

    Example:
        >>> x = torch.ones(2, 1, 32, 32)
        >>> t = RandCoarseNoise(std=0.2, resolution=4, batched=True)
        >>> t.set_random_state(0)  # doctest: +ELLIPSIS
        <...RandCoarseNoise object at ...>
        >>> y = t(x)
        >>> y.shape, bool((y != x).any()), 0.05 < float((y - x).std()) < 0.25  # interpolation lowers the std
        (torch.Size([2, 1, 32, 32]), True, True)
    """

    backend = [TransformBackends.TORCH]

    def __init__(
        self,
        std: float = 0.2,
        resolution: int | None = None,
        scale: int = 8,
        prob: float = 1.0,
        fg_threshold: float | None = 0.01,
        batched: bool = False,
    ) -> None:
        if std < 0:
            raise ValueError(f"std must be >= 0, got {std}")
        if resolution is not None and resolution < 1:
            raise ValueError(f"resolution must be >= 1, got {resolution}")
        if scale < 1:
            raise ValueError(f"scale must be >= 1, got {scale}")
        if not 0 <= prob <= 1:
            raise ValueError(f"prob must be in [0, 1], got {prob}")
        self.std = float(std)
        self.resolution = resolution
        self.scale = int(scale)
        self.prob = float(prob)
        self.fg_threshold = fg_threshold
        self.batched = batched
        self._seed = 0

    def randomize(self, data: Any = None) -> None:
        self._seed = int(self.R.randint(0, 2**31 - 1))

    def __call__(self, img: torch.Tensor, randomize: bool = True) -> torch.Tensor:
        x = img if self.batched else img[None]
        if x.ndim not in (4, 5):
            raise ValueError(f"expected (C, H, W[, D]) or, batched, (B, C, H, W[, D]); got shape {tuple(img.shape)}")
        if randomize:
            self.randomize()
        if self.std == 0 or self.prob == 0:
            return img
        gen = torch.Generator().manual_seed(self._seed)
        size = tuple(int(s) for s in x.shape[2:])
        grid = tuple(self.resolution or max(1, s // self.scale) for s in size)
        noise = torch.randn((x.shape[0], x.shape[1], *grid), generator=gen) * self.std
        mode = "bilinear" if len(size) == 2 else "trilinear"
        noise = F.interpolate(noise, size=size, mode=mode, align_corners=False)
        for b in range(x.shape[0]):  # a random roll per image, along every spatial axis
            shifts = [int(torch.randint(0, s, (1,), generator=gen)) for s in size]
            noise[b] = torch.roll(noise[b], shifts=shifts, dims=list(range(1, 1 + len(size))))
        keep = (torch.rand((x.shape[0],) + (1,) * (x.ndim - 1), generator=gen) < self.prob).float()
        noise = noise * keep
        noise = noise.to(device=x.device, dtype=x.dtype if torch.is_floating_point(x) else torch.float32)
        if self.fg_threshold is not None:
            noise = noise * (x > self.fg_threshold).to(noise.dtype)
        out = x + noise
        return out if self.batched else out[0]
