"""Fit the decision threshold and score calibration on validation normals, and read them back from a checkpoint."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from monai.utils import IgniteInfo, min_version, optional_import

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

__all__ = ["ThresholdFitter", "load_thresholds", "load_fitted_threshold", "load_volume_threshold"]

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
        self.normal_volume_scores: list[float] = []  # the aggregated scores of the normal validation volumes

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
        self.normal_volume_scores = [
            float(aggregate_scores(sc, method=self.aggregation, **kw)) for sc in normal.values()
        ]
        if len(normal) >= self.min_volumes:
            vs = list(self.normal_volume_scores)
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

    def validation_normals(self) -> dict[str, list[float]]:
        """The scores of the known-normal validation samples the thresholds were fitted on: ``{"slice": [...],
        "volume": [...]}`` (slice scores, and the aggregated scores of the normal validation volumes). What AUCp
        at test time compares an unlabelled set with (:func:`~monai_anomaly.metrics.aucp.pseudo_auc`)."""
        slices = [] if self.calibrator is None or not self.calibrator.fitted else self.calibrator.normal_scores.tolist()
        return {"slice": [float(v) for v in slices], "volume": [float(v) for v in self.normal_volume_scores]}

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
            "normal_volume_scores": torch.tensor(self.normal_volume_scores, dtype=torch.float64),
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
        nv = state.get("normal_volume_scores")  # absent in checkpoints saved before it was kept
        self.normal_volume_scores = [] if nv is None else [float(v) for v in torch.as_tensor(nv).reshape(-1).tolist()]
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
