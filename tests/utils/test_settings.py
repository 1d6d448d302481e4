"""Tests for monai_anomaly.utils.settings: settings saved with a model and read back safely."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from monai_anomaly.utils.errors import BadInputError
from monai_anomaly.utils.settings import ModelSettings, load_model_settings


def test_settings_round_trip_through_a_weights_only_checkpoint(tmp_path):
    s = ModelSettings(intensity_mode="fixed", image_size=np.int64(64), channels=(16, 32), intensity_range=[0.0, 1.0])
    s.update(aggregation="topk")
    torch.save({"settings": s.state_dict(), "model": {"w": torch.zeros(2)}}, tmp_path / "model.pt")
    got = load_model_settings(tmp_path / "model.pt")
    assert got == {
        "intensity_mode": "fixed",
        "image_size": 64,
        "channels": [16, 32],
        "intensity_range": [0.0, 1.0],
        "aggregation": "topk",
    }
    assert ModelSettings().load_state_dict(got).get("channels") == [16, 32]


def test_missing_file_or_older_checkpoint_gives_no_settings(tmp_path):
    assert load_model_settings(tmp_path / "absent.pt") == {}
    torch.save({"model": {}}, tmp_path / "old.pt")
    assert load_model_settings(tmp_path / "old.pt") == {}


def test_an_unreadable_checkpoint_is_an_error_naming_it(tmp_path):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"\x00\x13 not a checkpoint")
    with pytest.raises(BadInputError, match=r"model\.pt: .*not a PyTorch checkpoint") as e:
        load_model_settings(bad)
    assert "weights_only" not in str(e.value)


@pytest.mark.parametrize(
    "key, value, says",
    [
        ("map_method", "$__import__('os').getcwd() or 'squared'", "not a plain name"),
        ("score_method", "@network", "not a plain name"),
        ("aggregation", "%configs/x.json#a", "not a plain name"),
        ("map_method", "cubic", "is not one of"),
        ("model_type", "dense; rm", "not a plain name"),
        ("image_size", "64", "not a whole number"),
        ("image_size", 6.4, "not a whole number"),
        ("gan_mask", "false", "not true or false"),
        ("aggregation_k", float("nan"), "not a finite number"),
        ("channels", [16, "32"], "list of whole numbers"),
        ("diffusion", {"_target_": "pathlib.Path.touch", "self": "/tmp/x"}, "not a plain name"),
        ("diffusion", {"schedule": "$print(1)"}, "not a plain name"),
        ("diffusion", {"coarse": {"map_method": "$x"}}, "not a plain name"),
        ("a_later_setting", "$print(1)", "config expression"),
        ("a_later_setting", {"_requires_": "x"}, "not a plain name"),
    ],
)
def test_a_saved_setting_is_checked_against_its_declared_type(tmp_path, key, value, says):
    """Checkpoint settings reach MONAI's config parser, which runs ``$`` strings and builds ``_target_`` dicts: each
    must be of its declared type and values, and is refused naming the file and the setting otherwise."""
    from monai_anomaly.utils.settings import validate_settings

    assert validate_settings({"map_method": "squared", "diffusion": {"t0": 5, "coarse": {"latent": "dense"}}})
    torch.save({"settings": {"image_size": 32, key: value}, "model": {}}, tmp_path / "model.pt")
    with pytest.raises(BadInputError, match=rf"model\.pt: invalid saved setting: setting .*{says}"):
        load_model_settings(tmp_path / "model.pt")
