"""AUCp: a pseudo-AUC for model selection without anomaly labels, and its de-biased AUC estimate.

Brainomaly (Siddiquee et al., WACV 2024) selects models with ``AUCp``: the AUROC of separating *known normal*
validation scans (class 0) from the *unannotated* mixed set (class 1), which needs no anomaly labels. If a share
``pi`` of the unannotated set is normal, those normals are indistinguishable from the known normals (expected AUC 0.5
against them), so ``E[AUCp] = (1 - pi) * AUC + pi * 0.5`` and the true AUC is ``(AUCp - 0.5 * pi) / (1 - pi)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from monai_anomaly.metrics.classification import as_1d_array, check_finite

__all__ = ["debiased_auc", "pseudo_auc"]


def pseudo_auc(normal_scores: Any, unannotated_scores: Any) -> float:
    """AUROC with known normals as class 0 and the unannotated (mixed) set as class 1.

    Args:
        normal_scores: scores of known-normal samples.
        unannotated_scores: scores of the unannotated mixed samples.

    Returns:
        AUCp in ``[0, 1]``.

    Raises:
        ValueError: an empty group or NaN/Inf scores.

    Example:
        >>> pseudo_auc([0.1, 0.2, 0.3, 0.4], [0.25, 0.8, 0.9, 1.0])
        0.875
    """
    n = as_1d_array(normal_scores, "normal scores")
    u = as_1d_array(unannotated_scores, "unannotated scores")
    if n.size == 0 or u.size == 0:
        raise ValueError(f"AUCp needs known-normal and unannotated scores; got {n.size} normal, {u.size} unannotated")
    check_finite(n, "normal scores")
    check_finite(u, "unannotated scores")
    labels = np.concatenate([np.zeros(n.size, dtype=np.int64), np.ones(u.size, dtype=np.int64)])
    return float(roc_auc_score(labels, np.concatenate([n, u])))


def debiased_auc(aucp: float, normal_fraction: float) -> float:
    """AUC estimate from AUCp when a share ``normal_fraction`` of the unannotated set is normal.

    ``AUC = (AUCp - 0.5 * pi) / (1 - pi)``, clipped to ``[0, 1]``.

    Args:
        aucp: the pseudo-AUC (:func:`pseudo_auc`).
        normal_fraction: ``pi``, share of normals in the unannotated set, in ``[0, 1)``.

    Raises:
        ValueError: ``pi`` outside ``[0, 1)`` or ``aucp`` outside ``[0, 1]``.

    Example:
        >>> debiased_auc(0.8, 0.5)
        1.0
        >>> round(debiased_auc(0.7, 0.25), 4)
        0.7667
    """
    pi = float(normal_fraction)
    a = float(aucp)
    if not 0.0 <= pi < 1.0:
        raise ValueError(
            f"normal_fraction must be in [0, 1) (an all-normal unannotated set carries no signal), got {pi}"
        )
    if not 0.0 <= a <= 1.0:
        raise ValueError(f"aucp must be in [0, 1], got {a}")
    return float(np.clip((a - 0.5 * pi) / (1.0 - pi), 0.0, 1.0))
