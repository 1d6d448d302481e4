"""Checkpoints: MONAI's ``CheckpointSaver`` with writes that never leave a damaged or missing checkpoint behind, resume
from the newest readable checkpoint, and a model loader with errors a user can act on."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from monai.handlers import CheckpointSaver
from monai.utils import IgniteInfo, min_version, optional_import

from monai_anomaly.engines.utils import list_checkpoints
from monai_anomaly.utils.checkpoints import load_checkpoint
from monai_anomaly.utils.errors import BadInputError

Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")
if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine")

__all__ = ["AtomicCheckpointSaver", "ModelCheckpointLoader", "ResumeFromLatestCheckpoint"]

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


class ResumeFromLatestCheckpoint:
    """Config-friendly resume: at ``STARTED`` load the newest checkpoint of ``load_dir`` with MONAI's
    ``CheckpointLoader`` (``weights_only=True``), or start fresh when there is none.

    The file is first checked with :func:`~monai_anomaly.utils.checkpoints.load_checkpoint`: a truncated or unreadable
    newest checkpoint is named in a warning and the previous one is used (the saver keeps two); when none can be read
    the run stops with a :class:`~monai_anomaly.utils.errors.BadInputError` naming them.

    Put it first in a bundle's ``train_handlers`` with the same objects as the ``CheckpointSaver``'s ``save_dict``;
    an interrupted run then continues from its last saved epoch.

    Args:
        load_dir: the ``CheckpointSaver`` folder.
        load_dict: objects to restore (network, optimizer, lr scheduler, trainer, threshold fitter...).
        pattern: glob pattern of checkpoint files.
        map_location: ``torch.load`` map location.
        strict: strict state-dict loading.

    Example:
        >>> import torch
        >>> net = torch.nn.Linear(2, 2)
        >>> handler = ResumeFromLatestCheckpoint("/nonexistent", {"network": net})
    """

    def __init__(
        self,
        load_dir: str | os.PathLike,
        load_dict: Mapping[str, Any],
        pattern: str = "*.pt",
        map_location: Any = None,
        strict: bool = True,
    ) -> None:
        self.load_dir = load_dir
        self.load_dict = dict(load_dict)
        self.pattern = pattern
        self.map_location = map_location
        self.strict = strict
        self.loaded_path: str | None = None
        self.skipped: list[str] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self)

    def __call__(self, engine: Engine) -> None:
        from monai.handlers import CheckpointLoader

        paths = list_checkpoints(self.load_dir, self.pattern)
        if not paths:
            logger.info("no checkpoint in %s: starting from scratch", self.load_dir)
            return
        bad: list[BadInputError] = []
        for path in paths:
            # read it once on the CPU first: a bad file then fails with a plain message naming it (MONAI's loader
            # would pass on PyTorch's advice to load it unsafely)
            try:
                load_checkpoint(path, map_location="cpu")
            except BadInputError as e:
                logger.warning("cannot resume from %s; trying the previous checkpoint", e)
                bad.append(e)
                continue
            logger.info("resuming from %s", path)
            CheckpointLoader(path, self.load_dict, map_location=self.map_location, strict=self.strict)(engine)
            self.loaded_path = path
            self.skipped = [str(e) for e in bad]
            return
        raise BadInputError(self.load_dir, "no checkpoint in it can be read: " + "; ".join(map(str, bad)))


class ModelCheckpointLoader:
    """MONAI's ``CheckpointLoader`` for a trained model, with errors a user can act on: a checkpoint whose weights do
    not fit the network built from the config (another architecture, size or bundle) raises a
    :class:`~monai_anomaly.utils.errors.BadInputError` naming the file, not PyTorch's list of missing keys.

    Args:
        load_path: the checkpoint.
        load_dict: objects to restore (``{"model": network, ...}``).
        map_location: ``torch.load`` map location.
        strict: strict state-dict loading.

    Example:
        >>> import torch
        >>> loader = ModelCheckpointLoader("model.pt", {"model": torch.nn.Linear(2, 2)})
    """

    def __init__(
        self, load_path: str | os.PathLike, load_dict: Mapping[str, Any], map_location: Any = None, strict: bool = True
    ) -> None:
        from monai.handlers import CheckpointLoader

        self.load_path = str(load_path)
        self._loader = CheckpointLoader(self.load_path, dict(load_dict), map_location=map_location, strict=strict)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self)

    def __call__(self, engine: Engine) -> None:
        ckpt = load_checkpoint(self.load_path, map_location="cpu")  # a plain error for an unreadable file
        missing = [k for k in self._loader.load_dict if not isinstance(ckpt, Mapping) or k not in ckpt]
        if missing:
            raise BadInputError(
                self.load_path,
                f"is not a monai_anomaly model of this bundle: no {missing} entries (keys: "
                f"{sorted(map(str, ckpt)) if isinstance(ckpt, Mapping) else type(ckpt).__name__})",
            )
        try:
            self._loader(engine)
        except (RuntimeError, KeyError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise BadInputError(
                self.load_path,
                f"its weights do not fit the network built for it ({first.rstrip(':')}); it was trained with another "
                "network, size or bundle",
            ) from e
