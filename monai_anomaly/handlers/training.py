"""Training-time handlers: fit the decision threshold and score calibration on validation normals; resume."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from monai.utils import IgniteInfo, min_version, optional_import

from monai_anomaly.engines.utils import list_checkpoints
from monai_anomaly.metrics.thresholds import (
    DERIVED,
    LABEL_FREE_METHODS,
    SIMULATED,
    DecisionThresholds,
    Threshold,
    fit_threshold,
)
from monai_anomaly.scoring.aggregation import AGGREGATION_METHODS, aggregate_scores
from monai_anomaly.scoring.calibration import NormalCalibrator
from monai_anomaly.utils.checkpoints import load_checkpoint
from monai_anomaly.utils.enums import AnomalyKeys
from monai_anomaly.utils.errors import BadInputError

Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")
if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import(
        "ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine", as_type="decorator"
    )

__all__ = [
    "ModelCheckpointLoader",
    "load_thresholds",
    "ValidateAtEnd",
    "ResumeFromLatestCheckpoint",
    "ThresholdFitter",
    "TrainingHealthCheck",
    "load_fitted_threshold",
    "load_volume_threshold",
]

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

    Attach it to the validation evaluator (e.g. :class:`~monai_anomaly.engines.evaluator.AnomalyEvaluator`):
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
        aggregation: the volume aggregation used at inference (``"topk"``, ``"mean"``...), for the volume threshold.
        aggregation_kwargs: its ``k`` / ``q``.
        min_volumes: the volume threshold is fitted (same ``method``) on the aggregated scores of the normal
            validation volumes (volumes with no anomalous slice) when there are at least this many; otherwise it is
            fitted (same ``method``) on the aggregated scores of ``n_pseudo_volumes`` pseudo-volumes drawn from the
            normal validation slice scores (the volume score's distribution on normals, simulated), and is
            ``fraction_volume`` for ``"fraction_above"``. ``volume_rule`` says which, and the reports print it.
        fraction_volume: the derived volume threshold of ``"fraction_above"`` (share of slices over the slice
            threshold that makes a volume anomalous).
        volume_key: the volume id key.
        n_pseudo_volumes: pseudo-volumes drawn when there are fewer than ``min_volumes`` normal volumes.
        seed: seed of those draws.

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
        aggregation: str = "mean",
        aggregation_kwargs: Mapping[str, Any] | None = None,
        min_volumes: int = 5,
        fraction_volume: float = 0.05,
        volume_key: str = AnomalyKeys.VOLUME_ID,
        n_pseudo_volumes: int = 1000,
        seed: int = 0,
    ) -> None:
        self.n_pseudo_volumes = int(n_pseudo_volumes)
        self.seed = int(seed)
        if aggregation not in AGGREGATION_METHODS:
            raise ValueError(f"aggregation must be one of {AGGREGATION_METHODS}, got {aggregation!r}")
        self.aggregation = aggregation
        self.aggregation_kwargs = dict(aggregation_kwargs or {})
        self.min_volumes = int(min_volumes)
        self.fraction_volume = float(fraction_volume)
        self.volume_key = volume_key
        self.volume_threshold: float | None = None
        self.volume_rule = ""
        self._volumes: dict[str, list[float]] = {}
        self._anomalous_volumes: set[str] = set()
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
        self._volumes = {}
        self._anomalous_volumes = set()

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
            vids = item.get(self.volume_key)
            vids = [vids] if isinstance(vids, str) else (list(vids) if vids is not None else [])
            if len(vids) == len(scores):
                for v, sc, lab in zip(vids, scores, labels):
                    if lab == 1:
                        self._anomalous_volumes.add(str(v))
                    elif lab == 0:
                        self._volumes.setdefault(str(v), []).append(float(sc))

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
        self._fit_volume_threshold()
        return self.threshold

    def _fit_volume_threshold(self) -> None:
        normal = {v: sc for v, sc in self._volumes.items() if v not in self._anomalous_volumes and sc}
        kw = dict(self.aggregation_kwargs)
        if self.aggregation == "fraction_above":
            kw["threshold"] = float(self.threshold.value)
        if len(normal) >= self.min_volumes:
            vs = [aggregate_scores(sc, method=self.aggregation, **kw) for sc in normal.values()]
            t = fit_threshold(vs, method=self.method, k=self.k, q=self.q, split=self.split)
            self.volume_threshold = float(t.value)
            self.volume_rule = (
                f"fitted ({self.method}) on the {self.aggregation} volume scores of {len(normal)} normal "
                f"{self.split} volumes"
            )
        elif self.aggregation == "fraction_above":
            self.volume_threshold = self.fraction_volume
            self.volume_rule = (
                f"{DERIVED}: anomalous when at least {self.fraction_volume:g} of the scored slices reach the slice "
                f"threshold (only {len(normal)} normal {self.split} volumes, fewer than {self.min_volumes})"
            )
        else:
            self._simulate_volume_threshold(normal, kw)

    def _simulate_volume_threshold(self, normal: Mapping[str, list[float]], kw: Mapping[str, Any]) -> None:
        """Few normal validation volumes: the volume score's distribution on normals is simulated.

        ``n_pseudo_volumes`` pseudo-volumes, each of as many slices as a normal validation volume has (the median),
        are drawn with replacement from the normal validation slice scores (seeded), aggregated as at inference, and
        the threshold method is fitted on their volume scores. A scan is then anomalous when its volume score stands
        out from what normal scans of its size give; applying the slice threshold to the aggregate instead compares
        a top-k mean with a single slice's spread.
        """
        scores = np.asarray(self._normal_scores, dtype=np.float64)
        sizes = [len(v) for v in normal.values()] or [1]
        n = max(1, int(np.median(sizes)))
        rng = np.random.default_rng(self.seed)
        draws = rng.choice(scores, size=(self.n_pseudo_volumes, n), replace=True)
        vs = [aggregate_scores(d, method=self.aggregation, **kw) for d in draws]
        t = fit_threshold(vs, method=self.method, k=self.k, q=self.q, split=self.split)
        self.volume_threshold = float(t.value)
        self.volume_rule = (
            f"{SIMULATED}: {self.method} of the {self.aggregation} volume scores of {self.n_pseudo_volumes} "
            f"pseudo-volumes of {n} slices drawn from the {scores.size} normal {self.split} slice scores (only "
            f"{len(normal)} normal {self.split} volumes, fewer than {self.min_volumes})"
        )

    @property
    def thresholds(self) -> DecisionThresholds:
        """The fitted slice and volume thresholds, their rule and the epoch they were fitted at."""
        return DecisionThresholds(self.threshold, self.volume_threshold, self.volume_rule, self.fitted_epoch)

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
            "aggregation": self.aggregation,
            "volume_threshold": -1.0 if self.volume_threshold is None else float(self.volume_threshold),
            "volume_rule": self.volume_rule,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from :meth:`state_dict` output."""
        thr = state.get("threshold") or {}
        cal = state.get("calibrator") or {}
        self.threshold = Threshold.from_dict(dict(thr)) if thr else None
        self.calibrator = NormalCalibrator().load_state_dict(dict(cal)) if cal else None
        self.fitted_epoch = int(state.get("fitted_epoch", -1))
        vt = state.get("volume_threshold")
        self.volume_threshold = (
            None if vt is None or (float(vt) == -1.0 and not state.get("volume_rule")) else float(vt)
        )
        self.volume_rule = str(state.get("volume_rule", ""))
        if "split" in state:
            self.split = str(state["split"])

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(method={self.method!r}, split={self.split!r}, threshold={self.threshold})"


def _saved_fitter(path: str | os.PathLike, key: str, map_location: Any) -> ThresholdFitter:
    """The :class:`ThresholdFitter` saved under ``key`` in a checkpoint, read safely."""
    ckpt = load_checkpoint(path, map_location=map_location)
    if not isinstance(ckpt, Mapping) or key not in ckpt:
        found = sorted(map(str, ckpt)) if isinstance(ckpt, Mapping) else f"a {type(ckpt).__name__}, not a dict"
        raise BadInputError(
            path,
            f"is not a monai_anomaly model: the checkpoint has no {key!r} entry (keys: {found}); use the "
            "models/model.pt that `train` wrote",
        )
    fitter = ThresholdFitter()
    try:
        fitter.load_state_dict(ckpt[key])
    except (TypeError, ValueError, KeyError, AttributeError) as e:
        raise BadInputError(path, f"its saved threshold is not valid ({type(e).__name__}: {e})") from None
    values = {"slice threshold": None if fitter.threshold is None else fitter.threshold.value}
    values["volume threshold"] = fitter.volume_threshold
    for what, v in values.items():
        if v is not None and not math.isfinite(float(v)):
            raise BadInputError(
                path,
                f"its {what} is {v} (not a finite number): every scan would be called normal; retrain, or pass "
                "--threshold / --volume_threshold",
            )
    return fitter


def load_fitted_threshold(
    path: str | os.PathLike, key: str = "threshold", map_location: Any = "cpu"
) -> tuple[Threshold | None, NormalCalibrator | None]:
    """Read the threshold and calibrator that a :class:`ThresholdFitter` saved in a checkpoint.

    Args:
        path: the checkpoint (read with :func:`~monai_anomaly.utils.checkpoints.load_checkpoint`: plain data only).
        key: the fitter's key in the checkpoint's ``save_dict``.
        map_location: ``torch.load`` map location.

    Returns:
        ``(threshold, calibrator)``, each ``None`` if it was never fitted.

    Raises:
        BadInputError: the file cannot be loaded (missing, not a checkpoint, or not plain data), or it has no ``key``
            entry (not a model written by ``train``); the message names it.
    """
    fitter = _saved_fitter(path, key, map_location)
    return fitter.threshold, fitter.calibrator


def load_thresholds(
    path: str | os.PathLike,
    slice: float | None = None,
    volume: float | None = None,
    key: str = "threshold",
    map_location: Any = "cpu",
) -> DecisionThresholds:
    """The :class:`~monai_anomaly.metrics.thresholds.DecisionThresholds` saved with a model, with a user's overrides.

    Args:
        path: the model's checkpoint (``model.pt``); a missing file gives no thresholds (scores only) unless both
            levels are given.
        slice: ``--threshold``: the slice threshold to use instead of the fitted one.
        volume: ``--volume_threshold``: the volume threshold to use instead of the fitted one.
        key: the fitter's key in the checkpoint.
        map_location: ``torch.load`` map location.

    Raises:
        BadInputError: the file exists but is not a model written by ``train`` (see :func:`load_fitted_threshold`).
    """
    base = _saved_fitter(path, key, map_location).thresholds if os.path.isfile(path) else DecisionThresholds()
    return base.override(slice=slice, volume=volume)


def load_volume_threshold(
    path: str | os.PathLike, key: str = "threshold", map_location: Any = "cpu"
) -> tuple[float | None, str]:
    """The volume threshold and its rule (how it was obtained) that a :class:`ThresholdFitter` saved.

    Returns ``(None, "")`` for a checkpoint saved before volume thresholds existed.

    Raises:
        BadInputError: the file cannot be loaded (see :func:`~monai_anomaly.utils.checkpoints.load_checkpoint`) or
            has no ``key`` entry (not a model written by ``train``).
    """
    fitter = _saved_fitter(path, key, map_location)
    return fitter.volume_threshold, fitter.volume_rule


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
        loss_metric: the evaluator's metric of the validation loss.
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
        loss_metric: str = "val_recon_loss",
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
