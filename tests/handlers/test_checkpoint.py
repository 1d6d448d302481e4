"""Tests for monai_anomaly.handlers.checkpoint: checkpoints that survive a failed save, pruning after resume, and
resuming from the newest readable checkpoint."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from ignite.engine import Engine, Events
from monai.handlers import CheckpointSaver

from monai_anomaly.handlers.checkpoint import AtomicCheckpointSaver, ResumeFromLatestCheckpoint
from monai_anomaly.utils.errors import BadInputError

sys.path.insert(0, str(Path(__file__).parent))

from tiny_trainer import tiny_trainer as _trainer  # noqa: E402


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


def test_resume_from_latest_checkpoint(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Conv2d(1, 1, 3, padding=1)
    fresh = ResumeFromLatestCheckpoint(tmp_path / "none", {"network": net})
    trainer, _ = _trainer(net)
    fresh.attach(trainer)
    trainer.run()
    assert fresh.loaded_path is None and trainer.state.epoch == 1

    ckpt_dir = tmp_path / "ckpt"
    trainer, opt = _trainer(net, max_epochs=2)
    CheckpointSaver(str(ckpt_dir), {"network": net, "trainer": trainer}, save_interval=1).attach(trainer)
    trainer.run()
    net2 = torch.nn.Conv2d(1, 1, 3, padding=1)
    trainer2, _ = _trainer(net2, max_epochs=3)
    resume = ResumeFromLatestCheckpoint(ckpt_dir, {"network": net2, "trainer": trainer2})
    resume.attach(trainer2)
    epochs = []
    trainer2.add_event_handler(Events.EPOCH_STARTED, lambda e: epochs.append(e.state.epoch))
    trainer2.run()
    assert resume.loaded_path.endswith("checkpoint_epoch=2.pt")
    assert epochs == [3]  # only the missing epoch runs


def test_resume_from_a_truncated_checkpoint_says_which_file(tmp_path):
    net = torch.nn.Conv2d(1, 1, 3, padding=1)
    ckpt_dir = tmp_path / "ckpt"
    trainer, _ = _trainer(net, max_epochs=2)
    CheckpointSaver(str(ckpt_dir), {"network": net, "trainer": trainer}, save_interval=1).attach(trainer)
    trainer.run()
    for f in ckpt_dir.glob("checkpoint_epoch=*.pt"):  # every checkpoint truncated: nothing to fall back on
        f.write_bytes(f.read_bytes()[:50])  # e.g. the disk filled up while saving
    trainer2, _ = _trainer(torch.nn.Conv2d(1, 1, 3, padding=1), max_epochs=3)
    ResumeFromLatestCheckpoint(ckpt_dir, {"network": net, "trainer": trainer2}).attach(trainer2)
    with pytest.raises(BadInputError, match=r"checkpoint_epoch=2\.pt: .*truncated") as e:
        trainer2.run()
    assert "weights_only" not in str(e.value)


def test_resume_falls_back_to_the_previous_checkpoint_when_the_latest_is_truncated(tmp_path, caplog):
    net = torch.nn.Conv2d(1, 1, 3, padding=1)
    ckpt_dir = tmp_path / "ckpt"
    trainer, _ = _trainer(net, max_epochs=2)
    CheckpointSaver(str(ckpt_dir), {"network": net, "trainer": trainer}, save_interval=1, n_saved=2).attach(trainer)
    trainer.run()
    latest = ckpt_dir / "checkpoint_epoch=2.pt"
    latest.write_bytes(latest.read_bytes()[:50])
    net2 = torch.nn.Conv2d(1, 1, 3, padding=1)
    trainer2, _ = _trainer(net2, max_epochs=3)
    resume = ResumeFromLatestCheckpoint(ckpt_dir, {"network": net2, "trainer": trainer2})
    resume.attach(trainer2)
    with caplog.at_level("WARNING", logger="monai_anomaly"):
        trainer2.run()
    assert resume.loaded_path == str(ckpt_dir / "checkpoint_epoch=1.pt")
    assert "checkpoint_epoch=2.pt" in caplog.text and "previous checkpoint" in caplog.text
    assert trainer2.state.epoch == 3
