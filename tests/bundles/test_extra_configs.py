"""The autoencoder bundle's extra configs (merged with ``--config``) still fit the generated train.json: every id
they set exists, and the merged config builds its network (the denoising AE also trains)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser

from monai_anomaly.cli import AnomalyCLI

pytestmark = pytest.mark.bundle

REPO = Path(__file__).resolve().parents[2]
AE = REPO / "bundles" / "autoencoder_anomaly" / "configs"
EXTRA = sorted([*AE.glob("variants/*.json"), *AE.glob("protocols/*.json")])


def test_the_extra_configs_are_the_ones_documented():
    assert [p.relative_to(AE).as_posix() for p in EXTRA] == [
        "protocols/medianomaly.json",
        "variants/aeu.json",
        "variants/dae.json",
    ]


@pytest.mark.parametrize("extra", EXTRA, ids=lambda p: p.stem)
def test_every_id_exists_and_the_network_builds(extra):
    train = json.loads((AE / "train.json").read_text())
    overrides = json.loads(extra.read_text())
    for key in overrides:
        top = key.split("#")[0]
        assert top in train, f"{extra.name}: {key!r} sets an id train.json does not have"
    parser = ConfigParser(copy.deepcopy(train))
    for key, value in overrides.items():
        parser[key] = value
    parser["image_size"] = 32  # small: the architecture is what is checked
    net = parser.get_parsed_content("network_def")
    with torch.no_grad():
        out = net.eval().predict(torch.rand(2, 1, 32, 32))
    assert out["anomaly_map"].shape == (2, 1, 32, 32) and out["reconstruction"].shape == (2, 1, 32, 32)
    expected = {"unet": "BasicUNet", "dense": "DenseAutoEncoder", "aeu": "DenseAutoEncoder"}
    assert type(net.model).__name__ == expected[overrides["model_type"]]


def test_denoising_autoencoder_trains_through_the_cli(tmp_path, tiny_trained_bundle):
    out = tmp_path / "dae"
    data = tiny_trained_bundle.parent / "data"
    AnomalyCLI().train(
        str(data), output_dir=str(out), config="variants/dae.json", max_epochs=1, image_size=32,
        channels=[8, 8, 8, 8, 8, 8], batch_size=16, val_interval=1,
    )  # fmt: skip
    ckpt = torch.load(out / "models" / "model.pt", map_location="cpu", weights_only=True)
    assert ckpt["settings"]["model_type"] == "unet" and ckpt["settings"]["image_size"] == 32


def test_aeu_trains_through_the_cli_and_scores_the_variance_normalised_residual(tmp_path, tiny_trained_bundle):
    """AE-U's network predicts a mean and a log-variance; the saved model's map is ``(x - mu)^2 / sigma^2``."""
    from monai_anomaly.networks.factory import build_model
    from monai_anomaly.scoring.maps import variance_normalised_map

    out = tmp_path / "aeu"
    data = tiny_trained_bundle.parent / "data"
    AnomalyCLI().train(
        str(data), output_dir=str(out), config="variants/aeu.json", max_epochs=2, image_size=32,
        channels=[8, 8, 8, 8], batch_size=16, val_interval=1,
    )  # fmt: skip
    ckpt = torch.load(out / "models" / "model.pt", map_location="cpu", weights_only=True)
    s = ckpt["settings"]
    assert s["model_type"] == "aeu" and s["map_method"] == "variance_normalised"
    from monai_anomaly.networks.anomaly_net import AnomalyMapNet

    net = AnomalyMapNet(build_model(s), map_method=s["map_method"])
    net.load_state_dict(ckpt["model"])
    x = torch.rand(3, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        raw = net.eval().model(x)
        pred = net.predict(x)
    assert raw.shape == (3, 2, 32, 32)
    torch.testing.assert_close(pred["reconstruction"], raw[:, :1])
    torch.testing.assert_close(pred["anomaly_map"], variance_normalised_map(x, raw[:, :1], raw[:, 1:]))
    assert torch.isfinite(pred["anomaly_map"]).all()
