"""Tests of monai_anomaly.losses.reconstruction against manual computations."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from monai.metrics import SSIMMetric

from monai_anomaly.losses.reconstruction import ReconstructionLoss, kl_divergence


@pytest.fixture
def pair():
    g = torch.Generator().manual_seed(0)
    target = torch.rand(4, 1, 32, 32, generator=g)
    recon = (target + 0.1 * torch.randn(4, 1, 32, 32, generator=g)).clamp(0, 1)
    return recon, target


def _ssim_per_sample(recon, target, win=7):
    m = SSIMMetric(spatial_dims=2, data_range=1.0, win_size=win)
    return m._compute_tensor(recon, target).reshape(-1)


def test_l1_and_l2_match_torch(pair):
    recon, target = pair
    assert torch.allclose(ReconstructionLoss("l1")(recon, target), F.l1_loss(recon, target))
    assert torch.allclose(ReconstructionLoss("l2")(recon, target), F.mse_loss(recon, target))
    assert torch.allclose(
        ReconstructionLoss("l1", reduction="sum")(recon, target), (recon - target).abs().mean(dim=(1, 2, 3)).sum()
    )
    per = ReconstructionLoss("l2", reduction="none")(recon, target)
    assert per.shape == (4,)
    assert torch.allclose(per, ((recon - target) ** 2).mean(dim=(1, 2, 3)))


def test_ssim_and_mixture_match_monai_ssim(pair):
    recon, target = pair
    ssim = _ssim_per_sample(recon, target)
    assert torch.allclose(ReconstructionLoss("ssim", reduction="none")(recon, target), 1 - ssim, atol=1e-6)
    l1 = (recon - target).abs().mean(dim=(1, 2, 3))
    mixed = ReconstructionLoss("l1+ssim", ssim_weight=0.3)(recon, target)
    assert torch.allclose(mixed, (0.7 * l1 + 0.3 * (1 - ssim)).mean(), atol=1e-6)


def test_identical_images_have_zero_loss(pair):
    _, target = pair
    for kind in ("l1", "l2", "ssim", "l1+ssim"):
        assert float(ReconstructionLoss(kind)(target.clone(), target)) == pytest.approx(0.0, abs=1e-5)


def test_vae_tuple_adds_weighted_kl(pair):
    recon, target = pair
    g = torch.Generator().manual_seed(1)
    mu, logvar = torch.randn(4, 6, generator=g), 0.5 * torch.randn(4, 6, generator=g)
    kl_manual = (-0.5 * (1 + logvar - mu**2 - logvar.exp())).sum(dim=1)
    assert torch.allclose(kl_divergence(mu, logvar), kl_manual)
    loss = ReconstructionLoss("l1", kl_weight=0.01)
    terms = loss.compute_terms((recon, mu, logvar, mu), target)
    l1 = F.l1_loss(recon, target)
    assert torch.allclose(terms["recon_loss"], l1)
    assert torch.allclose(terms["kl_loss"], kl_manual.mean())
    assert torch.allclose(terms["loss"], l1 + 0.01 * kl_manual.mean())
    assert torch.allclose(loss((recon, mu, logvar, mu), target), terms["loss"])
    # the standard normal posterior has zero KL; a plain tensor has a zero KL term
    zero = torch.zeros(4, 6)
    assert float(ReconstructionLoss("l1", kl_weight=1.0).compute_terms((recon, zero, zero), target)["kl_loss"]) == 0
    assert float(loss.compute_terms(recon, target)["kl_loss"]) == 0


def test_gradients_reach_vae_outputs(pair):
    recon, target = pair
    recon = recon.clone().requires_grad_(True)
    mu = torch.ones(4, 3, requires_grad=True)
    logvar = torch.zeros(4, 3, requires_grad=True)
    ReconstructionLoss("l1+ssim", kl_weight=1.0)((recon, mu, logvar, mu), target).backward()
    assert recon.grad.abs().sum() > 0
    assert torch.allclose(mu.grad, torch.full_like(mu, 1.0 / 4))  # d/dmu of mean_b sum 0.5 mu^2


def test_bad_arguments(pair):
    recon, target = pair
    with pytest.raises(ValueError, match="kind"):
        ReconstructionLoss("l3")
    with pytest.raises(ValueError, match="reduction"):
        ReconstructionLoss(reduction="max")
    with pytest.raises(ValueError, match="ssim_weight"):
        ReconstructionLoss("l1+ssim", ssim_weight=1.5)
    with pytest.raises(ValueError, match="kl_weight"):
        ReconstructionLoss(kl_weight=-1)
    with pytest.raises(ValueError, match="shapes differ"):
        ReconstructionLoss()(recon[:, :, :16], target)
    with pytest.raises(ValueError, match="VAE prediction"):
        ReconstructionLoss()((recon,), target)
