"""Ignite handler that writes the full anomaly report at the end of a run (and logs it to TensorBoard)."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from monai.utils import IgniteInfo, min_version, optional_import

from monai_anomaly.handlers.scores import AnomalyScoreCollector
from monai_anomaly.metrics.thresholds import DecisionThresholds, Threshold
from monai_anomaly.reports.writer import write_report
from monai_anomaly.utils.dist import gather_in_rank_order, rank_world

Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")
if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import(
        "ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine", as_type="decorator"
    )

__all__ = ["AnomalyReportHandler"]

logger = logging.getLogger("monai_anomaly")


class AnomalyReportHandler:
    """Write the report of :func:`~monai_anomaly.reports.writer.write_report` from an :class:`AnomalyScoreCollector`.

    Attach the collector and this handler to the same engine (collector first). At ``Events.COMPLETED`` (the end of
    ``engine.run``) the collected slice rows, the kept panels and 3D maps, the threshold and the skipped files are
    written to ``output_dir``; the result (metrics.json content and file paths) is kept in ``self.result``. With a
    ``tensorboard_writer`` (:class:`torch.utils.tensorboard.SummaryWriter`), the slice / volume AUROC, AUPRC and
    threshold metrics are logged as scalars under ``report/`` and the top-anomaly panels as images.

    Args:
        output_dir: the report folder.
        collector: the attached :class:`AnomalyScoreCollector`.
        threshold: slice threshold (a fitted :class:`~monai_anomaly.metrics.thresholds.Threshold`, its dict, a float)
            or a callable ``engine -> threshold`` (e.g. read from a loaded checkpoint); ``None`` for no predictions.
        overwrite: replace a report already in ``output_dir`` (else ``FileExistsError``).
        tensorboard_writer: optional SummaryWriter.
        skipped: files skipped as bad input (a :class:`~monai_anomaly.utils.errors.SkipLog` that the data loading
            fills, a list, or a callable ``engine -> list``).
        run_info: description of the run stored in the report (the engine's epoch / iteration count are added unless it
            has ``model_epoch``, the epoch of an evaluated checkpoint: an evaluator's own epoch is always 1); a callable
            value ``engine -> value`` is resolved when the report is written (e.g. the warnings of a
            checkpoint loaded at the start of the run). A ``"warnings"`` list is printed at the top of the report.
        thresholds: the :class:`~monai_anomaly.metrics.thresholds.DecisionThresholds` that decide (or a callable
            ``engine -> DecisionThresholds``); replaces ``threshold`` and ``volume_threshold``.
        volume_threshold: threshold on volume scores (a float or a callable ``engine -> float``); default: the slice
            threshold (see :func:`~monai_anomaly.reports.writer.write_report`).
        top_k: number of panels.
        event: the Ignite event to write at (``Events.COMPLETED``; ``Events.EPOCH_COMPLETED`` with ``overwrite=True``
            for a report that follows training validations).
        global_step_transform: gives the TensorBoard step from the engine (default: ``engine.state.epoch``).
        skipped_slices: slices of the volumes the slice selection left out, with their reasons (a list, or a callable
            ``engine -> list``, e.g. :attr:`~monai_anomaly.data.datasets.SliceDataset.skipped_slices`); written to
            ``detailed_results.csv`` without a score.
        training_log_dir: the training run's TensorBoard log folder (``<train output_dir>/logs``): its training loss
            and validation curves are drawn in ``training_curves.png`` (``None``: not drawn; the ``evaluate`` command
            passes it). The event files of ``output_dir`` itself (the evaluation's own logs) are never read.
        validation_normals: ``{"slice": [...], "volume": [...]}``, the scores of the known-normal validation samples
            the thresholds were fitted on (or a callable ``engine -> dict``, e.g.
            :meth:`~monai_anomaly.handlers.thresholds.ThresholdFitter.validation_normals`): the report then gives
            AUCp at test time (see :func:`~monai_anomaly.reports.writer.write_report`).

    Example:
        >>> from monai.engines import SupervisedEvaluator  # doctest: +SKIP
        >>> collector = AnomalyScoreCollector()  # doctest: +SKIP
        >>> handlers = [collector, AnomalyReportHandler("out/report", collector, threshold=0.3)]  # doctest: +SKIP
        >>> SupervisedEvaluator(device, loader, net, postprocessing=post, val_handlers=handlers).run()  # doctest: +SKIP
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        collector: AnomalyScoreCollector,
        threshold: float | Threshold | Mapping[str, Any] | Callable[[Engine], Any] | None = None,
        overwrite: bool = False,
        tensorboard_writer: Any | None = None,
        skipped: Any = None,
        run_info: Mapping[str, Any] | None = None,
        top_k: int = 5,
        event: Any = None,
        global_step_transform: Callable[[Engine], int] | None = None,
        volume_threshold: float | Callable[[Engine], Any] | None = None,
        thresholds: DecisionThresholds | Callable[[Engine], Any] | None = None,
        skipped_slices: Any = None,
        training_log_dir: str | os.PathLike | None = None,
        validation_normals: Mapping[str, Any] | Callable[[Engine], Any] | None = None,
    ) -> None:
        self.validation_normals = validation_normals
        self.skipped_slices = skipped_slices
        self.training_log_dir = None if training_log_dir is None else os.fspath(training_log_dir)
        self.volume_threshold = volume_threshold
        self.thresholds = thresholds
        self.output_dir = os.fspath(output_dir)
        self.collector = collector
        self.threshold = threshold
        self.overwrite = overwrite
        self.tensorboard_writer = tensorboard_writer
        self.skipped = skipped
        self.run_info = dict(run_info or {})
        self.top_k = top_k
        self.event = event
        self.global_step_transform = global_step_transform or (lambda engine: engine.state.epoch)
        self.result: dict[str, Any] | None = None

    def attach(self, engine: Engine) -> None:
        """Write the report at ``self.event`` (default ``Events.COMPLETED``) of ``engine``."""
        engine.add_event_handler(Events.COMPLETED if self.event is None else self.event, self)

    def _resolve(self, value: Any, engine: Engine) -> Any:
        if (
            callable(value)
            and not isinstance(value, (Threshold, DecisionThresholds, Mapping))
            and not hasattr(value, "as_list")
        ):
            return value(engine)
        return value

    def __call__(self, engine: Engine) -> None:
        skipped = self._resolve(self.skipped, engine)
        skipped_slices = list(self._resolve(self.skipped_slices, engine) or [])
        rank, world = rank_world()
        if world > 1:  # the collector gathered the rows; gather what each rank's data set skipped, rank 0 writes
            lists = gather_in_rank_order((_as_plain_list(skipped), skipped_slices))
            skipped = _unique([s for part, _ in lists for s in part])
            skipped_slices = [s for _, part in lists for s in part]
            if rank != 0:
                return
        if not len(self.collector):
            logger.warning("AnomalyReportHandler: nothing was collected; no report written to %s", self.output_dir)
            return
        run_info = {k: self._resolve(v, engine) for k, v in self.run_info.items()}
        if "model_epoch" not in run_info:  # validation during training: the engine's epoch is the model's
            run_info.update(epoch=int(engine.state.epoch), iterations=int(engine.state.iteration))
        self.result = write_report(
            self.output_dir,
            self.collector.slice_rows(),
            threshold=self._resolve(self.threshold, engine),
            aggregation=self.collector.aggregation,
            aggregation_kwargs=self.collector.aggregation_kwargs,
            skipped=skipped,
            panels=self.collector.panels,
            volume_maps=self.collector.volume_maps,
            run_info=run_info,
            volume_threshold=self._resolve(self.volume_threshold, engine),
            overwrite=self.overwrite,
            top_k=self.top_k,
            thresholds=self._resolve(self.thresholds, engine),
            volume_rows=None if self.collector.aggregation == "fraction_above" else self.collector.volume_rows(),
            skipped_slices=skipped_slices,
            training_log_dir=self.training_log_dir,
            validation_normals=self._resolve(self.validation_normals, engine),
        )
        if self.tensorboard_writer is not None:
            self._log_tensorboard(self.global_step_transform(engine))

    def _log_tensorboard(self, step: int) -> None:
        import matplotlib.image as mpimg

        w = self.tensorboard_writer
        assert self.result is not None
        for level in ("slice", "volume"):
            m = self.result[level]["metrics"] or {}
            for name, v in m.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v)):
                    w.add_scalar(f"report/{level}_{name}", float(v), step)
        for name, path in sorted(self.result["files"].items()):
            if name.startswith("top_anomaly_") and name.endswith(".png"):
                rgba = mpimg.imread(path)
                w.add_image(f"report/{name[:-4]}", np.ascontiguousarray(rgba[..., :3]), step, dataformats="HWC")
        w.flush()


def _as_plain_list(skipped: Any) -> list[Any]:
    """A skip log (``as_list()``) or a sequence of skipped inputs, as a plain list."""
    if skipped is None:
        return []
    if hasattr(skipped, "as_list"):
        return list(skipped.as_list())
    return list(skipped)


def _unique(items: list[Any]) -> list[Any]:
    """``items`` in order without repeats (every rank builds the same datalist, so its skips appear once each)."""
    seen, out = set(), []
    for s in items:
        key = repr(sorted(s.items())) if isinstance(s, Mapping) else repr(s)
        if key not in seen:
            seen.add(key)
            out.append(s)
    return out
