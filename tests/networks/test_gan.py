from __future__ import annotations

import pytest
import torch

from monai_anomaly.networks.anomaly_net import AnomalyMapNet
from monai_anomaly.networks.gan import HealthyReconstruction, HealthyTranslationGenerator, wgan_critic

SMALL = (8, 8, 16, 32, 64, 8)


def test_generator_adds_a_map_and_starts_from_a_zero_map():
    g = HealthyTranslationGenerator(2, features=SMALL)
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    out = g(x)
    assert set(out) == {"healthy", "map"} and out["healthy"].shape == x.shape
    assert float(out["map"].detach().abs().max()) == 0.0  # the last layer starts at zero
    torch.testing.assert_close(out["healthy"], torch.tanh(x))
    # healthy = tanh(x + m) for any map the network predicts
    with torch.no_grad():
        g.unet.final_conv.bias.fill_(0.3)
    out = g(x)
    torch.testing.assert_close(out["healthy"], torch.tanh(x + out["map"]))
    assert float(out["healthy"].abs().max()) <= 1.0


def test_mask_variant_blends_input_and_generated_content():
    g = HealthyTranslationGenerator(2, features=SMALL, mask=True)
    x = torch.rand(1, 1, 32, 32) * 2 - 1
    out = g(x)
    assert set(out) == {"healthy", "map", "mask"}
    torch.testing.assert_close(out["mask"], torch.full_like(x, 0.5))
    torch.testing.assert_close(out["healthy"], 0.5 * torch.tanh(x) + 0.5 * x)


def test_generator_works_in_3d_and_the_anomaly_net_gives_the_absolute_difference():
    g = HealthyTranslationGenerator(3, features=SMALL)
    x = torch.rand(1, 1, 32, 32, 32) * 2 - 1
    net = AnomalyMapNet(HealthyReconstruction(g), "abs").eval()
    torch.testing.assert_close(net(x), (x - torch.tanh(x)).abs())


def test_critic_has_no_normalisation_and_one_score_per_sample():
    c = wgan_critic((1, 32, 32), channels=(8, 16, 32))
    assert c(torch.rand(5, 1, 32, 32)).shape == (5, 1)
    norms = (torch.nn.BatchNorm2d, torch.nn.InstanceNorm2d, torch.nn.GroupNorm, torch.nn.Dropout)
    assert not any(isinstance(m, norms) for m in c.modules())


def test_critic_scores_depend_only_on_their_own_sample():
    """What the per-sample gradient penalty needs: no batch statistics."""
    c = wgan_critic((1, 16, 16), channels=(8, 16))
    a, b = torch.rand(1, 1, 16, 16), torch.rand(3, 1, 16, 16)
    torch.testing.assert_close(c(torch.cat([a, b]))[:1], c(a))


@pytest.mark.parametrize("upsample", ["nontrainable", "deconv"])
def test_generator_upsampling_options(upsample):
    g = HealthyTranslationGenerator(2, features=SMALL, upsample=upsample)
    assert g(torch.zeros(1, 1, 32, 32))["healthy"].shape == (1, 1, 32, 32)
