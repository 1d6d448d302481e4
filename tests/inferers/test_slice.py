"""Tests of monai_anomaly.inferers.slice: scan scoring at the training size, the same as evaluation's slicing."""

from __future__ import annotations

import pytest
import torch
from monai.transforms import Compose

from monai_anomaly.inferers.slice import AnomalySliceInferer
from monai_anomaly.networks.anomaly_net import AnomalyMapNet
from monai_anomaly.networks.autoencoder import ConvAutoEncoder
from monai_anomaly.scoring.slice_scores import score_slices
from monai_anomaly.transforms.slicing import VolumeToSlicesd
from monai_anomaly.transforms.spatial import ResizeToSquared


def smooth(*shape):
    """A smooth test image (resizing keeps it close), different in every slice of every axis."""
    grids = torch.meshgrid(*[torch.linspace(0, 1, s) for s in shape[2:]], indexing="ij")
    out = sum((i + 1) * g for i, g in enumerate(grids)) / len(grids)
    return out.expand(*shape).clone()


def _model() -> AnomalyMapNet:
    torch.manual_seed(0)
    ae = ConvAutoEncoder(2, 1, 1, channels=(4, 8), strides=(2, 2), latent="dense", latent_size=8, in_shape=(16, 16))
    return AnomalyMapNet(ae, map_method="squared").eval()


@pytest.mark.parametrize("spatial_dim", [0, 2])
def test_scores_equal_the_evaluation_slicing(spatial_dim):
    """The inferer's slice scores are those of evaluation's transforms (VolumeToSlicesd + ResizeToSquared) scored by
    the same model call, for every slice evaluation keeps; the others are not scored."""
    g = torch.Generator().manual_seed(1)
    vol = torch.rand(1, 20, 26, 12, generator=g)
    fg = torch.zeros_like(vol)
    fg[:, 3:17, 4:22, 2:10] = 1.0
    fg[:, 3:17, 4:22, :] *= (torch.arange(12) >= 2).float()  # along axis 2 slices 0-1 are empty
    net = _model()
    slicing = Compose(
        [
            VolumeToSlicesd(["image", "foreground"], axis=spatial_dim, min_foreground=0.3, foreground_key="foreground"),
            ResizeToSquared(
                ["image", "foreground"], 16, interp_mode=["bilinear", "nearest"], anti_aliasing=[True, False]
            ),
        ]
    )
    slices = slicing({"image": vol, "foreground": fg})
    x = torch.stack([s["image"].as_tensor() for s in slices])
    f = torch.stack([s["foreground"].as_tensor() for s in slices])
    with torch.no_grad():
        want = score_slices(net.predict(x, foreground=f)["anomaly_map"], f, "topk", "image", k=0.05)
        inferer = AnomalySliceInferer(16, spatial_dim, sw_batch_size=3, min_foreground=0.3, score_method="topk",
                                      score_region="image", score_kwargs={"k": 0.05})  # fmt: skip
        out = inferer(vol[None], net, foreground=fg[None])
    kept = [s["slice_index"] for s in slices]
    assert out["scored"][0].nonzero().flatten().tolist() == kept
    assert torch.allclose(out["slice_scores"][0, kept], want, rtol=1e-5, atol=1e-7)
    unscored = [i for i in range(vol.shape[1 + spatial_dim]) if i not in kept]
    assert unscored and float(out["slice_scores"][0, unscored].abs().max()) == 0.0
    assert out["anomaly_map"].shape == (1, 1, *vol.shape[1:])
    assert float(out["anomaly_map"][0][fg == 0].abs().max()) == 0.0  # the display map is 0 outside the foreground


def test_display_map_is_each_slice_resized_back():
    vol = smooth(1, 1, 20, 24, 6)
    seen = []

    def net(x):  # a plain map network: its output is the map
        assert x.shape[-2:] == (16, 16)
        seen.append(x.shape[0])
        return x * 2

    out = AnomalySliceInferer(16, spatial_dim=2, sw_batch_size=4, score_method="max")(vol, net)
    assert seen == [4, 2]
    inner = (..., slice(2, -2), slice(2, -2), slice(None))  # the anti-aliasing blurs only the border
    assert torch.allclose(out["anomaly_map"][inner], (vol * 2)[inner], atol=1e-4)
    assert torch.allclose(out["anomaly_map"], vol * 2, atol=0.2)
    assert out["scored"].all()


def test_2d_image_is_one_slice_always_scored_and_bad_inputs():
    inferer = AnomalySliceInferer(16, min_foreground=0.5, score_method="mean")
    img = smooth(2, 1, 30, 40)
    out = inferer(img, lambda x: torch.ones_like(x), foreground=torch.zeros_like(img))
    assert out["slice_scores"].shape == (2, 1) and out["scored"].all()
    with pytest.raises(ValueError, match="got shape"):
        inferer(torch.rand(1, 30), lambda x: x)
    with pytest.raises(ValueError, match="spatial_dim"):
        AnomalySliceInferer(16, spatial_dim=3)
    with pytest.raises(ValueError, match="score_region"):
        AnomalySliceInferer(16, score_region="brain")
