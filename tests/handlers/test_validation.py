"""Tests of monai_anomaly.handlers.validation: ValidateAtEnd validates the last epoch only when the interval skipped
it."""

from __future__ import annotations

from ignite.engine import Engine

from monai_anomaly.handlers.validation import ValidateAtEnd


class CountingValidator:
    """Records the epochs it was run for."""

    def __init__(self) -> None:
        self.epochs: list[int] = []

    def run(self, epoch: int) -> None:
        self.epochs.append(epoch)


def _train(max_epochs: int, interval: int, validator: CountingValidator | None) -> Engine:
    trainer = Engine(lambda e, b: None)
    ValidateAtEnd(validator, interval).attach(trainer)
    trainer.run([0], max_epochs=max_epochs)
    return trainer


def test_validates_the_last_epoch_only_when_the_interval_skipped_it():
    skipped = CountingValidator()
    _train(max_epochs=5, interval=2, validator=skipped)  # epochs 2 and 4 validated, 5 not
    assert skipped.epochs == [5]
    on_interval = CountingValidator()
    _train(max_epochs=4, interval=2, validator=on_interval)  # the ValidationHandler already ran at epoch 4
    assert on_interval.epochs == []
    short = CountingValidator()
    _train(max_epochs=2, interval=5, validator=short)  # shorter than the interval: never validated otherwise
    assert short.epochs == [2]


def test_no_validator_and_a_zero_interval_are_harmless():
    _train(max_epochs=3, interval=2, validator=None)
    every = CountingValidator()
    handler = ValidateAtEnd(every, interval=0)  # clamped to 1: every epoch is on the interval
    assert handler.interval == 1
    trainer = Engine(lambda e, b: None)
    handler.attach(trainer)
    trainer.run([0], max_epochs=3)
    assert every.epochs == []
