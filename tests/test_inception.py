"""The FID / IS Inception-v3 (torch-fidelity's weight-file layout): architecture, resize, loading and the extractor."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from monai_anomaly.metrics.inception import (
    InceptionFeatures,
    InceptionV3FID,
    is_inception_weights,
    load_inception_weights,
    resize_bilinear_tf1,
)
from monai_anomaly.utils.errors import BadInputError

# shapes read from torch-fidelity's feature_extractor_inceptionv3.py (BasicConv2d(in, out, kernel) -> (out, in, kh, kw))
EXPECTED_SHAPES = {
    "Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3),
    "Conv2d_1a_3x3.bn.running_var": (32,),
    "Conv2d_4a_3x3.conv.weight": (192, 80, 3, 3),
    "Mixed_5b.branch5x5_2.conv.weight": (64, 48, 5, 5),
    "Mixed_5b.branch_pool.conv.weight": (32, 192, 1, 1),
    "Mixed_6a.branch3x3.conv.weight": (384, 288, 3, 3),
    "Mixed_6b.branch7x7dbl_2.conv.weight": (128, 128, 7, 1),
    "Mixed_6e.branch7x7_2.conv.weight": (192, 192, 1, 7),
    "Mixed_7a.branch7x7x3_4.conv.weight": (192, 192, 3, 3),
    "Mixed_7b.branch3x3dbl_1.conv.weight": (448, 1280, 1, 1),
    "Mixed_7c.branch3x3dbl_3b.conv.weight": (384, 384, 3, 1),
    "Mixed_7c.branch_pool.bn.weight": (192,),
    "fc.weight": (1008, 2048),
    "fc.bias": (1008,),
}
# torchvision's Inception3 has 27,161,264 parameters (1000 classes, with AuxLogits); without AuxLogits
# (768*128 + 2*128 + 128*768*25 + 2*768 + 768*1000 + 1000 = 3,326,696) and with 1008 classes (+ 8*2048 + 8):
EXPECTED_PARAMS = 27_161_264 - 3_326_696 + 8 * 2048 + 8  # 23,850,960
# 94 conv weights + 94 BatchNorms x 4 + fc weight and bias: the keys of torch-fidelity's file
EXPECTED_KEYS = 94 + 94 * 4 + 2


def _weights(seed: int = 0) -> dict[str, torch.Tensor]:
    """A random state dict in the weight file's layout (no num_batches_tracked), with sane BatchNorm statistics."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in InceptionV3FID().state_dict().items():
        if k.endswith("num_batches_tracked"):
            continue
        if k.endswith("running_var") or k.endswith("bn.weight"):
            v = torch.rand(v.shape, generator=g) * 0.5 + 0.5
        elif v.ndim == 4:
            v = torch.randn(v.shape, generator=g) * (2.0 / v[0].numel()) ** 0.5
        else:
            v = torch.randn(v.shape, generator=g) * 0.05
        out[k] = v
    return out


@pytest.fixture(scope="module")
def weight_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("inception") / "weights-inception-2015-12-05-6726825d.pth"
    torch.save(_weights(), path)
    return path


@pytest.fixture(scope="module")
def net(weight_file):
    return load_inception_weights(weight_file)


def test_architecture_keys_shapes_and_parameter_count():
    net = InceptionV3FID()
    state = net.state_dict()
    for key, shape in EXPECTED_SHAPES.items():
        assert key in state, key
        assert tuple(state[key].shape) == shape, key
    weights = [k for k in state if not k.endswith("num_batches_tracked")]
    assert len(weights) == EXPECTED_KEYS
    assert sum(p.numel() for p in net.parameters()) == EXPECTED_PARAMS == 23_850_960
    assert all(m.eps == 1e-3 for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert not any(p.requires_grad for p in net.parameters()) and not net.training


def test_resize_is_tensorflow1_bilinear_not_half_pixel():
    row = torch.arange(4.0).reshape(1, 1, 1, 4)
    out = resize_bilinear_tf1(row, (1, 8))[0, 0, 0]
    assert out.tolist() == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.0]  # i * 4/8, last neighbour clamped
    torch_way = F.interpolate(row, size=(1, 8), mode="bilinear", align_corners=False)[0, 0, 0]
    assert not torch.equal(out, torch_way)  # PyTorch samples at (i + 0.5) * 4/8 - 0.5
    x = torch.rand(1, 3, 299, 299)
    assert torch.equal(resize_bilinear_tf1(x, (299, 299)), x)
    down = resize_bilinear_tf1(torch.arange(16.0).reshape(1, 1, 4, 4), (2, 2))
    assert down[0, 0].tolist() == [[0.0, 2.0], [8.0, 10.0]]  # samples rows/cols 0 and 2


def test_loads_bare_prefixed_and_wrapped_state_dicts(tmp_path, weight_file, net):
    state = torch.load(weight_file, weights_only=True)
    assert all(p.device.type == "cpu" for p in net.parameters())
    for k, v in state.items():
        assert torch.equal(net.state_dict()[k], v), k
    x = torch.rand(2, 3, 40, 48) * 255
    ref_feats, ref_logits = net(x)
    for name, obj in [
        ("module.pth", {"module." + k: v for k, v in state.items()}),
        ("wrapped.pth", {"state_dict": {"model." + k: v for k, v in state.items()}}),
        ("ckpt.pth", {"model": state, "epoch": 3}),
    ]:
        path = tmp_path / name
        torch.save(obj, path)
        assert is_inception_weights(path)
        other = load_inception_weights(path)
        feats, logits = other(x)
        assert torch.equal(feats, ref_feats) and torch.equal(logits, ref_logits), name


def test_logits_are_fc_without_bias(net):
    x = torch.rand(2, 3, 32, 32) * 255
    feats, logits = net(x)
    assert feats.shape == (2, 2048) and logits.shape == (2, 1008)
    torch.testing.assert_close(logits, feats @ net.fc.weight.t())
    assert not torch.allclose(logits, net.fc(feats))  # the bias is not added (torch-fidelity's logits_unbiased)


def test_wrong_files_raise_bad_input_naming_the_file(tmp_path):
    from monai.networks.nets import resnet18

    resnet = tmp_path / "resnet.pt"
    torch.save({"model": resnet18(spatial_dims=2, n_input_channels=1, num_classes=2).state_dict()}, resnet)
    text = tmp_path / "notes.txt"
    text.write_text("not weights\n")
    imagenet = tmp_path / "imagenet_inception.pth"  # same body, 1000-class head: a different network
    state = _weights()
    state["fc.weight"], state["fc.bias"] = torch.zeros(1000, 2048), torch.zeros(1000)
    torch.save(state, imagenet)
    extra = tmp_path / "with_aux.pth"
    torch.save({**_weights(), "AuxLogits.fc.weight": torch.zeros(1008, 768)}, extra)
    tensor = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), tensor)
    for path, words in [
        (resnet, "no Mixed_7c"),
        (text, "checkpoint"),
        (imagenet, "fc.weight"),
        (extra, "AuxLogits"),
        (tensor, "not a weight file"),
        (tmp_path / "missing.pth", "no such"),
    ]:
        with pytest.raises(BadInputError) as err:
            load_inception_weights(path)
        assert str(path) in str(err.value) and words in str(err.value), str(err.value)
    assert not is_inception_weights(resnet)
    assert not is_inception_weights(text)
    assert not is_inception_weights(imagenet)
    assert not is_inception_weights({"fc.weight": torch.zeros(1008, 2048)})


def test_extractor_features_probabilities_and_determinism(net):
    extract = InceptionFeatures(net)
    assert extract.device == torch.device("cpu")
    images = torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(1))
    feats, probs = extract(images)
    assert feats.shape == (2, 2048) and probs.shape == (2, 1008)
    assert feats.dtype == probs.dtype == torch.float32 and feats.device.type == "cpu"
    assert torch.isfinite(feats).all() and (feats >= 0).all()  # pooled ReLU outputs
    torch.testing.assert_close(probs.sum(1), torch.ones(2), atol=1e-5, rtol=0)
    feats2, probs2 = extract(images)
    assert torch.equal(feats, feats2) and torch.equal(probs, probs2)
    other = extract(torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(2)))[0]
    assert not torch.allclose(feats, other)


def test_extractor_intensity_mapping_gray_to_rgb_and_quantisation(net):
    g = torch.Generator().manual_seed(3)
    images = torch.rand(2, 1, 48, 48, generator=g)
    feats = InceptionFeatures(net, intensity_range=(0.0, 1.0))(images)[0]
    # the same picture in another intensity range, given with that range: the same 8-bit image
    assert torch.equal(InceptionFeatures(net, intensity_range=(-1.0, 1.0))(images * 2 - 1)[0], feats)
    # gray equals its RGB copy, and equals the network on the rounded [0, 255] image
    assert torch.equal(InceptionFeatures(net)(images.repeat(1, 3, 1, 1))[0], feats)
    assert torch.equal(net((images * 255).round().repeat(1, 3, 1, 1))[0], feats)
    # out-of-range values are clamped
    assert torch.equal(InceptionFeatures(net)(images * 0 + 7.0)[0], InceptionFeatures(net)(images * 0 + 1.0)[0])
    unrounded = InceptionFeatures(net, quantize=False)(images)[0]
    assert not torch.equal(unrounded, feats)
    with pytest.raises(ValueError):
        InceptionFeatures(net)(torch.rand(1, 2, 32, 32))
    with pytest.raises(ValueError):
        InceptionFeatures(net, intensity_range=(1.0, 1.0))


def test_extractor_accepts_a_path(weight_file, net):
    images = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(4))
    assert torch.equal(InceptionFeatures(weight_file)(images)[0], InceptionFeatures(net)(images)[0])
