"""Validate the last epoch when the ``ValidationHandler``'s interval skipped it."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from monai.utils import IgniteInfo, min_version, optional_import

Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")
if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import(
        "ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine", as_type="decorator"
    )

__all__ = ["ValidateAtEnd"]

logger = logging.getLogger("monai_anomaly")


class ValidateAtEnd:
    """Run the validator once more when training ends on an epoch that ``ValidationHandler`` skipped.

    With ``max_epochs`` not a multiple of ``interval`` (or shorter than it), the last epochs would otherwise never be
    validated: no best checkpoint (``model.pt``) and no fitted threshold would be saved for them, and a run shorter
    than ``interval`` would leave no model at all. Attach it after the ``ValidationHandler``.

    Args:
        validator: the validation evaluator (the one the ``ValidationHandler`` runs).
        interval: the ``ValidationHandler``'s epoch interval.

    Example:
        >>> handler = ValidateAtEnd(validator=None, interval=5)
    """

    def __init__(self, validator: Any, interval: int) -> None:
        self.validator = validator
        self.interval = max(1, int(interval))

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        if engine.state.epoch % self.interval != 0 and self.validator is not None:
            logger.info(
                "validating the last epoch (%d), which the %d-epoch interval skipped", engine.state.epoch, self.interval
            )
            self.validator.run(engine.state.epoch)
