"""MONAI's ``CheckpointSaver`` with writes that never leave a damaged or missing checkpoint behind."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from monai.handlers import CheckpointSaver
from monai.utils import IgniteInfo, min_version, optional_import

Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")
if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine")

__all__ = ["AtomicCheckpointSaver"]

logger = logging.getLogger("monai_anomaly")


class AtomicCheckpointSaver(CheckpointSaver):
    """:class:`monai.handlers.CheckpointSaver` whose files are written to a temporary name and renamed, and which
    keeps only the newest ``n_saved`` epoch checkpoints on disk, also after ``--resume`` (with ``n_saved=None`` it
    keeps all, as MONAI's does).

    MONAI writes checkpoints in place (``atomic=False``) and ignite deletes the file it replaces before writing the
    new one, so a full disk or a kill during a save could leave a truncated ``checkpoint_epoch=N.pt`` or no
    ``model.pt`` at all. Here every file is written whole under a temporary name and renamed over the old one, so the
    last good file survives a failed save. A resumed run does not know the files the interrupted run saved; after
    each save, epoch checkpoints beyond the newest ``n_saved`` are deleted.

    Takes the same arguments as :class:`~monai.handlers.CheckpointSaver`.

    Example:
        >>> saver = AtomicCheckpointSaver("models", {"model": net}, save_interval=1, n_saved=2, epoch_level=True)
        ... # doctest: +SKIP
    """

    def __init__(self, save_dir: str, save_dict: dict, *args: Any, **kwargs: Any) -> None:
        super().__init__(save_dir, save_dict, *args, **kwargs)
        for name in ("_final_checkpoint", "_key_metric_checkpoint", "_interval_checkpoint"):
            ckpt = getattr(self, name, None)
            if ckpt is None:
                continue
            handler = ckpt.save_handler
            handler._atomic = True  # ignite's DiskSaver: temporary file, then os.replace
            if getattr(handler, "filename", None) is not None:  # a fixed name (model.pt): the rename replaces it
                handler.remove = _keep

    def attach(self, engine: Engine) -> None:
        super().attach(engine)
        if self._keep_last() is not None:
            event = Events.EPOCH_COMPLETED if self.epoch_level else Events.ITERATION_COMPLETED
            engine.add_event_handler(event, self.prune)
            engine.add_event_handler(Events.COMPLETED, self.prune)

    def _keep_last(self) -> int | None:
        """How many interval checkpoints ignite keeps (``n_saved``); ``None`` when all are kept or none are saved."""
        interval = getattr(self, "_interval_checkpoint", None)
        n = getattr(interval, "n_saved", None)
        return n if isinstance(n, int) and n > 0 else None

    def prune(self, engine: Engine | None = None) -> None:
        """Delete interval checkpoints named like the last one this saver wrote (``checkpoint_epoch=N.pt``,
        ``model_iteration=N.pt``...) beyond the newest ``n_saved``: those of an interrupted run that this one
        resumed."""
        keep = self._keep_last()
        last = getattr(self._interval_checkpoint, "last_checkpoint", None)
        if keep is None or not last:
            return
        m = re.match(r"^(.*_(?:epoch|iteration))=\d+(\.\w+)$", Path(str(last)).name)
        if m is None:
            return
        stem, ext = m.group(1), m.group(2)
        pattern = re.compile(rf"^{re.escape(stem)}=(\d+){re.escape(ext)}$")
        found = []
        for f in Path(self.save_dir).iterdir():
            hit = pattern.match(f.name)
            if hit and f.is_file():
                found.append((int(hit.group(1)), f))
        for _, f in sorted(found, reverse=True)[keep:]:
            try:
                f.unlink()
                logger.debug("removed old checkpoint %s", f)
            except OSError:
                pass


def _keep(filename: str) -> None:  # noqa: ARG001
    """A fixed-name checkpoint is not deleted before the new one is written: the atomic rename replaces it."""
