"""Tests of monai_anomaly.reports.training_logs: a run's own TensorBoard scalars, read back for the training curves."""

from __future__ import annotations

import pytest
from torch.utils.tensorboard import SummaryWriter

from monai_anomaly.reports.training_logs import event_files, read_training_scalars


def _log(folder, scalars: dict[str, list[tuple[int, float]]]) -> None:
    """One SummaryWriter's event file in ``folder`` (as one TensorBoardStatsHandler writes)."""
    w = SummaryWriter(log_dir=str(folder))
    for tag, points in scalars.items():
        for step, value in points:
            w.add_scalar(tag, value, step)
    w.close()


def test_reads_train_and_validation_scalars_and_ignores_excluded_folders(tmp_path):
    logs = tmp_path / "run" / "logs"
    _log(logs, {"train_loss": [(1, 0.5), (2, 0.4), (3, 0.3)]})  # per iteration
    _log(logs, {"val_normal_loss": [(1, 0.45)], "slice_auroc": [(1, 0.7)]})  # per epoch, another writer
    _log(logs / "sub", {"volume_auroc": [(1, 0.8)]})  # nested folders are read too
    _log(logs / "eval" / "logs", {"report/slice_auroc": [(1, 0.9)], "train_loss": [(1, 99.0)]})  # not training's
    scalars = read_training_scalars(logs, exclude=[logs / "eval"])
    assert scalars == {
        "train_loss": [(1, 0.5), (2, pytest.approx(0.4)), (3, pytest.approx(0.3))],
        "val_normal_loss": [(1, pytest.approx(0.45))],
        "slice_auroc": [(1, pytest.approx(0.7))],
        "volume_auroc": [(1, pytest.approx(0.8))],
    }
    assert len(event_files(logs)) == 4 and len(event_files(logs, exclude=[logs / "eval"])) == 3


def test_a_resumed_run_keeps_the_last_value_of_a_repeated_step(tmp_path):
    logs = tmp_path / "logs"
    _log(logs, {"train_loss": [(1, 1.0), (2, 0.9), (3, 0.8)]})
    _log(logs, {"train_loss": [(3, 0.7), (4, 0.6)], "val_normal_loss": [(1, float("nan"))]})  # resumed at step 3
    scalars = read_training_scalars(logs)
    assert [s for s, _ in scalars["train_loss"]] == [1, 2, 3, 4]
    assert scalars["train_loss"][2][1] == pytest.approx(0.7)
    assert "val_normal_loss" not in scalars  # only a non-finite value: nothing to draw


def test_no_logs_is_empty_not_an_error(tmp_path):
    assert read_training_scalars(tmp_path / "missing") == {}
    (tmp_path / "empty").mkdir()
    assert read_training_scalars(tmp_path / "empty") == {}
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "events.out.tfevents.1.host.0").write_bytes(b"not an event file")
    assert read_training_scalars(tmp_path / "bad") == {}
