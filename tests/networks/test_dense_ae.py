"""Tests for monai_anomaly.networks.dense_ae: the dense-latent autoencoder of the published benchmarks."""

from __future__ import annotations

import pytest
import torch

from monai_anomaly.networks.dense_ae import DenseAutoEncoder


@pytest.mark.parametrize("up_mode", ["resize", "deconv"])
def test_shapes_2d_and_3d(up_mode):
    net = DenseAutoEncoder(
        2, 1, 1, in_shape=(32, 32), channels=(4, 8, 8), latent_size=8, hidden_size=16, up_mode=up_mode
    )
    assert net(torch.rand(3, 1, 32, 32)).shape == (3, 1, 32, 32)
    assert net.encode_forward(torch.rand(3, 1, 32, 32)).shape == (3, 8)
    vol = DenseAutoEncoder(3, 1, 1, in_shape=(16, 16, 16), channels=(4, 8), latent_size=4, hidden_size=0)
    assert vol(torch.rand(2, 1, 16, 16, 16)).shape == (2, 1, 16, 16, 16)


def test_bad_arguments_fail_early():
    with pytest.raises(ValueError, match="divisible"):
        DenseAutoEncoder(2, 1, 1, in_shape=(30, 32), channels=(4, 8))
    with pytest.raises(ValueError, match="up_mode"):
        DenseAutoEncoder(2, 1, 1, in_shape=(32, 32), up_mode="pixelshuffle")
    with pytest.raises(ValueError, match="in_shape"):
        DenseAutoEncoder(2, 1, 1, in_shape=(32, 32, 32))
    net = DenseAutoEncoder(2, 1, 1, in_shape=(32, 32), channels=(4, 8), hidden_size=16)
    with pytest.raises(ValueError, match="built for inputs"):
        net(torch.rand(1, 1, 64, 64))


def _checkerboard_energy(img: torch.Tensor) -> float:
    """Energy at the 2-pixel period (the transposed-convolution dot grid), relative to the total."""
    f = torch.fft.fft2(img[0, 0] - img[0, 0].mean()).abs() ** 2
    n = img.shape[-1]
    return float((f[n // 2, :].sum() + f[:, n // 2].sum()) / f.sum())


def test_resize_decoder_has_less_checkerboard_than_deconv():
    """Untrained decoders from the same latent: 4x4 stride-2 transposed convolutions leave a 2-pixel dot grid."""
    torch.manual_seed(0)
    energies = {}
    for mode in ("deconv", "resize"):
        torch.manual_seed(0)
        net = DenseAutoEncoder(2, 1, 1, in_shape=(64, 64), channels=(8, 16, 16, 16), latent_size=8, up_mode=mode)
        net.eval()
        with torch.no_grad():
            energies[mode] = _checkerboard_energy(net.decode_forward(torch.randn(1, 8)))
    assert energies["resize"] < energies["deconv"]


def test_learns_to_reconstruct_and_flags_an_unseen_blob():
    """Trained on smooth discs, it reconstructs a new disc better than the same disc with a bright blob."""
    torch.manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 32), indexing="ij")

    def disc(r):
        return ((xx**2 + yy**2) < r**2).float()[None] * 0.6

    train = torch.stack([disc(r) for r in torch.linspace(0.5, 0.8, 32)])
    net = DenseAutoEncoder(2, 1, 1, in_shape=(32, 32), channels=(8, 16, 16), latent_size=4, hidden_size=64)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(150):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(net(train), train)
        loss.backward()
        opt.step()
    net.eval()
    normal = disc(0.66)[None]
    blob = normal.clone()
    blob[..., 12:18, 12:18] = 1.0
    with torch.no_grad():
        e_normal = float(((net(normal) - normal) ** 2).mean())
        e_blob = float(((net(blob) - blob) ** 2).mean())
    assert e_blob > 2 * e_normal
