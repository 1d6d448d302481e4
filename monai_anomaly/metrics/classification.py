"""Image / volume level classification metrics (AUROC, AUPRC, metrics at a threshold) on top of scikit-learn."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_curve,
    precision_score,
    roc_auc_score,
    roc_curve,
)

__all__ = [
    "as_1d_array",
    "binary_metrics",
    "check_finite",
    "check_labels_scores",
    "pr_curve_points",
    "roc_curve_points",
]


def as_1d_array(x: Any, name: str = "scores", dtype: Any = np.float64) -> np.ndarray:
    """A flat numpy array from a list, numpy array or (Meta)Tensor.

    Args:
        x: the values.
        name: what they are, for error messages.
        dtype: target dtype.

    Raises:
        ValueError: ``x`` is ``None`` or cannot be converted.
    """
    if x is None:
        raise ValueError(f"{name} is None")
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    try:
        return np.asarray(x, dtype=dtype).reshape(-1)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} cannot be read as numbers: {e}") from e


def check_finite(s: np.ndarray, name: str) -> None:
    """Raise ``ValueError`` naming how many values of ``s`` are NaN/Inf and where."""
    bad = np.flatnonzero(~np.isfinite(s))
    if bad.size:
        more = "" if bad.size <= 10 else f" (first 10 of {bad.size})"
        raise ValueError(f"{name} contain {bad.size} NaN/Inf value(s) at indices {bad[:10].tolist()}{more}")


def check_labels_scores(labels: Any, scores: Any, both_classes: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Validate binary labels and scores and return them as numpy arrays (int64 labels, float64 scores).

    Args:
        labels: 0 normal / 1 anomalous per sample.
        scores: anomaly score per sample (higher = more anomalous).
        both_classes: require at least one sample of each class.

    Raises:
        ValueError: empty input, length mismatch, NaN/Inf scores (count and indices), labels outside {0, 1} (-1
            "unknown" labels must be removed by the caller), or a single class when ``both_classes``.
    """
    s = as_1d_array(scores, "scores")
    raw = as_1d_array(labels, "labels")
    if s.size != raw.size:
        raise ValueError(f"labels and scores differ in length: {raw.size} labels, {s.size} scores")
    if s.size == 0:
        raise ValueError("no samples: labels and scores are empty")
    check_finite(s, "scores")
    check_finite(raw, "labels")
    bad = np.flatnonzero((raw != 0) & (raw != 1))
    if bad.size:
        vals = sorted({float(v) for v in raw[bad]})
        hint = " (label -1 means unknown: exclude those samples before computing metrics)" if -1.0 in vals else ""
        raise ValueError(
            f"labels must be 0 (normal) or 1 (anomalous); found {vals} at {bad.size} position(s), "
            f"first indices {bad[:10].tolist()}{hint}"
        )
    lab = raw.astype(np.int64)
    if both_classes:
        n1 = int(lab.sum())
        if n1 == 0 or n1 == lab.size:
            only = "anomalous (1)" if n1 else "normal (0)"
            raise ValueError(
                f"AUROC/AUPRC need both classes, but all {lab.size} labels are {only}; "
                "evaluate on a set with normal and anomalous samples"
            )
    return lab, s


def binary_metrics(
    labels: Any, scores: Any, threshold: float | None = None, require_both_classes: bool = True
) -> dict[str, Any]:
    """AUROC, AUPRC and, at a threshold, the confusion-matrix metrics (prediction = ``score >= threshold``).

    Args:
        labels: 0 normal / 1 anomalous per sample (-1 unknown must be excluded first).
        scores: anomaly score per sample, higher = more anomalous.
        threshold: decision threshold; adds "threshold", "sensitivity", "specificity", "precision", "f1",
            "accuracy", "balanced_accuracy" and "confusion_matrix" (``[[tn, fp], [fn, tp]]``).
        require_both_classes: when False, a one-class set gives ``nan`` AUROC/AUPRC instead of an error (the
            threshold metrics are still computed; undefined ratios are ``nan``).

    Returns:
        dict with "auroc", "auprc" (average precision, as :func:`sklearn.metrics.average_precision_score`), "n",
        "n_normal", "n_anomalous" and the threshold metrics when asked. Values are python floats / ints.

    Raises:
        ValueError: see :func:`check_labels_scores`.

    Example:
        >>> m = binary_metrics([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], threshold=0.3)
        >>> m["auroc"], m["confusion_matrix"]
        (0.75, [[1, 1], [0, 2]])
    """
    lab, s = check_labels_scores(labels, scores, both_classes=require_both_classes)
    n1 = int(lab.sum())
    both = 0 < n1 < lab.size
    out: dict[str, Any] = {
        "auroc": float(roc_auc_score(lab, s)) if both else float("nan"),
        "auprc": float(average_precision_score(lab, s)) if both else float("nan"),
        "n": int(lab.size),
        "n_normal": int(lab.size - n1),
        "n_anomalous": n1,
    }
    if threshold is None:
        return out
    thr = float(threshold)
    if not np.isfinite(thr):
        raise ValueError(f"threshold must be finite, got {threshold}")
    pred = (s >= thr).astype(np.int64)
    (tn, fp), (fn, tp) = confusion_matrix(lab, pred, labels=[0, 1]).tolist()
    sens = tp / (tp + fn) if tp + fn else float("nan")
    spec = tn / (tn + fp) if tn + fp else float("nan")
    out.update(
        {
            "threshold": thr,
            "sensitivity": float(sens),
            "specificity": float(spec),
            "precision": float(precision_score(lab, pred, zero_division=0)),
            "f1": float(f1_score(lab, pred, zero_division=0)),
            "accuracy": float(accuracy_score(lab, pred)),
            "balanced_accuracy": float(balanced_accuracy_score(lab, pred)) if both else float("nan"),
            "confusion_matrix": [[int(tn), int(fp)], [int(fn), int(tp)]],
        }
    )
    return out


def roc_curve_points(labels: Any, scores: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve for plots: ``(fpr, tpr, thresholds)`` from :func:`sklearn.metrics.roc_curve` (validated input)."""
    lab, s = check_labels_scores(labels, scores)
    fpr, tpr, thr = roc_curve(lab, s)
    return np.asarray(fpr), np.asarray(tpr), np.asarray(thr)


def pr_curve_points(labels: Any, scores: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision-recall curve for plots: ``(precision, recall, thresholds)`` from
    :func:`sklearn.metrics.precision_recall_curve` (validated input)."""
    lab, s = check_labels_scores(labels, scores)
    p, r, thr = precision_recall_curve(lab, s)
    return np.asarray(p), np.asarray(r), np.asarray(thr)
