"""Decision thresholds on anomaly scores, fitted on a validation split (never on the test set)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.metrics import precision_recall_curve, roc_curve

from monai_anomaly.metrics.classification import as_1d_array, check_finite, check_labels_scores

__all__ = [
    "LABEL_FREE_METHODS",
    "LABELLED_METHODS",
    "THRESHOLD_METHODS",
    "DERIVED",
    "SIMULATED",
    "DecisionThresholds",
    "Threshold",
    "as_threshold",
    "fit_threshold",
]

LABEL_FREE_METHODS = ("mean_std", "percentile")
LABELLED_METHODS = ("youden", "equal_error", "f1_max")
THRESHOLD_METHODS = (*LABEL_FREE_METHODS, *LABELLED_METHODS, "manual")


@dataclass
class Threshold:
    """A fitted decision threshold: a score ``>= value`` is predicted anomalous.

    Args:
        value: the threshold.
        method: how it was obtained (one of :data:`THRESHOLD_METHODS`).
        split: the data split it was fitted on (``"val"``; never ``"test"``).
        params: the method's parameters and fit statistics (plain floats / ints / strings).

    Example:
        >>> t = Threshold(0.5, "manual", "val", {})
        >>> t.predict([0.2, 0.5, 0.9]).tolist()
        [0, 1, 1]
        >>> Threshold.from_dict(t.to_dict()) == t
        True
    """

    value: float
    method: str
    split: str
    params: dict = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable form (for reports and checkpoints)."""
        return {"value": float(self.value), "method": self.method, "split": self.split, "params": dict(self.params)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Threshold:
        """Inverse of :meth:`to_dict`."""
        missing = {"value", "method", "split"} - set(d)
        if missing:
            raise ValueError(f"threshold dict misses key(s) {sorted(missing)}: {d}")
        return cls(float(d["value"]), str(d["method"]), str(d["split"]), dict(d.get("params") or {}))

    def predict(self, scores: Any) -> np.ndarray:
        """0/1 predictions (``score >= value``) as an int64 array of the scores' flat length."""
        return (as_1d_array(scores, "scores") >= self.value).astype(np.int64)


def as_threshold(threshold: float | Threshold | Mapping[str, Any] | None, split: str = "given") -> Threshold | None:
    """A :class:`Threshold` from a float (recorded as ``method="manual"``), a threshold dict, or a Threshold."""
    if threshold is None or isinstance(threshold, Threshold):
        return threshold
    if isinstance(threshold, Mapping):
        return Threshold.from_dict(dict(threshold))
    value = float(threshold)
    if not math.isfinite(value):
        raise ValueError(f"threshold must be finite, got {threshold}")
    return Threshold(value, "manual", split, {})


DERIVED = "derived"
"""The start of a volume rule made from the slice threshold (it follows a ``--threshold`` override)."""
SIMULATED = "simulated"
"""The start of a volume rule fitted on pseudo-volumes drawn from normal validation slice scores."""


@dataclass
class DecisionThresholds:
    """The thresholds that decide, at both levels, and where each came from: one object for every door.

    Args:
        slice: the slice threshold (a slice with score ``>= slice.value`` is anomalous), or ``None``.
        volume: the volume threshold (a scan with volume score ``>= volume`` is anomalous), or ``None``.
        volume_rule: how ``volume`` was made (fitted on normal validation volumes, or derived from the slice one).
        epoch: the training epoch of the model the thresholds were fitted for (``-1``: unknown).
        slice_source: ``"fitted"`` (on the validation split), ``"--threshold"`` (a user's override) ...
        volume_source: likewise, ``"--volume_threshold"`` for a user's override.

    Example:
        >>> t = DecisionThresholds(Threshold(0.3, "mean_std", "val"), 0.3, "derived: the slice threshold ...", 80)
        >>> t.decide(0.35), t.override(slice=0.5).volume, t.override(volume=0.2).decided_by()
        ('anomalous', 0.5, 'volume threshold 0.2 (--volume_threshold)')
    """

    slice: Threshold | None = None
    volume: float | None = None
    volume_rule: str = ""
    epoch: int = -1
    slice_source: str = "fitted"
    volume_source: str = "fitted"

    def decide(self, volume_score: float) -> str | None:
        """``"anomalous"`` / ``"normal"`` for a volume score, ``None`` without a volume threshold."""
        if self.volume is None:
            return None
        return "anomalous" if float(volume_score) >= self.volume else "normal"

    def decided_by(self) -> str:
        """One line naming the threshold that makes the scan-level verdict."""
        if self.volume is None:
            return "no volume threshold: scores only"
        how = self.volume_source if self.volume_source != "fitted" else (self.volume_rule or "fitted")
        return f"volume threshold {self.volume:.6g} ({how})"

    def override(self, slice: float | None = None, volume: float | None = None) -> DecisionThresholds:
        """A copy with a user's slice and/or volume threshold.

        A volume threshold derived from the slice threshold follows an overridden slice threshold; one fitted on
        normal volumes stays unless ``volume`` is given.
        """
        out = DecisionThresholds(**{k: getattr(self, k) for k in self.__dataclass_fields__})
        if slice is not None:
            out.slice = Threshold(float(slice), "manual", "given", {})
            out.slice_source = "--threshold"
            if out.volume_rule.startswith(DERIVED) and volume is None:
                out.volume = float(slice)
                out.volume_source = "--threshold (the volume rule applies the slice threshold)"
        if volume is not None:
            out.volume = float(volume)
            out.volume_source = "--volume_threshold"
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON form, written in scores.json and metrics.json."""
        return {
            "slice": None if self.slice is None else self.slice.to_dict(),
            "slice_source": self.slice_source,
            "volume": self.volume,
            "volume_rule": self.volume_rule,
            "volume_source": self.volume_source,
            "model_epoch": int(self.epoch),
            "decided_by": self.decided_by(),
        }


def _finite_best(thresholds: np.ndarray, objective: np.ndarray) -> int:
    """Index of the best objective among finite thresholds (the first one on ties)."""
    ok = np.isfinite(thresholds)
    idx = np.flatnonzero(ok)
    return int(idx[np.argmax(objective[ok])])


def fit_threshold(
    scores: Any,
    labels: Any = None,
    method: str = "mean_std",
    k: float = 3.0,
    q: float = 95.0,
    value: float | None = None,
    split: str = "val",
) -> Threshold:
    """Fit a decision threshold on validation scores.

    Label-free methods use the normal scores only (all scores when ``labels`` is None, else the label-0 ones):

    - ``"mean_std"``: ``mean + k * std`` (population std, ``ddof=0``);
    - ``"percentile"``: the ``q``-th percentile (:func:`numpy.percentile`).

    Labelled methods need normal (0) and anomalous (1) labels:

    - ``"youden"``: the ROC threshold maximising ``TPR - FPR``;
    - ``"equal_error"``: the ROC threshold where sensitivity and specificity are closest;
    - ``"f1_max"``: the precision-recall threshold with the highest F1.

    ``"manual"`` takes ``value`` as is.

    Args:
        scores: validation scores.
        labels: 0 / 1 labels per score (-1 unknown: excluded first by the caller); optional for label-free methods.
        method: one of :data:`THRESHOLD_METHODS`.
        k: ``"mean_std"`` multiplier.
        q: ``"percentile"`` percentile in ``[0, 100]``.
        value: ``"manual"`` threshold.
        split: the split the scores come from; recorded in the result.

    Returns:
        a :class:`Threshold` whose ``params`` record the method parameters and counts.

    Raises:
        ValueError: ``split == "test"``, unknown method, no normal scores, a labelled method without both classes,
            NaN/Inf scores, ``"manual"`` without ``value``.
    """
    if str(split).lower() == "test":
        raise ValueError("thresholds are never fitted on the test set: fit on validation normals (split='val')")
    if method not in THRESHOLD_METHODS:
        raise ValueError(f"method must be one of {THRESHOLD_METHODS}, got {method!r}")
    if method == "manual":
        if value is None or not np.isfinite(float(value)):
            raise ValueError(f"method 'manual' needs a finite value=..., got {value}")
        return Threshold(float(value), method, split, {})

    if method in LABEL_FREE_METHODS:
        s = as_1d_array(scores, "scores")
        check_finite(s, "scores")
        if labels is not None:
            lab = as_1d_array(labels, "labels")
            if lab.size != s.size:
                raise ValueError(f"labels and scores differ in length: {lab.size} labels, {s.size} scores")
            s = s[lab == 0]
        if s.size == 0:
            raise ValueError(f"method {method!r} needs normal scores, but there are none (no label 0)")
        if method == "mean_std":
            mean, std = float(s.mean()), float(s.std())
            return Threshold(mean + k * std, method, split, {"k": float(k), "mean": mean, "std": std, "n": s.size})
        if not 0 <= q <= 100:
            raise ValueError(f"q must be in [0, 100], got {q}")
        return Threshold(float(np.percentile(s, q)), method, split, {"q": float(q), "n": s.size})

    if labels is None:
        raise ValueError(f"method {method!r} needs labels (0 normal, 1 anomalous); use 'mean_std' or 'percentile'")
    lab, s = check_labels_scores(labels, scores, both_classes=False)
    n1 = int(lab.sum())
    n0 = int(lab.size - n1)
    if n1 == 0:
        raise ValueError(
            f"method {method!r} needs anomalous (label 1) validation samples, but all {lab.size} are normal; "
            "use a label-free method ('mean_std' or 'percentile') on normal scores instead"
        )
    if n0 == 0:
        raise ValueError(
            f"method {method!r} needs normal (label 0) validation samples, but all {lab.size} are anomalous"
        )
    params: dict[str, Any] = {"n_normal": n0, "n_anomalous": n1}
    if method in ("youden", "equal_error"):
        fpr, tpr, thr = roc_curve(lab, s, drop_intermediate=False)
        objective = tpr - fpr if method == "youden" else -np.abs(tpr - (1.0 - fpr))
        i = _finite_best(thr, objective)
        params.update({"sensitivity": float(tpr[i]), "specificity": float(1.0 - fpr[i])})
        return Threshold(float(thr[i]), method, split, params)
    precision, recall, thr = precision_recall_curve(lab, s)
    p, r = precision[:-1], recall[:-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(p + r > 0, 2 * p * r / (p + r), 0.0)
    i = _finite_best(thr, f1)
    params.update({"f1": float(f1[i]), "precision": float(p[i]), "recall": float(r[i])})
    return Threshold(float(thr[i]), method, split, params)
