"""Simplex noise: seeded and reproducible, smooth (low-frequency, unlike white noise), standardised, 2D and 3D;
the AnoDDPM-style network trains and scores with it deterministically."""

from __future__ import annotations

import pytest
import torch

from monai_anomaly.networks.diffusion import DiffusionReconstruction
from monai_anomaly.networks.factory import reconstruction_network
from monai_anomaly.networks.simplex import fractal_simplex_noise, simplex_noise3


def _g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _neighbour_correlation(n: torch.Tensor) -> float:
    a, b = n[..., :, :-1].flatten(), n[..., :, 1:].flatten()
    return float(torch.corrcoef(torch.stack([a, b]))[0, 1])


def test_noise_is_reproducible_from_its_seed_and_differs_between_seeds_and_samples():
    a = fractal_simplex_noise((3, 1, 48, 48), _g(0))
    torch.testing.assert_close(fractal_simplex_noise((3, 1, 48, 48), _g(0)), a, rtol=0, atol=0)
    assert not torch.allclose(fractal_simplex_noise((3, 1, 48, 48), _g(1)), a)
    assert not torch.allclose(a[0], a[1])  # every sample of a batch gets its own field


def test_noise_is_standardised_and_spatially_smooth_unlike_gaussian_noise():
    n = fractal_simplex_noise((4, 2, 64, 64), _g(3))
    per = n.view(8, -1)
    torch.testing.assert_close(per.mean(1), torch.zeros(8), atol=1e-5, rtol=0)
    torch.testing.assert_close(per.std(1), torch.ones(8), atol=1e-4, rtol=0)
    assert _neighbour_correlation(n) > 0.6  # blobs: neighbouring pixels move together
    assert abs(_neighbour_correlation(torch.randn(4, 2, 64, 64, generator=_g(3)))) < 0.05
    coarse = fractal_simplex_noise((4, 1, 64, 64), _g(3), octaves=1)
    assert _neighbour_correlation(coarse) > _neighbour_correlation(n)  # finer octaves add detail


def test_raw_simplex_noise_is_bounded_continuous_and_zero_on_the_lattice():
    perm = torch.randperm(256, generator=_g(0))
    pts = torch.rand(20000, 3, generator=_g(1)) * 20 - 10
    v = simplex_noise3(pts, perm)
    assert float(v.abs().max()) <= 1.0 and float(v.std()) > 0.1
    step = simplex_noise3(pts + 1e-3, perm)
    assert float((step - v).abs().max()) < 0.05
    cells = torch.randint(-50, 50, (100, 3), generator=_g(2)).float()
    lattice = cells - cells.sum(-1, keepdim=True) / 6.0  # the simplex grid's corners, unskewed
    # at a corner its own gradient term is zero and every other corner is beyond the kernel's reach
    torch.testing.assert_close(simplex_noise3(lattice, perm), torch.zeros(100), atol=1e-4, rtol=0)


def test_volumes_get_3d_noise_and_bad_shapes_are_refused():
    v = fractal_simplex_noise((1, 1, 32, 32, 32), _g(0))
    assert v.shape == (1, 1, 32, 32, 32)
    depth = torch.corrcoef(torch.stack([v[0, 0, :-1].flatten(), v[0, 0, 1:].flatten()]))[0, 1]
    assert float(depth) > 0.5  # smooth along the third axis too
    with pytest.raises(ValueError, match="simplex noise"):
        fractal_simplex_noise((1, 1, 32), _g(0))
    with pytest.raises(ValueError, match="noise"):
        DiffusionReconstruction(torch.nn.Identity(), timesteps=100, t0=50, noise="perlin")


def test_anoddpm_with_simplex_noise_is_deterministic_and_uses_it_in_training():
    net = reconstruction_network(
        "anoddpm", 32, channels=(8, 16), diffusion={"timesteps": 100, "t0": 40, "steps": 2, "noise": "simplex"}
    )
    assert net.noise == "simplex"
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    net.eval()
    first = net(x)
    torch.testing.assert_close(net(x), first, rtol=0, atol=0)
    gauss = DiffusionReconstruction(net.unet, timesteps=100, t0=40, steps=2).eval()
    assert not torch.allclose(gauss(x), first)
    _, _, noise = net.training_pair(x, _g(0))
    assert _neighbour_correlation(noise) > 0.5  # the network learns to predict simplex noise
    loss = net.training_loss(x, _g(0))
    loss.backward()
    assert all(p.grad is not None for p in net.unet.parameters() if p.requires_grad)
