"""Score statistics of a report: separation of normal and anomalous scores, and the metrics of one level.

Pure numeric code (no files): :func:`monai_anomaly.reports.writer.write_report` stores what these return in
``metrics.json``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from monai_anomaly.metrics.classification import binary_metrics

__all__ = ["level_metrics", "score_separation"]


def score_separation(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray) -> dict[str, Any]:
    """Means, standard deviations and Cohen's d between normal (0) and anomalous (1) scores (-1 ignored).

    Cohen's d uses the pooled sample standard deviation (``ddof=1``); it is ``None`` unless both groups have at least
    two samples and a non-zero pooled spread.

    Example:
        >>> round(score_separation([0, 0, 1, 1], [0.0, 2.0, 4.0, 6.0])["cohens_d"], 4)
        2.8284
    """
    lab = np.asarray(labels).reshape(-1).astype(np.int64)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    ok = np.isfinite(s)
    n0, n1 = s[(lab == 0) & ok], s[(lab == 1) & ok]
    out: dict[str, Any] = {"n_normal": int(n0.size), "n_anomalous": int(n1.size)}
    for name, g in (("normal", n0), ("anomalous", n1)):
        out[f"mean_{name}"] = float(g.mean()) if g.size else None
        out[f"std_{name}"] = float(g.std(ddof=1)) if g.size > 1 else None
    d = None
    if n0.size > 1 and n1.size > 1:
        pooled = math.sqrt(((n0.size - 1) * n0.var(ddof=1) + (n1.size - 1) * n1.var(ddof=1)) / (n0.size + n1.size - 2))
        if pooled > 0:
            d = float((n1.mean() - n0.mean()) / pooled)
    out["cohens_d"] = d
    return out


def level_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float | None, what: str) -> dict[str, Any]:
    """Metrics of one level (slices or volumes), or the reason they were skipped."""
    finite = np.isfinite(scores)
    known = (labels == 0) | (labels == 1)
    use = known & finite
    out: dict[str, Any] = {
        "n": int(labels.size),
        "n_labelled": int(known.sum()),
        "n_unlabelled": int((~known).sum()),
        "n_nonfinite": int((~finite).sum()),
        "metrics": None,
        "skipped_reason": None,
    }
    if threshold is not None:
        out["n_predicted_anomalous"] = int((scores[finite] >= threshold).sum())
    n0, n1 = int((labels[use] == 0).sum()), int((labels[use] == 1).sum())
    if n0 + n1 == 0:
        out["skipped_reason"] = f"no labelled {what} (labels are unknown, e.g. an inference-only run)"
    elif n0 == 0 or n1 == 0:
        only = "anomalous (1)" if n0 == 0 else "normal (0)"
        out["skipped_reason"] = (
            f"all {n0 + n1} labelled {what} are {only}: AUROC/AUPRC and threshold metrics need both classes"
        )
    else:
        out["metrics"] = binary_metrics(labels[use], scores[use], threshold=threshold)
    return out
