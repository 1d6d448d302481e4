"""Fractal simplex noise in PyTorch, for AnoDDPM-style partial diffusion (Wyatt et al., CVPRW 2022).

AnoDDPM replaces the Gaussian noise of DDPM with multi-octave simplex noise: low-frequency blobs that hide a lesion
better than white noise, so the denoised image loses larger anomalies. The public code evaluates OpenSimplex point by
point on the CPU (numba) and only for batch 1; this is the 3D simplex noise of Perlin (2002), in Gustavson's
formulation, evaluated for a whole batch at once with tensor operations, on any device, seeded by a
``torch.Generator``.

A 2D image is a slice of the 3D field at a random depth; a 3D volume samples it directly. Every sample and channel
gets its own random offset in the field, and the octaves are summed with ``persistence`` and then standardised per
sample and channel to zero mean and unit variance, so the noise has the scale the diffusion schedule assumes for
``epsilon`` (the public code leaves it unscaled).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["simplex_noise3", "fractal_simplex_noise"]

_F3, _G3 = 1.0 / 3.0, 1.0 / 6.0
# the 12 edge directions of a cube: the gradients of 3D simplex noise
_GRAD3 = torch.tensor(
    [[1, 1, 0], [-1, 1, 0], [1, -1, 0], [-1, -1, 0], [1, 0, 1], [-1, 0, 1],
     [1, 0, -1], [-1, 0, -1], [0, 1, 1], [0, -1, 1], [0, 1, -1], [0, -1, -1]],
    dtype=torch.float32,
)  # fmt: skip


def simplex_noise3(points: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """3D simplex noise at ``points`` (``(..., 3)``), in about ``[-1, 1]``.

    Args:
        points: coordinates; one lattice cell per unit.
        perm: a permutation of ``0..255`` (``long``), the seed of the field.

    Example:
        >>> perm = torch.randperm(256, generator=torch.Generator().manual_seed(0))
        >>> n = simplex_noise3(torch.rand(1000, 3) * 8, perm)
        >>> bool(n.abs().max() <= 1.0)
        True
    """
    p = points.float()
    perm = perm.to(p.device).long()
    grads = _GRAD3.to(p.device)
    s = p.sum(-1, keepdim=True) * _F3
    cell = torch.floor(p + s)
    t = cell.sum(-1, keepdim=True) * _G3
    d0 = p - (cell - t)  # offset from the cell origin
    # rank of each coordinate of d0 (0 smallest .. 2 largest): which simplex of the cube the point is in
    x, y, z = d0.unbind(-1)
    rank = torch.stack(
        [(x >= y).long() + (x >= z).long(), (y > x).long() + (y >= z).long(), (z > x).long() + (z > y).long()], -1
    )
    corners = [torch.zeros_like(rank), (rank >= 2).long(), (rank >= 1).long(), torch.ones_like(rank)]
    ci = cell.long()
    out = torch.zeros(p.shape[:-1], device=p.device)
    for n, off in enumerate(corners):
        d = d0 - off.float() + n * _G3
        lattice = (ci + off) & 255
        h = perm[(lattice[..., 0] + perm[(lattice[..., 1] + perm[lattice[..., 2]]) & 255]) & 255] % 12
        falloff = (0.6 - (d * d).sum(-1)).clamp_min(0)
        out = out + falloff**4 * (grads[h] * d).sum(-1)
    return 32.0 * out


def fractal_simplex_noise(
    shape: Sequence[int],
    generator: torch.Generator | None = None,
    octaves: int = 6,
    persistence: float = 0.8,
    scale: float = 0.25,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Multi-octave simplex noise of ``shape`` (``(batch, channels, *spatial)``, 2 or 3 spatial dims), standardised
    per sample and channel.

    Args:
        shape: the noise's shape.
        generator: seeds the field's permutation and every sample's offset (the same seed gives the same noise).
        octaves: number of octaves; each halves the feature size. Octaves whose features would be under 2 pixels
            are left out (at 64 px with ``scale`` 0.25: 4 of AnoDDPM's 6).
        persistence: amplitude ratio of successive octaves.
        scale: feature size of the first octave as a fraction of the largest spatial size (AnoDDPM: 64 px at 256 px,
            0.25).
        device: where the noise is computed.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> n = fractal_simplex_noise((2, 1, 32, 32), g)
        >>> n.shape, round(float(n[0].std()), 3)
        (torch.Size([2, 1, 32, 32]), 1.0)
    """
    shape = tuple(int(s) for s in shape)
    spatial = shape[2:]
    if len(spatial) not in (2, 3):
        raise ValueError(f"simplex noise needs (batch, channels, H, W) or (batch, channels, D, H, W), got {shape}")
    if octaves < 1:
        raise ValueError(f"octaves must be >= 1, got {octaves}")
    bc = shape[0] * shape[1]
    perm = torch.randperm(256, generator=generator)
    offsets = torch.rand((bc, 3), generator=generator) * 256.0
    axes = [torch.arange(s, dtype=torch.float32) for s in spatial]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1)  # (*spatial, dims)
    if len(spatial) == 2:
        grid = torch.cat([grid, torch.zeros(*spatial, 1)], -1)  # a 2D image: one slice of the 3D field
    feature = max(1.0, float(scale) * max(spatial))
    grid, offsets = grid.to(device), offsets.to(device)
    pts = grid.unsqueeze(0) / feature + offsets.view(bc, *([1] * len(spatial)), 3)
    noise = torch.zeros((bc, *spatial), device=device)
    amp = 1.0
    for o in range(int(octaves)):
        if o and feature / 2.0**o < 2.0:
            break  # features under 2 pixels cannot be drawn on this grid: they would only alias into white noise
        noise = noise + amp * simplex_noise3(pts * (2.0**o), perm)
        amp *= float(persistence)
    flat = noise.view(bc, -1)
    flat = (flat - flat.mean(1, keepdim=True)) / flat.std(1, keepdim=True).clamp_min(1e-6)
    return flat.view(shape)
