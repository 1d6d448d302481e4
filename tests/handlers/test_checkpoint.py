"""Tests for monai_anomaly.handlers.checkpoint: checkpoints that survive a failed save, and pruning after resume."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Engine

from monai_anomaly.handlers.checkpoint import AtomicCheckpointSaver


def _engine(net: torch.nn.Module) -> Engine:
    def step(engine, batch):
        with torch.no_grad():
            net.weight.add_(1.0)
        return 0.0

    return Engine(step)


def test_a_failed_save_keeps_the_previous_files_whole(tmp_path, monkeypatch):
    """A full disk in the middle of a save: MONAI's saver left a truncated file (and ignite had already deleted the
    one it replaced); here the last complete checkpoint and model.pt stay, and no temporary file is left."""
    net = torch.nn.Linear(2, 2, bias=False)
    engine = _engine(net)
    AtomicCheckpointSaver(str(tmp_path), {"model": net}, save_interval=1, n_saved=2, epoch_level=True).attach(engine)
    final = AtomicCheckpointSaver(str(tmp_path), {"model": net}, save_final=True, final_filename="model.pt")
    final.attach(engine)
    engine.run([0], max_epochs=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt", "model_epoch=1.pt", "model_epoch=2.pt"]
    good = torch.load(tmp_path / "model.pt", weights_only=True)["weight"].clone()

    real_save = torch.save

    def full_disk(obj, f, *a, **k):
        real_save(obj, f, *a, **k)  # some bytes reach the file, then the disk is full
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    again = _engine(net)
    final2 = AtomicCheckpointSaver(str(tmp_path), {"model": net}, save_final=True, final_filename="model.pt")
    final2.attach(again)
    with pytest.raises(OSError, match="No space"):
        again.run([0], max_epochs=1)
    monkeypatch.setattr(torch, "save", real_save)
    assert torch.equal(torch.load(tmp_path / "model.pt", weights_only=True)["weight"], good)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("tmp")]


def test_only_the_newest_epoch_checkpoints_stay_after_a_resume(tmp_path):
    net = torch.nn.Linear(2, 2, bias=False)
    for n in (3, 4):  # what an interrupted run left
        torch.save({"model": net.state_dict()}, tmp_path / f"model_epoch={n}.pt")
    (tmp_path / "model_epoch=notes.txt").write_text("not a checkpoint")
    engine = _engine(net)
    AtomicCheckpointSaver(str(tmp_path), {"model": net}, save_interval=1, n_saved=2, epoch_level=True).attach(engine)
    engine.state.max_epochs, engine.state.epoch = 6, 4  # resumed after epoch 4, as CheckpointLoader leaves it
    engine.state.epoch_length, engine.state.iteration = 1, 4  # one iteration per epoch
    engine.run([0], max_epochs=6)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["model_epoch=5.pt", "model_epoch=6.pt", "model_epoch=notes.txt"], names
