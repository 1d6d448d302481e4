"""Tests for monai_anomaly.utils.checkpoints: safe checkpoint loading with errors that name the file."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from monai_anomaly.utils.checkpoints import load_checkpoint
from monai_anomaly.utils.errors import BadInputError


class Payload:
    """Unpickling it creates ``marker``: what a planted checkpoint's code would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


class Custom:
    """A harmless custom class: still not plain data."""

    def __init__(self) -> None:
        self.value = 3


def _error(path: Path) -> str:
    with pytest.raises(BadInputError) as e:
        load_checkpoint(path)
    msg = str(e.value)
    assert e.value.path == str(path) and msg.startswith(f"{path}: ")
    assert "weights_only" not in msg and "trust" not in msg.lower() and "safe_globals" not in msg
    # PyTorch's own error (with its advice) is not chained in either
    assert e.value.__cause__ is None and (e.value.__context__ is None or e.value.__suppress_context__)
    return msg


def test_a_good_checkpoint_loads(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"model": {"w": torch.arange(3.0)}, "settings": {"size": 64, "names": ["a"]}, "epoch": 2}, path)
    ckpt = load_checkpoint(path)
    assert torch.equal(ckpt["model"]["w"], torch.arange(3.0))
    assert ckpt["settings"] == {"size": 64, "names": ["a"]} and ckpt["epoch"] == 2
    legacy = tmp_path / "legacy.pt"
    torch.save({"w": torch.ones(2)}, legacy, _use_new_zipfile_serialization=False)
    assert torch.equal(load_checkpoint(legacy, map_location=torch.device("cpu"))["w"], torch.ones(2))


def test_missing_empty_and_folder(tmp_path):
    assert "no such checkpoint file" in _error(tmp_path / "absent.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    assert "empty (0 bytes)" in _error(tmp_path / "empty.pt")
    assert "is a folder" in _error(tmp_path)


def test_random_bytes_text_and_truncated_files(tmp_path):
    noise = tmp_path / "noise.pt"
    noise.write_bytes(os.urandom(4096))
    assert "not a PyTorch checkpoint" in _error(noise)
    text = tmp_path / "notes.pt"
    text.write_text("these are my notes, not weights")
    assert "not a PyTorch checkpoint" in _error(text)
    good = tmp_path / "good.pt"
    torch.save({"w": torch.zeros(1000)}, good)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[:2000])
    assert "truncated or corrupted" in _error(cut)


def test_objects_other_than_plain_data_are_refused_and_never_run(tmp_path):
    custom = tmp_path / "custom.pt"
    torch.save({"model": {"w": torch.ones(1)}, "extra": Custom()}, custom)
    msg = _error(custom)
    assert "Custom" in msg and "cannot be loaded safely" in msg

    marker = tmp_path / "PWNED"
    planted = tmp_path / "planted.pt"
    torch.save({"model": Payload(marker)}, planted)
    plain = tmp_path / "plain.pkl"
    with open(plain, "wb") as f:
        pickle.dump({"model": Payload(marker)}, f)
    for path in (planted, plain):
        msg = _error(path)
        assert "not loaded" in msg
        assert not marker.exists()
    pickle.loads(plain.read_bytes())  # the payload is live: an unsafe load would have run it
    assert marker.exists()
