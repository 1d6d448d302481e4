"""Tests of monai_anomaly.networks.anomaly_net: the map, VAE tuples, checkpoint loading, TorchScript export."""

from __future__ import annotations

import json

import pytest
import torch

from monai_anomaly.networks.anomaly_net import AnomalyMapNet
from monai_anomaly.networks.autoencoder import ConvAutoEncoder, ConvVAE
from monai_anomaly.scoring.maps import compute_anomaly_map
from monai_anomaly.utils.errors import BadInputError


def _ae(seed: int = 0) -> ConvAutoEncoder:
    torch.manual_seed(seed)
    return ConvAutoEncoder(2, 1, 1, channels=(4, 8), strides=(2, 2), latent="dense", latent_size=8, in_shape=(32, 32))


def test_forward_is_the_abs_residual_of_the_reconstruction():
    ae = _ae().eval()
    net = AnomalyMapNet(ae).eval()
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        m = net(x)
        rec = ae(x)
    assert m.shape == (2, 1, 32, 32)
    assert torch.allclose(m, (x - rec).abs())
    assert torch.equal(net.predict(x)["reconstruction"], rec)


def test_multichannel_map_is_channel_mean_and_other_methods():
    torch.manual_seed(0)
    ae = ConvAutoEncoder(2, 2, 2, channels=(4, 8), strides=(2, 2)).eval()
    x = torch.rand(3, 2, 32, 32)
    with torch.no_grad():
        rec = ae(x)
        assert torch.allclose(AnomalyMapNet(ae, "squared")(x), ((x - rec) ** 2).mean(1, keepdim=True))
        combined = AnomalyMapNet(ae, "combined", smooth_sigma=1.0)(x)
    assert combined.shape == (3, 1, 32, 32)
    assert torch.allclose(combined, compute_anomaly_map(x, rec, "combined", smooth_sigma=1.0))


def test_vae_tuple_uses_reconstruction():
    torch.manual_seed(0)
    vae = ConvVAE(2, 1, 1, in_shape=(32, 32), channels=(4, 8), strides=(2, 2), latent_size=8).eval()
    net = AnomalyMapNet(vae, map_method="ssim").eval()
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        rec = vae(x)[0]
        assert torch.equal(net.predict(x)["reconstruction"], rec)
        assert torch.allclose(net(x), compute_anomaly_map(x, rec, "ssim"))


def test_bright_lesion_raises_map_where_model_reconstructs_normal():
    template = torch.full((1, 1, 32, 32), 0.3)

    class Template(torch.nn.Module):  # a "perfect" model of normal anatomy
        def forward(self, x):
            return template.expand_as(x)

    x = template.clone()
    x[..., 10:14, 20:24] = 1.0
    m = AnomalyMapNet(Template())(x)
    assert m[0, 0, 10:14, 20:24].min() > 0.6 and m[0, 0, :8].max() == 0


def test_state_dict_prefix_and_bare_autoencoder_checkpoint_loads():
    trained, fresh = _ae(0), _ae(1)
    net = AnomalyMapNet(fresh)
    assert all(k.startswith("model.") for k in net.state_dict())
    net.load_state_dict(trained.state_dict())  # bare keys, strict
    for (k, a), b in zip(net.state_dict().items(), trained.state_dict().values()):
        assert k.startswith("model.") and torch.equal(a, b)
    other = AnomalyMapNet(_ae(2))
    other.load_state_dict(net.state_dict())  # prefixed keys load as they are
    assert torch.equal(other.model.to_latent.weight, trained.to_latent.weight)
    with pytest.raises(RuntimeError):
        other.load_state_dict({"not_a_key": torch.zeros(1)})


def test_from_checkpoint_nested(tmp_path):
    trained = _ae(0)
    path = tmp_path / "checkpoint_epoch=3.pt"
    torch.save({"network": trained.state_dict(), "optimizer": {}}, path)
    net = AnomalyMapNet.from_checkpoint(_ae(1), path, map_method="squared")
    assert not net.training and net.map_method == "squared"
    assert torch.equal(net.model.from_latent.bias, trained.from_latent.bias)
    with pytest.raises(BadInputError, match="no 'model' entry"):
        AnomalyMapNet.from_checkpoint(_ae(1), path, key="model")


def test_bad_arguments():
    with pytest.raises(ValueError, match="map_method"):
        AnomalyMapNet(_ae(), map_method="l1")
    with pytest.raises(ValueError, match="smooth_sigma"):
        AnomalyMapNet(_ae(), smooth_sigma=-1.0)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.parametrize("vae", [False, True])
def test_trace_generalises_over_batch_and_size(vae):
    torch.manual_seed(0)
    model = (
        ConvVAE(2, 1, 1, in_shape=(32, 32), channels=(4, 8), strides=(2, 2), latent_size=8)
        if vae
        else ConvAutoEncoder(2, 1, 1, channels=(4, 8), strides=(2, 2))
    )
    net = AnomalyMapNet(model, smooth_sigma=0.0).eval()
    with torch.no_grad():
        traced = torch.jit.trace(net, torch.rand(1, 1, 32, 32), check_trace=False)
        x = torch.rand(3, 1, 32, 32)
        assert torch.allclose(traced(x), net(x), atol=1e-6)
        if not vae:  # a spatial latent also takes other sizes
            x = torch.rand(2, 1, 48, 64)
            assert torch.allclose(traced(x), net(x), atol=1e-6)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_monai_ckpt_export_with_trace(tmp_path):
    from monai.bundle import ckpt_export

    ae = _ae(0)
    ckpt = tmp_path / "model.pt"
    torch.save(ae.state_dict(), ckpt)  # what training writes: the bare autoencoder
    config = {
        "network_def": {
            "_target_": "monai_anomaly.networks.anomaly_net.AnomalyMapNet",
            "model": {
                "_target_": "monai_anomaly.networks.autoencoder.ConvAutoEncoder",
                "spatial_dims": 2,
                "in_channels": 1,
                "out_channels": 1,
                "channels": [4, 8],
                "strides": [2, 2],
                "latent": "dense",
                "latent_size": 8,
                "in_shape": [32, 32],
            },
            "map_method": "abs",
        }
    }
    cfg = tmp_path / "inference.json"
    cfg.write_text(json.dumps(config))
    meta = tmp_path / "metadata.json"
    meta.write_text(json.dumps({"version": "0.1.0"}))
    out = tmp_path / "model.ts"
    ckpt_export(
        net_id="network_def",
        filepath=str(out),
        ckpt_file=str(ckpt),
        meta_file=str(meta),
        config_file=str(cfg),
        use_trace=True,
        input_shape=[1, 1, 32, 32],
    )
    ts = torch.jit.load(str(out))
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        expected = (x - ae.eval()(x)).abs()
        assert torch.allclose(ts(x), expected, atol=1e-6)


class _Blur(torch.nn.Module):
    """A stand-in reconstruction: a 3 x 3 mean filter (errs most at edges, like a real autoencoder)."""

    def forward(self, x):
        return torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


def _normals(n=64, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, size, size, generator=g) * 0.1
    x[..., 4:12, 4:12] += 0.5  # a bright square whose edges every normal image has
    return x


def test_normative_calibration_z_scores_each_pixel_against_normal_maps_and_is_saved():
    from monai_anomaly.handlers.calibration import NormativeMapFitter

    net = AnomalyMapNet(_Blur(), map_method="squared", calibration="normative", image_size=16).eval()
    normals = _normals()
    raw = net.predict(normals)["anomaly_map"]
    assert not net.normative_fitted and torch.equal(raw, net.predict(normals, calibrated=False)["anomaly_map"])
    labels = torch.zeros(len(normals))
    labels[:8] = 1  # anomalous validation slices are not used for the statistics
    junk = normals.clone()
    junk[:8] = 5.0
    NormativeMapFitter(net, [{"image": junk, "label": labels}], "cpu")(None)
    assert net.normative_fitted and int(net.normative_count) == 56
    ref = raw[8:]
    mean, std = ref.mean(0, keepdim=True), ref.std(0, keepdim=True)
    std = std.clamp_min(float(std.median()) * 0.1)
    test = _normals(4, seed=1)
    test[0, :, 1:3, 1:3] += 0.6  # a lesion in the flat background
    z = net.predict(test)["anomaly_map"]
    raw_test = net.predict(test, calibrated=False)["anomaly_map"]
    torch.testing.assert_close(z, ((raw_test - mean) / std).clamp_min(0), rtol=1e-4, atol=1e-5)
    # the edges of the square are high on every normal map: raw they outrank the lesion's rim, calibrated they do not
    edge = (slice(None), 0, 4, slice(4, 12))
    assert raw_test[edge].max() > raw_test[0, 0, 1:3, 1:3].min()
    assert z[0, 0, 1:4, 1:4].max() > 10 * z[edge].max()
    # the statistics are buffers: saved in the state dict and loaded back
    net2 = AnomalyMapNet(_Blur(), map_method="squared", calibration="normative", image_size=16).eval()
    net2.load_state_dict(net.state_dict())
    torch.testing.assert_close(net2.predict(test)["anomaly_map"], z)
    # a checkpoint saved before calibration existed loads uncalibrated
    legacy = {k: v for k, v in net.state_dict().items() if not k.startswith("normative_")}
    net2.load_state_dict(legacy)
    assert not net2.normative_fitted
    torch.testing.assert_close(net2.predict(test)["anomaly_map"], raw_test)


def test_a_traced_calibrated_model_then_masked_equals_predict_with_the_mask():
    net = AnomalyMapNet(_Blur(), map_method="squared", calibration="normative", image_size=16).eval()
    maps = net.predict(_normals(), calibrated=False)["anomaly_map"]
    net.fit_normative(maps.sum(0, keepdim=True), (maps**2).sum(0, keepdim=True), len(maps))
    x = _normals(2, seed=3)
    fg = torch.zeros(2, 1, 16, 16)
    fg[..., 2:14, 2:14] = 1
    traced = torch.jit.trace(net, x[:1])
    from monai_anomaly.scoring.maps import mask_outside

    torch.testing.assert_close(mask_outside(traced(x), fg), net.predict(x, foreground=fg)["anomaly_map"])
