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
