"""Training-time handlers: fit the decision threshold and score calibration on validation normals; resume."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import torch
from monai.utils import IgniteInfo, min_version, optional_import

from monai_anomaly.engines.utils import find_latest_checkpoint
from monai_anomaly.metrics.thresholds import LABEL_FREE_METHODS, Threshold, fit_threshold
from monai_anomaly.scoring.calibration import NormalCalibrator
from monai_anomaly.utils.enums import AnomalyKeys

Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")
if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import(
        "ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine", as_type="decorator"
    )

__all__ = ["ResumeFromLatestCheckpoint", "ThresholdFitter", "load_fitted_threshold"]

logger = logging.getLogger("monai_anomaly")


def _identity(x: Any) -> Any:
    return x


def _values(v: Any) -> list[float]:
    if v is None:
        return []
    if isinstance(v, torch.Tensor):
        return [float(x) for x in v.detach().cpu().reshape(-1).tolist()]
    if isinstance(v, (list, tuple)):
        return [x for i in v for x in _values(i)]
    return [float(v)]


class ThresholdFitter:
    """Fit a decision :class:`~monai_anomaly.metrics.thresholds.Threshold` and a
    :class:`~monai_anomaly.scoring.calibration.NormalCalibrator` on the NORMAL validation slice scores of each run.

    Attach it to the validation evaluator (e.g. :class:`~monai_anomaly.engines.evaluator.ReconstructionEvaluator`):
    every iteration it reads ``score`` and ``label`` from ``engine.state.output`` (a batched dict or the list of
    per-sample dicts of a decollating evaluator); at ``EPOCH_COMPLETED`` it fits, on the label-0 scores only, the
    threshold (``"mean_std"``: mean + k std, or ``"percentile"``: the q-th percentile; label-free, so a normal-only
    validation split suffices) and the calibrator, records ``split`` (never ``"test"``), and publishes the
    threshold as ``engine.state.metrics["val_threshold"]``. A run without normal scores keeps the previous fit.

    It is stateful: put it in the checkpoint with the model (``CheckpointSaver(save_dict={"network": net,
    "optimizer": opt, "trainer": trainer, "threshold": fitter})``) and restore it with MONAI's ``CheckpointLoader``
    (``torch.load(..., weights_only=True)``: :meth:`state_dict` holds only tensors, numbers and strings). Attach the
    trainer's ``ValidationHandler`` before its ``CheckpointSaver`` so each checkpoint carries the threshold of the
    same epoch. At inference, :func:`load_fitted_threshold` reads it back.

    Args:
        method: ``"mean_std"`` or ``"percentile"``.
        k: ``"mean_std"`` multiplier.
        q: ``"percentile"`` percentile.
        split: the split the evaluator runs on (recorded; ``"test"`` is refused).
        score_key: the slice score key.
        label_key: the label key (0 normal; samples without a label are left out unless ``assume_normal``).
        assume_normal: count samples without a label as normal (a validation loader of known normals).
        fit_calibrator: also fit the calibrator.
        metric_name: the ``engine.state.metrics`` entry of the fitted value (``None``: none).
        output_transform: applied to ``engine.state.output`` first.

    Example:
        >>> fitter = ThresholdFitter("percentile", q=50.0)
        >>> fitter.update([{"score": 1.0, "label": 0}, {"score": 3.0, "label": 0}, {"score": 9.0, "label": 1}])
        >>> fitter.fit().value, fitter.calibrator(2.0)
        (2.0, 0.75)
    """

    def __init__(
        self,
        method: str = "mean_std",
        k: float = 3.0,
        q: float = 95.0,
        split: str = "val",
        score_key: str = AnomalyKeys.SCORE,
        label_key: str = AnomalyKeys.LABEL,
        assume_normal: bool = False,
        fit_calibrator: bool = True,
        metric_name: str | None = "val_threshold",
        output_transform: Callable[[Any], Any] = _identity,
    ) -> None:
        if method not in LABEL_FREE_METHODS:
            raise ValueError(
                f"method must be one of {LABEL_FREE_METHODS} (fitted on normal validation scores), got {method!r}"
            )
        if str(split).lower() == "test":
            raise ValueError("thresholds are never fitted on the test set: fit on validation normals (split='val')")
        self.method = method
        self.k = float(k)
        self.q = float(q)
        self.split = split
        self.score_key = score_key
        self.label_key = label_key
        self.assume_normal = assume_normal
        self.fit_calibrator = fit_calibrator
        self.metric_name = metric_name
        self.output_transform = output_transform
        self.threshold: Threshold | None = None
        self.calibrator: NormalCalibrator | None = None
        self.fitted_epoch = -1
        self._normal_scores: list[float] = []

    def attach(self, engine: Engine) -> None:
        """Register on ``EPOCH_STARTED`` (reset), ``ITERATION_COMPLETED`` (collect) and ``EPOCH_COMPLETED`` (fit)."""
        engine.add_event_handler(Events.EPOCH_STARTED, self.reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._fit_epoch)

    def reset(self, engine: Engine | None = None) -> None:
        """Forget the collected scores (the last fit stays)."""
        self._normal_scores = []

    def update(self, output: Any) -> None:
        """Collect the normal scores of one output (a batched dict or a list of per-sample dicts)."""
        items = output if isinstance(output, (list, tuple)) else [output]
        for item in items:
            if not isinstance(item, Mapping) or self.score_key not in item:
                continue
            scores = _values(item[self.score_key])
            labels = _values(item.get(self.label_key))
            if not labels:
                if self.assume_normal:
                    self._normal_scores.extend(scores)
                continue
            if len(labels) != len(scores):
                raise ValueError(f"{len(scores)} scores but {len(labels)} labels in one output")
            self._normal_scores.extend(s for s, lab in zip(scores, labels) if lab == 0)

    def _collect(self, engine: Engine) -> None:
        self.update(self.output_transform(engine.state.output))

    def fit(self) -> Threshold | None:
        """Fit on the collected normal scores; returns the threshold (``None`` and a warning when there are none)."""
        if not self._normal_scores:
            logger.warning("ThresholdFitter: no normal (label 0) scores collected; keeping the previous threshold")
            return self.threshold
        self.threshold = fit_threshold(self._normal_scores, method=self.method, k=self.k, q=self.q, split=self.split)
        if self.fit_calibrator:
            self.calibrator = NormalCalibrator(split=self.split).fit(self._normal_scores)
        return self.threshold

    def _fit_epoch(self, engine: Engine) -> None:
        if self.fit() is not None and self._normal_scores:
            self.fitted_epoch = int(engine.state.epoch)
            if self.metric_name:
                engine.state.metrics[self.metric_name] = float(self.threshold.value)
            logger.info(
                "fitted threshold %.6g (%s on %d normal %s scores)",
                self.threshold.value,
                self.method,
                len(self._normal_scores),
                self.split,
            )

    def state_dict(self) -> dict[str, Any]:
        """The fitted threshold and calibrator: only dicts, tensors, numbers and strings."""
        return {
            "method": self.method,
            "split": str(self.split),
            "fitted_epoch": int(self.fitted_epoch),
            "threshold": {} if self.threshold is None else self.threshold.to_dict(),
            "calibrator": {} if self.calibrator is None else self.calibrator.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from :meth:`state_dict` output."""
        thr = state.get("threshold") or {}
        cal = state.get("calibrator") or {}
        self.threshold = Threshold.from_dict(dict(thr)) if thr else None
        self.calibrator = NormalCalibrator().load_state_dict(dict(cal)) if cal else None
        self.fitted_epoch = int(state.get("fitted_epoch", -1))
        if "split" in state:
            self.split = str(state["split"])

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(method={self.method!r}, split={self.split!r}, threshold={self.threshold})"


def load_fitted_threshold(
    path: str | os.PathLike, key: str = "threshold", map_location: Any = "cpu"
) -> tuple[Threshold | None, NormalCalibrator | None]:
    """Read the threshold and calibrator that a :class:`ThresholdFitter` saved in a checkpoint.

    Args:
        path: the checkpoint (``torch.load(..., weights_only=True)`` is used).
        key: the fitter's key in the checkpoint's ``save_dict``.
        map_location: ``torch.load`` map location.

    Returns:
        ``(threshold, calibrator)``, each ``None`` if it was never fitted.

    Raises:
        KeyError: the checkpoint has no ``key`` entry.
    """
    ckpt = torch.load(path, map_location=map_location, weights_only=True)
    if key not in ckpt:
        raise KeyError(f"{path}: checkpoint has no {key!r} entry (keys: {sorted(ckpt)})")
    fitter = ThresholdFitter()
    fitter.load_state_dict(ckpt[key])
    return fitter.threshold, fitter.calibrator


class ResumeFromLatestCheckpoint:
    """Config-friendly resume: at ``STARTED`` load the newest checkpoint of ``load_dir`` with MONAI's
    ``CheckpointLoader`` (``weights_only=True``), or start fresh when there is none.

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

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self)

    def __call__(self, engine: Engine) -> None:
        from monai.handlers import CheckpointLoader

        path = find_latest_checkpoint(self.load_dir, self.pattern)
        if path is None:
            logger.info("no checkpoint in %s: starting from scratch", self.load_dir)
            return
        logger.info("resuming from %s", path)
        CheckpointLoader(path, self.load_dict, map_location=self.map_location, strict=self.strict)(engine)
        self.loaded_path = path
