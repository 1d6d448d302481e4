"""Tests of monai_anomaly.metrics.quality: SSIM / MS-SSIM / PSNR, the Frechet distance against its closed form, the
Inception Score's bounds, classifier features and loading a feature network from a checkpoint."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from monai.networks.nets import resnet18

from monai_anomaly.metrics.quality import (
    MS_SSIM_WEIGHTS,
    ClassifierFeatures,
    frechet_distance,
    inception_score,
    load_feature_network,
    reconstruction_quality,
)
from monai_anomaly.networks.autoencoder import ConvAutoEncoder
from monai_anomaly.utils.errors import BadInputError


def _images(n=6, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    base = ((xx / 0.7) ** 2 + (yy / 0.8) ** 2 <= 1).float() * 0.6 + 0.2 * torch.sin(4 * xx)
    return (base[None, None] + 0.05 * torch.rand(n, 1, size, size, generator=g)).clamp(0, 1)


def _noisy(x, std, seed=1):
    g = torch.Generator().manual_seed(seed)
    return x + std * torch.randn(x.shape, generator=g)


# ---------------------------------------------------------------------------------------- reconstruction quality
def test_identical_images_are_perfect():
    x = _images()
    q = reconstruction_quality(x, x, data_range=1.0)
    assert q["n"] == 6
    assert q["ssim"] == pytest.approx(1.0, abs=1e-5)
    assert q["ms_ssim"] == pytest.approx(1.0, abs=1e-5)
    assert math.isinf(q["psnr"]) and q["psnr"] > 0


def test_noisier_reconstruction_scores_lower():
    x = _images()
    a = reconstruction_quality(x, _noisy(x, 0.02), data_range=1.0)
    b = reconstruction_quality(x, _noisy(x, 0.1), data_range=1.0)
    assert 1.0 > a["ssim"] > b["ssim"]
    assert 1.0 > a["ms_ssim"] > b["ms_ssim"]
    assert a["psnr"] > b["psnr"] > 0
    # PSNR of Gaussian noise: 10 log10(range^2 / std^2)
    assert a["psnr"] == pytest.approx(10 * math.log10(1 / 0.02**2), abs=0.3)
    # the same images in [-1, 1] with data_range 2: the same PSNR, nearly the same SSIM (its luminance term is not
    # shift-invariant)
    c = reconstruction_quality(2 * x - 1, 2 * _noisy(x, 0.02) - 1, data_range=2.0)
    assert c["ssim"] == pytest.approx(a["ssim"], abs=0.01) and c["psnr"] == pytest.approx(a["psnr"], abs=1e-3)


def test_ms_ssim_uses_the_scales_that_fit_and_says_so():
    small = reconstruction_quality(_images(2, 32), _images(2, 32, seed=3), data_range=1.0)
    assert small["ms_ssim_scales"] == 2 and "ms_ssim_note" in small
    assert sum(small["ms_ssim_weights"]) == pytest.approx(1.0)
    large = reconstruction_quality(_images(2, 192), _images(2, 192, seed=3), data_range=1.0)
    assert large["ms_ssim_scales"] == 5 and "ms_ssim_note" not in large
    assert large["ms_ssim_weights"] == pytest.approx(list(MS_SSIM_WEIGHTS))
    tiny = reconstruction_quality(_images(2, 8), _images(2, 8, seed=3), data_range=1.0)
    assert tiny["ms_ssim"] is None and tiny["ms_ssim_scales"] == 0 and tiny["ssim_win_size"] == 7


def test_3d_volumes_and_bad_input():
    v = torch.rand(2, 1, 16, 16, 16)
    q = reconstruction_quality(v, v, data_range=1.0)
    assert q["ssim"] == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="shape"):
        reconstruction_quality(v, v[:, :, :8], data_range=1.0)
    with pytest.raises(ValueError, match="data_range"):
        reconstruction_quality(v, v, data_range=0)
    with pytest.raises(ValueError, match="N, C"):
        reconstruction_quality(v[0, 0], v[0, 0], data_range=1.0)


# -------------------------------------------------------------------------------------------- Frechet distance
def test_frechet_distance_is_zero_for_the_same_features_and_grows_with_a_mean_shift():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(500, 8, generator=g)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    b = torch.randn(500, 8, generator=g)
    shifts = [frechet_distance(a, b + s) for s in (0.0, 0.5, 1.0, 2.0)]
    assert shifts == sorted(shifts) and shifts[0] < 0.5
    assert shifts[3] == pytest.approx(8 * 2.0**2, rel=0.1)  # |shift|^2 dominates


def test_frechet_distance_matches_the_closed_form_for_diagonal_gaussians():
    rng = np.random.default_rng(0)
    mu1, mu2 = np.array([0.0, 1.0, -1.0]), np.array([0.5, 0.0, 1.0])
    var1, var2 = np.array([1.0, 4.0, 0.25]), np.array([2.0, 1.0, 1.0])
    a = mu1 + np.sqrt(var1) * rng.standard_normal((20000, 3))
    b = mu2 + np.sqrt(var2) * rng.standard_normal((20000, 3))
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(var1 + var2 - 2 * np.sqrt(var1 * var2))
    assert frechet_distance(a, b) == pytest.approx(expected, rel=0.03)
    # one feature: the same closed form
    assert frechet_distance(a[:, 1:2], b[:, 1:2]) == pytest.approx(1.0 + (2 - 1) ** 2, rel=0.05)


def test_frechet_distance_with_few_samples_and_many_features_is_finite():
    g = torch.Generator().manual_seed(0)
    a, b = torch.relu(torch.randn(8, 512, generator=g)), torch.relu(torch.randn(8, 512, generator=g))
    d = frechet_distance(a, b)
    assert math.isfinite(d) and d > 0
    with pytest.raises(ValueError, match="at least 2"):
        frechet_distance(a[:1], b)
    with pytest.raises(ValueError, match="differ"):
        frechet_distance(a, b[:, :10])


# ---------------------------------------------------------------------------------------------- Inception Score
def test_inception_score_bounds():
    constant = torch.tensor([[0.8, 0.1, 0.1]]).repeat(10, 1)
    assert inception_score(constant) == pytest.approx((1.0, 0.0))
    for c in (2, 4):
        confident = torch.eye(c).repeat(5, 1)  # one-hot, each class equally often
        assert inception_score(confident)[0] == pytest.approx(c, rel=1e-6)
    p = torch.softmax(torch.randn(40, 2, generator=torch.Generator().manual_seed(0)), dim=1)
    mean, std = inception_score(p, splits=4)
    assert 1.0 <= mean <= 2.0 and std >= 0.0
    with pytest.raises(ValueError, match="splits"):
        inception_score(p, splits=41)
    with pytest.raises(ValueError, match="non-negative"):
        inception_score(-p)


# -------------------------------------------------------------------------------------------- feature network
def _manual_resnet_features(net, x):
    h = net.maxpool(net.act(net.bn1(net.conv1(x))))
    h = net.layer4(net.layer3(net.layer2(net.layer1(h))))
    return net.avgpool(h).flatten(1)


def test_classifier_features_are_the_input_of_fc():
    torch.manual_seed(0)
    net = resnet18(spatial_dims=2, n_input_channels=1, num_classes=2)
    x = torch.rand(3, 1, 32, 32)
    feats, probs = ClassifierFeatures(net)(x)
    with torch.no_grad():
        assert torch.allclose(feats, _manual_resnet_features(net, x), atol=1e-5)
        assert torch.allclose(probs, torch.softmax(net(x), dim=1), atol=1e-6)
    assert not net._forward_pre_hooks and not net.fc._forward_pre_hooks  # no hook left behind


def test_classifier_features_of_other_heads():
    class Net(torch.nn.Module):
        def __init__(self, out):
            super().__init__()
            self.body = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 5), torch.nn.ReLU())
            self.classifier = torch.nn.Sequential(torch.nn.Dropout(0.1), torch.nn.Linear(5, out))

        def forward(self, x):
            return self.classifier(self.body(x))

    feats, probs = ClassifierFeatures(Net(3))(torch.rand(4, 1, 4, 4))
    assert feats.shape == (4, 5) and torch.allclose(probs.sum(1), torch.ones(4))
    _, probs = ClassifierFeatures(Net(1))(torch.rand(4, 1, 4, 4))  # one logit: [1 - sigmoid, sigmoid]
    assert probs.shape == (4, 2) and torch.allclose(probs.sum(1), torch.ones(4))
    with pytest.raises(ValueError, match="classification head"):
        ClassifierFeatures(torch.nn.Conv2d(1, 1, 3))
    with pytest.raises(ValueError, match="classification head"):
        ClassifierFeatures(resnet18(spatial_dims=2, n_input_channels=1, feed_forward=False))


def test_load_feature_network_from_checkpoints(tmp_path):
    torch.manual_seed(0)
    net = resnet18(spatial_dims=2, n_input_channels=1, num_classes=2).eval()
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        expected = net(x)
    sd = net.state_dict()
    variants = {
        "saver.pt": {"model": {f"model.{k}": v for k, v in sd.items()}, "settings": {"intensity_range": [0, 1]}},
        "nested.pt": {"model": {f"model.net.{k}": v for k, v in sd.items()}, "threshold": {"value": 1.0}},
        "bare.pt": sd,
        "ddp.pt": {f"module.{k}": v for k, v in sd.items() if not k.endswith("num_batches_tracked")},
    }
    for name, obj in variants.items():
        torch.save(obj, tmp_path / name)
        loaded = load_feature_network(tmp_path / name)
        with torch.no_grad():
            assert torch.allclose(loaded(x), expected, atol=1e-6), name
    _, settings = load_feature_network(tmp_path / "saver.pt", return_settings=True)
    assert settings == {"intensity_range": [0, 1]}


def test_foreign_checkpoints_are_refused(tmp_path):
    ae = ConvAutoEncoder(2, 1, 1, channels=(4, 8), strides=(2, 2), num_res_units=0)
    torch.save({"model": {f"model.{k}": v for k, v in ae.state_dict().items()}}, tmp_path / "ae.pt")
    with pytest.raises(BadInputError, match="resnet18") as e:
        load_feature_network(tmp_path / "ae.pt")
    assert e.value.path == str(tmp_path / "ae.pt")
    rgb = resnet18(spatial_dims=2, n_input_channels=3, num_classes=2)
    torch.save({"model": rgb.state_dict()}, tmp_path / "rgb.pt")
    with pytest.raises(BadInputError, match="3-channel"):
        load_feature_network(tmp_path / "rgb.pt")
    (tmp_path / "notes.txt").write_text("not weights")
    with pytest.raises(BadInputError):
        load_feature_network(tmp_path / "notes.txt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(BadInputError, match="not a model checkpoint"):
        load_feature_network(tmp_path / "list.pt")
