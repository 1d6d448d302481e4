from __future__ import annotations

import pytest
import torch

from monai_anomaly.inferers.slice import AnomalySliceInferer, fit_to_square, restore_from_square


def smooth(*shape):
    """A smooth test image (resizing keeps it close), different in every slice of every axis."""
    grids = torch.meshgrid(*[torch.linspace(0, 1, s) for s in shape[2:]], indexing="ij")
    out = sum((i + 1) * g for i, g in enumerate(grids)) / len(grids)
    return out.expand(*shape).clone()


def test_fit_and_restore_keep_geometry():
    x = torch.rand(2, 1, 40, 60)
    y, geom = fit_to_square(x, (32, 32))
    assert y.shape == (2, 1, 32, 32)
    # aspect kept: 60 -> 32 wide, 40 -> 21 high, padded with zeros top and bottom
    assert torch.all(y[..., :5, :] == 0) and torch.all(y[..., -5:, :] == 0)
    back = restore_from_square(y, geom)
    assert back.shape == x.shape
    assert torch.allclose(back.mean(), x.mean(), atol=0.02)


@pytest.mark.parametrize("spatial_dim", [0, 1, 2])
def test_volume_slice_by_slice(spatial_dim):
    vol = smooth(1, 1, 20, 24, 12)
    seen = []

    def net(x):
        assert x.shape[-2:] == (16, 16)
        seen.append(x.shape[0])
        return x * 2

    out = AnomalySliceInferer(spatial_size=16, spatial_dim=spatial_dim, sw_batch_size=4)(vol, net)
    assert out.shape == vol.shape
    assert sum(seen) == vol.shape[2 + spatial_dim]
    assert torch.allclose(out, vol * 2, atol=0.15)  # resize round trip blurs only slightly
    # each output slice comes from its own input slice
    idx = [slice(None)] * 5
    idx[2 + spatial_dim] = 3
    assert torch.allclose(out[tuple(idx)].mean(), 2 * vol[tuple(idx)].mean(), atol=0.05)


def test_2d_and_tuple_outputs_and_bad_dims():
    inferer = AnomalySliceInferer(spatial_size=(16, 16))
    img = smooth(3, 1, 30, 30)
    out = inferer(img, lambda x: (x + 1, None))
    assert out.shape == img.shape
    assert torch.allclose(out, img + 1, atol=0.15)
    with pytest.raises(ValueError, match="got shape"):
        inferer(torch.rand(1, 30), lambda x: x)
    with pytest.raises(ValueError, match="spatial_dim"):
        AnomalySliceInferer(16, spatial_dim=3)
