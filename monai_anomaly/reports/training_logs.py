"""Read a training run's own logged scalars (its TensorBoard event files) for the report's training curves.

``train`` logs the training loss per iteration and the validation metrics per epoch with MONAI's
``TensorBoardStatsHandler`` into ``<output_dir>/logs``; :func:`read_training_scalars` reads them back with
TensorBoard's ``EventAccumulator`` (no TensorFlow needed) so that
:func:`~monai_anomaly.reports.plots.plot_training_curves` can draw them. Event files under an excluded folder (the
evaluation's own ``<eval_dir>/logs``) are never read.

Example:
    >>> run = "runs/autoencoder_anomaly"
    >>> scalars = read_training_scalars(f"{run}/logs", exclude=[f"{run}/eval"])  # doctest: +SKIP
    >>> sorted(scalars)  # doctest: +SKIP
    ['slice_auroc', 'train_loss', 'val_normal_loss', ...]
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

__all__ = ["event_files", "read_training_scalars"]

logger = logging.getLogger("monai_anomaly")

EVENT_GLOB = "events.out.tfevents.*"


def _inside(path: Path, folders: Sequence[Path]) -> bool:
    return any(path == f or f in path.parents for f in folders)


def event_files(log_dir: str | os.PathLike, exclude: Sequence[str | os.PathLike] = ()) -> list[Path]:
    """The TensorBoard event files under ``log_dir`` (any depth), oldest name first, none under ``exclude``.

    Returns an empty list when ``log_dir`` does not exist.
    """
    root = Path(log_dir).expanduser().absolute()
    if not root.is_dir():
        return []
    skip = [Path(e).expanduser().absolute() for e in exclude]
    files = [p for p in root.rglob(EVENT_GLOB) if p.is_file() and not _inside(p.absolute(), skip)]
    return sorted(files, key=lambda p: (p.name, str(p)))


def read_training_scalars(
    log_dir: str | os.PathLike, exclude: Sequence[str | os.PathLike] = ()
) -> dict[str, list[tuple[int, float]]]:
    """Every scalar logged under ``log_dir``: ``{tag: [(step, value), ...]}`` sorted by step.

    Each event file is read on its own; when several files hold the same tag and step (a run continued with
    ``--resume`` repeats the steps after its last checkpoint), the value logged last wins. Non-finite values are kept
    out. An unreadable file is skipped with a warning.

    Args:
        log_dir: the training run's log folder (``<output_dir>/logs``).
        exclude: folders whose event files are not the training run's (the evaluation's ``<eval_dir>``).

    Returns:
        the scalars, or ``{}`` when there is no event file, or TensorBoard is not installed (said at INFO level).
    """
    files = event_files(log_dir, exclude)
    if not files:
        return {}
    try:
        from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator
    except ImportError:
        logger.info("tensorboard is not installed: the training logs in %s are not read", log_dir)
        return {}
    found: dict[str, list[tuple[float, int, float]]] = {}
    for f in files:
        try:
            acc = EventAccumulator(str(f), size_guidance={SCALARS: 0})  # 0: keep every point
            acc.Reload()
            for tag in acc.Tags().get("scalars", []):
                found.setdefault(tag, []).extend((e.wall_time, int(e.step), float(e.value)) for e in acc.Scalars(tag))
        except Exception as e:  # noqa: BLE001 - a damaged log file is never worth the report
            logger.warning("training log %s not read: %s: %s", f, type(e).__name__, e)
    out: dict[str, list[tuple[int, float]]] = {}
    for tag, events in found.items():
        by_step: dict[int, float] = {}
        for _, step, value in sorted(events, key=lambda t: t[0]):
            if math.isfinite(value):
                by_step[step] = value
        if by_step:
            out[tag] = sorted(by_step.items())
    return out
