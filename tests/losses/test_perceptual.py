"""Perceptual loss from a user's weight file: read safely, frozen, zero for equal images, larger for structural
changes than for a uniform shift, differentiable into the generator; bad files get a short error."""

from __future__ import annotations

import pytest
import torch
from monai.networks.nets import resnet18

from monai_anomaly.engines.cyclegan import CycleGANTrainer
from monai_anomaly.losses.perceptual import FilePerceptualLoss
from monai_anomaly.networks.cyclegan import ResNetGenerator, patch_discriminator
from monai_anomaly.utils.errors import BadInputError


@pytest.fixture()
def weights(tmp_path):
    torch.manual_seed(0)
    net = resnet18(spatial_dims=2, n_input_channels=1, num_classes=2)
    path = tmp_path / "model.pt"
    # the layout of the supervised_resnet18 bundle's model.pt: a wrapper prefix and the training intensity range
    torch.save(
        {"model": {f"model.{k}": v for k, v in net.state_dict().items()}, "settings": {"intensity_range": [0, 1]}}, path
    )
    return str(path)


def _brains(n=2, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    disc = (((yy - size / 2) ** 2 + (xx - size / 2) ** 2) < (size / 3) ** 2).float()
    return (disc * 1.2 - 0.8 + 0.1 * torch.randn(n, 1, size, size, generator=g)).clamp(-1, 1)


def test_loss_is_zero_for_equal_images_and_orders_changes(weights):
    loss = FilePerceptualLoss(weights, input_range=(-1, 1))
    x = _brains()
    assert float(loss(x, x)) == 0.0
    blob = x.clone()
    blob[:, :, 20:36, 20:36] = 1.0  # a bright lesion
    assert float(loss(blob, x)) > 0.0
    assert float(loss(blob, x)) > float(loss(x, _brains(seed=0)))  # the same image again: zero, not a change
    assert all(not p.requires_grad for p in loss.parameters())
    loss.train()
    assert not loss.net.training  # BatchNorm statistics stay those of the file


def test_gradient_reaches_the_generator_and_the_cyclegan_reports_the_term(weights):
    torch.manual_seed(0)
    g_ab, g_ba = ResNetGenerator(2, features=8, n_res_blocks=1), ResNetGenerator(2, features=8, n_res_blocks=1)
    d_a, d_b = patch_discriminator(channels=8, num_layers_d=2), patch_discriminator(channels=8, num_layers_d=2)
    og = torch.optim.Adam(list(g_ab.parameters()) + list(g_ba.parameters()), 2e-4, betas=(0.5, 0.999))
    oa, ob = torch.optim.Adam(d_a.parameters(), 2e-4), torch.optim.Adam(d_b.parameters(), 2e-4)
    perc = FilePerceptualLoss(weights, input_range=(-1, 1))
    x = _brains(4)
    perc(g_ab(x), x).backward()
    assert all(p.grad is not None for p in g_ab.parameters())
    assert sum(float(p.grad.abs().sum()) for p in g_ab.parameters()) > 0
    og.zero_grad()
    t = CycleGANTrainer("cpu", 1, [{"image": _brains(4)}], g_ab, g_ba, d_a, d_b, og, oa, ob, perceptual=perc, seed=0)
    out = t.train_step({"image": _brains(4)})
    assert float(out["perceptual_loss"]) > 0
    assert "perceptual_loss" in t.LOSS_NAMES
    assert "perceptual" not in t.networks  # the file's network is not trained or saved


def test_bad_files_and_settings_get_short_errors(tmp_path, weights):
    with pytest.raises(BadInputError, match="no such"):
        FilePerceptualLoss(str(tmp_path / "absent.pt"))
    junk = tmp_path / "junk.pt"
    torch.save({"model": {"w": torch.zeros(3)}}, junk)
    with pytest.raises(BadInputError, match="resnet18"):
        FilePerceptualLoss(str(junk))
    with pytest.raises(BadInputError, match="layers"):
        FilePerceptualLoss(weights, layers=("layer9",))
    with pytest.raises(ValueError, match="1-channel 2D"):
        FilePerceptualLoss(weights)(torch.zeros(1, 1, 8, 16, 16), torch.zeros(1, 1, 8, 16, 16))


def test_perceptual_map_is_zero_for_equal_images_and_highest_where_they_differ(weights):
    from monai_anomaly.losses.perceptual import PerceptualMap

    m = PerceptualMap(str(weights), input_range=(-1, 1))
    x = torch.rand(2, 1, 64, 64) * 2 - 1
    y = x.clone()
    y[:, :, 8:20, 40:52] = 1.0  # a bright square in the top right
    assert float(m(x, x).abs().max()) == 0.0
    d = m(x, y)
    assert d.shape == (2, 1, 64, 64) and not d.requires_grad
    assert float(d[:, :, 8:20, 40:52].mean()) > 3 * float(d[:, :, 40:60, 4:24].mean())  # local, not global
    # the architecture alone, then the saved weights: the same map (what inference rebuilds from model.pt)
    again = PerceptualMap(None, input_range=(-1, 1))
    again.load_state_dict(m.state_dict())
    assert torch.allclose(again(x, y), d)
    m.train()
    assert not m.training  # frozen BatchNorm


def test_the_perceptual_map_method_needs_its_network():
    from monai_anomaly.networks.anomaly_net import AnomalyMapNet
    from monai_anomaly.scoring.maps import compute_anomaly_map

    with pytest.raises(ValueError, match="needs perceptual"):
        AnomalyMapNet(torch.nn.Identity(), map_method="perceptual")
    with pytest.raises(ValueError, match="perceptual_score_weights"):
        compute_anomaly_map(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8), method="perceptual")
