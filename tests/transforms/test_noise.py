"""Tests for monai_anomaly.transforms.noise: coarse noise for denoising autoencoders."""

from __future__ import annotations

import pytest
import torch

from monai_anomaly.transforms.noise import RandCoarseNoise


def _brain(b=4, size=64) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    disc = ((xx**2 + yy**2) < 0.6).float()
    return (0.5 + 0.1 * torch.sin(8 * xx)) * disc * torch.ones(b, 1, size, size)


def test_noise_is_coarse_seeded_and_only_on_the_foreground():
    x = _brain()
    t = RandCoarseNoise(std=0.2, scale=8, batched=True)
    t.set_random_state(3)
    n1 = t(x) - x
    t.set_random_state(3)
    assert torch.equal(t(x) - x, n1)  # same seed, same noise
    assert float(n1[x <= 0.01].abs().max()) == 0.0  # nothing added in the air
    assert float(n1[x > 0.01].std()) > 0.05
    # coarse: neighbouring pixels are strongly correlated, unlike white noise
    a, b = n1[..., :, :-1][x[..., :, :-1] > 0.01], n1[..., :, 1:][x[..., :, :-1] > 0.01]
    assert float(torch.corrcoef(torch.stack([a, b]))[0, 1]) > 0.9
    assert not torch.equal(n1[0], n1[1])  # every image gets its own noise


def test_unbatched_3d_and_options():
    vol = torch.ones(1, 16, 16, 16)
    out = RandCoarseNoise(std=0.1, resolution=4, fg_threshold=None)(vol)
    assert out.shape == vol.shape and not torch.equal(out, vol)
    assert torch.equal(RandCoarseNoise(std=0.0)(vol), vol)
    assert torch.equal(RandCoarseNoise(std=0.2, prob=0.0)(vol), vol)
    with pytest.raises(ValueError, match="std"):
        RandCoarseNoise(std=-1)
    with pytest.raises(ValueError, match="expected"):
        RandCoarseNoise(batched=True)(torch.ones(4, 4))
