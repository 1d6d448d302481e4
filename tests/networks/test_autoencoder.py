"""Tests of monai_anomaly.networks.autoencoder: shapes, latents, final activations, VAE determinism, bad args."""

from __future__ import annotations

import pytest
import torch

from monai_anomaly.networks.autoencoder import ConvAutoEncoder, ConvVAE


@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("latent", ["spatial", "dense"])
def test_autoencoder_reconstructs_input_shape(size, latent):
    net = ConvAutoEncoder(
        2, 1, 1, channels=(4, 8, 16), strides=(2, 2, 2), latent=latent, latent_size=12, in_shape=(size, size)
    )
    x = torch.rand(3, 1, size, size)
    y = net(x)
    assert y.shape == x.shape
    z = net.encode_forward(x)
    if latent == "dense":
        assert z.shape == (3, 12)
    else:  # the convolutional bottleneck: last channels at size / 8
        assert z.shape == (3, 16, size // 8, size // 8)
    assert torch.equal(net.decode_forward(z), y)


def test_default_architecture_and_multichannel():
    net = ConvAutoEncoder(2, 3, 3)  # default channels (16, 32, 64, 128), strides 2
    y = net(torch.rand(2, 3, 32, 32))
    assert y.shape == (2, 3, 32, 32)
    assert len(net.encode) == 4


def test_spatial_latent_accepts_other_sizes_without_in_shape():
    net = ConvAutoEncoder(2, 1, 1, channels=(4, 8), strides=(2, 2))
    assert net(torch.rand(1, 1, 48, 40)).shape == (1, 1, 48, 40)


def test_3d_autoencoder():
    net = ConvAutoEncoder(3, 1, 1, channels=(2, 4), strides=(2, 2), latent="dense", latent_size=8, in_shape=(16,) * 3)
    assert net(torch.rand(1, 1, 16, 16, 16)).shape == (1, 1, 16, 16, 16)


@pytest.mark.parametrize(("final_act", "lo", "hi"), [("sigmoid", 0.0, 1.0), ("tanh", -1.0, 1.0)])
def test_final_activation_bounds_output(final_act, lo, hi):
    torch.manual_seed(0)
    net = ConvAutoEncoder(2, 1, 1, channels=(4, 8), strides=(2, 2), final_act=final_act, num_res_units=0)
    y = net(10 * torch.randn(4, 1, 32, 32))
    assert y.min() >= lo and y.max() <= hi


def test_no_final_activation_is_unbounded():
    torch.manual_seed(0)
    net = ConvAutoEncoder(2, 1, 1, channels=(4, 8), strides=(2, 2), final_act=None, num_res_units=0)
    with torch.no_grad():
        net.decode[-1].conv.conv.bias.fill_(5.0)  # the last layer is a bare transposed conv: output 5 + ...
    y = net(torch.rand(1, 1, 16, 16))
    assert y.max() > 1.0


def test_vae_outputs_and_eval_determinism():
    torch.manual_seed(0)
    vae = ConvVAE(2, 1, 1, in_shape=(32, 32), channels=(4, 8, 16), strides=(2, 2, 2), latent_size=10)
    x = torch.rand(3, 1, 32, 32)
    recon, mu, logvar, z = vae(x)
    assert recon.shape == x.shape and mu.shape == logvar.shape == z.shape == (3, 10)
    assert 0.0 <= float(recon.detach().min()) and float(recon.detach().max()) <= 1.0
    # training: z is sampled, two passes differ
    assert not torch.equal(vae(x)[3], vae(x)[3])
    vae.eval()
    with torch.no_grad():
        r1, mu1, _, z1 = vae(x)
        r2, _, _, _ = vae(x)
    assert torch.equal(z1, mu1)  # the posterior mean, not MONAI's default mu + std
    assert torch.equal(r1, r2)
    assert torch.allclose(r1, vae.decode_forward(mu1))


def test_vae_tanh_and_64px():
    vae = ConvVAE(2, 1, 1, in_shape=(64, 64), channels=(4, 8, 8, 16), strides=(2, 2, 2, 2), final_act="tanh")
    recon = vae.eval()(torch.rand(2, 1, 64, 64))[0]
    assert recon.shape == (2, 1, 64, 64) and recon.min() >= -1.0 and recon.max() <= 1.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"latent": "dense"}, "in_shape"),
        ({"channels": (4, 8, 16), "strides": (2, 2)}, "same length"),
        ({"in_shape": (30, 32)}, "divisible"),
        ({"in_shape": (32,)}, "needs 2 values"),
        ({"latent": "vector"}, "latent must be"),
        ({"final_act": "relu"}, "final_act"),
        ({"in_shape": (16, 16), "channels": (4, 8, 8, 8), "strides": (2, 2, 2, 2)}, "1-pixel bottleneck"),
        ({"strides": (2, 0)}, "strides must be positive"),
    ],
)
def test_autoencoder_bad_arguments(kwargs, match):
    args = {"channels": (4, 8), "strides": (2, 2), **kwargs}
    with pytest.raises(ValueError, match=match):
        ConvAutoEncoder(2, 1, 1, **args)


def test_batch_norm_allows_one_pixel_bottleneck():
    net = ConvAutoEncoder(2, 1, 1, channels=(4, 8), strides=(4, 4), in_shape=(16, 16), norm="batch")
    assert net(torch.rand(2, 1, 16, 16)).shape == (2, 1, 16, 16)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"in_shape": None}, "in_shape"),
        ({"in_shape": (30, 30)}, "divisible"),
        ({"latent_size": 0}, "latent_size"),
        ({"channels": (4,), "strides": (2, 2)}, "same length"),
        ({"final_act": "softmax"}, "final_act"),
    ],
)
def test_vae_bad_arguments(kwargs, match):
    args = {"in_shape": (32, 32), "channels": (4, 8), "strides": (2, 2), **kwargs}
    with pytest.raises(ValueError, match=match):
        ConvVAE(2, 1, 1, **args)


@pytest.mark.parametrize("num_res_units", [0, 1, 2])
def test_last_decoder_layer_is_not_normalised_on_the_output_channel(num_res_units):
    """A norm on the single output channel would strip each image's mean and contrast before the output."""
    import torch.nn as nn

    for net in (
        ConvAutoEncoder(2, 1, 1, channels=(4, 8), strides=(2, 2), num_res_units=num_res_units),
        ConvVAE(2, 1, 1, in_shape=(16, 16), channels=(4, 8), strides=(2, 2), num_res_units=num_res_units),
    ):
        norms_on_out = [m for m in net.decode.modules() if isinstance(m, nn.InstanceNorm2d) and m.num_features == 1]
        assert not norms_on_out
        convs = [m for m in net.decode.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
        assert convs[-1].out_channels == 1
