"""Tests of monai_anomaly.handlers.health: TrainingHealthCheck's warnings, on its own and on a real evaluator."""

from __future__ import annotations

import torch
from ignite.engine import Events


def test_health_check_flags_inverted_scores_and_unsettled_loss():
    from monai_anomaly.handlers.health import TrainingHealthCheck

    h = TrainingHealthCheck(window=3, settle_tol=0.05)
    h.record(0.10)
    assert any("only 1 validation" in w for w in h.warnings)
    for loss in (0.08, 0.06):
        h.record(loss, 0.41)
    assert [w.split(":")[0] for w in h.warnings] == ["inverted scores", "loss not settled"]
    for loss in (0.0599, 0.0598, 0.0598):
        h.record(loss, 0.82)
    assert h.warnings == []  # settled and the right way round
    h2 = TrainingHealthCheck()
    h2.load_state_dict(h.state_dict())
    assert h2.losses == h.losses and h2.check() == []


def test_health_check_on_a_real_evaluator_writes_its_warnings_in_the_checkpoint(tmp_path):
    """Attached to an evaluator whose metrics say 'inverted', the warning survives a save/load round trip."""
    from ignite.engine import Engine

    from monai_anomaly.handlers.health import TrainingHealthCheck

    h = TrainingHealthCheck(window=2)
    ev = Engine(lambda e, b: None)
    h.attach(ev)

    @ev.on(Events.EPOCH_STARTED)
    def _metrics(engine):
        engine.state.metrics = {"val_normal_loss": 0.05, "slice_auroc": 0.3}

    ev.run([0, 1], max_epochs=2)
    assert h.warnings and h.warnings[0].startswith("inverted scores")
    # the evaluator's validation loss was recorded (the default metric name is the evaluator's key metric): two
    # equal losses have settled, so no "only 0 validation(s)" warning
    assert h.losses == [0.05, 0.05] and len(h.warnings) == 1
    torch.save({"health": h.state_dict()}, tmp_path / "m.pt")
    loaded = TrainingHealthCheck()
    loaded.load_state_dict(torch.load(tmp_path / "m.pt", weights_only=True)["health"])
    assert loaded.warnings == h.warnings


def test_the_default_loss_metric_is_the_evaluators_key_metric():
    from monai_anomaly.engines.evaluator import VAL_NORMAL_LOSS
    from monai_anomaly.handlers.health import TrainingHealthCheck

    assert TrainingHealthCheck().loss_metric == VAL_NORMAL_LOSS
