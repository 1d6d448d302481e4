"""Say plainly when a trained model is not fit to use: inverted validation AUROC or an unsettled loss."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from monai.utils import IgniteInfo, min_version, optional_import

Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")
if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import(
        "ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine", as_type="decorator"
    )

__all__ = ["TrainingHealthCheck"]

logger = logging.getLogger("monai_anomaly")


class TrainingHealthCheck:
    """Say plainly when a trained model is not fit to use: inverted validation AUROC or an unsettled loss.

    Attach it to the validation evaluator; it records each validation's key metric (``loss_metric``, lower is better)
    and, when the validation set has labelled anomalies, the slice AUROC (``auroc_metric``). :meth:`check` (called at
    every validation, and by the trainer's ``COMPLETED`` when :meth:`attach_trainer` was used) returns the warnings:

    - the last validation AUROC is below 0.5: the scores are inverted (anomalies look *more* normal than normals),
      often a sign of a shortcut in the data (run ``python -m monai_anomaly audit``) or of too short a training;
    - the validation loss has not settled: over the last ``window`` validations it still fell by more than
      ``settle_tol`` (relative), so more epochs would change the model; or fewer than ``window`` validations ran.

    Warnings go to the log (``WARNING``) once at the end of training, and are kept in :attr:`warnings` and in the
    checkpoint (it is stateful: save it with the model under ``"health"``), so that ``evaluate`` can print them in
    the report.

    Args:
        loss_metric: the evaluator's metric of the validation loss (``val_normal_loss``, the key metric of
            :class:`~monai_anomaly.engines.evaluator.AnomalyEvaluator`).
        auroc_metric: the evaluator's metric of the validation slice AUROC.
        window: how many validations the settle test looks back.
        settle_tol: relative drop over the window above which the loss has not settled.

    Example:
        >>> h = TrainingHealthCheck(window=3)
        >>> for loss, auc in [(1.0, 0.3), (0.8, 0.35), (0.5, 0.4)]:
        ...     h.record(loss, auc)
        >>> [w.split(":")[0] for w in h.check()]
        ['inverted scores', 'loss not settled']
    """

    def __init__(
        self,
        loss_metric: str = "val_normal_loss",
        auroc_metric: str = "slice_auroc",
        window: int = 3,
        settle_tol: float = 0.05,
    ) -> None:
        if window < 2:
            raise ValueError(f"window must be >= 2, got {window}")
        self.loss_metric = loss_metric
        self.auroc_metric = auroc_metric
        self.window = int(window)
        self.settle_tol = float(settle_tol)
        self.losses: list[float] = []
        self.aurocs: list[float] = []
        self.warnings: list[str] = []

    def attach(self, engine: Engine) -> None:
        """Record the metrics at each validation's ``EPOCH_COMPLETED``."""
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._record)

    def attach_trainer(self, trainer: Engine) -> None:
        """Log the warnings once when training completes."""
        trainer.add_event_handler(Events.COMPLETED, self._report)

    def _record(self, engine: Engine) -> None:
        m = engine.state.metrics
        self.record(m.get(self.loss_metric), m.get(self.auroc_metric))

    def record(self, loss: float | None, auroc: float | None = None) -> None:
        """Add one validation's loss and (optional) AUROC, then re-check."""
        if loss is not None:
            self.losses.append(float(loss))
        if auroc is not None:
            self.aurocs.append(float(auroc))
        self.check()

    def check(self) -> list[str]:
        """The current warnings (also kept in :attr:`warnings`)."""
        out = []
        if self.aurocs and self.aurocs[-1] < 0.5:
            out.append(
                f"inverted scores: validation slice AUROC is {self.aurocs[-1]:.3f} (< 0.5), anomalies score lower "
                "than normals; check the data for shortcuts (python -m monai_anomaly audit DATASET) and train longer "
                "before trusting this model"
            )
        if len(self.losses) < self.window:
            out.append(
                f"loss not settled: only {len(self.losses)} validation(s) ran (fewer than {self.window}), so "
                "convergence cannot be judged; train for more epochs"
            )
        else:
            recent = self.losses[-self.window :]
            drop = (recent[0] - recent[-1]) / max(abs(recent[0]), 1e-12)
            if drop > self.settle_tol:
                out.append(
                    f"loss not settled: the validation loss still fell {100 * drop:.1f} % over the last {self.window} "
                    f"validations ({recent[0]:.4g} -> {recent[-1]:.4g}); train for more epochs"
                )
        self.warnings = out
        return out

    def _report(self, engine: Engine | None = None) -> None:
        for w in self.check():
            logger.warning("training check: %s", w)

    def state_dict(self) -> dict[str, Any]:
        """History and warnings (lists of floats and strings only)."""
        return {"losses": list(self.losses), "aurocs": list(self.aurocs), "warnings": list(self.warnings)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from :meth:`state_dict` output."""
        self.losses = [float(v) for v in state.get("losses", [])]
        self.aurocs = [float(v) for v in state.get("aurocs", [])]
        self.warnings = [str(v) for v in state.get("warnings", [])]
