"""The training loader of every bundle: no per-slice work when nothing is random, plain tensors in the batch, the
cache never changed by a training pass, and the network in channels-last memory format."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser
from monai.data import MetaTensor

REPO = Path(__file__).resolve().parents[2]


def _parser(bundle: str, **extra) -> ConfigParser:
    root = REPO / "bundles" / bundle
    p = ConfigParser()
    p.read_meta(str(root / "configs" / "metadata.json"))
    p.read_config(str(root / "configs" / "train.json"))
    p.update({"bundle_root": str(root), "dataset_dir": str(REPO / "monai_anomaly" / "sample_data"),
              "output_dir": tempfile.mkdtemp(), "device": "cpu", "image_size": 32, **extra})  # fmt: skip
    return p


@pytest.mark.parametrize("bundle", ["autoencoder_anomaly", "supervised_resnet18"])
def test_the_loader_serves_the_cache_untouched_as_plain_tensors(bundle):
    p = _parser(bundle)
    ds, loader = p.get_parsed_content("train#dataset"), p.get_parsed_content("train#dataloader")
    augment = bool(p.get_parsed_content("augment"))  # the supervised reference augments, the others do not
    assert (ds.transform is not None) == augment
    ops_before = [len(s["image"].applied_operations) for s in ds.slices]
    cached = [s["image"].clone() for s in ds.slices]
    for _ in range(2):
        for batch in loader:
            assert type(batch["image"]) is torch.Tensor and type(batch["foreground"]) is torch.Tensor
            batch["image"].add_(1.0)  # even an in-place change of a batch never reaches the cache
    assert [len(s["image"].applied_operations) for s in ds.slices] == ops_before
    assert all(torch.equal(s["image"], c) for s, c in zip(ds.slices, cached))
    assert isinstance(ds.slices[0]["image"], MetaTensor)  # the cache keeps its metadata; only the batch drops it


def test_the_training_network_is_channels_last_unless_switched_off():
    conv = lambda net: next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1)  # noqa: E731
    on = _parser("autoencoder_anomaly").get_parsed_content("network")
    assert conv(on).weight.is_contiguous(memory_format=torch.channels_last) and not conv(on).weight.is_contiguous()
    off = _parser("autoencoder_anomaly", channels_last=False).get_parsed_content("network")
    assert conv(off).weight.is_contiguous()
