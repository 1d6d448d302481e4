"""Shortcut and confound checks of the data audit: per-class statistics and the shortcut classifier.

:func:`class_statistics` summarizes the per-file statistics per label and per class folder;
:func:`shortcut_auroc` measures how well a trivial classifier separates normal from abnormal files using those
statistics alone (no anatomy), cross-validated, plus each feature's own AUROC.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "FEATURES_2D",
    "FEATURES_3D",
    "FILE_FEATURES",
    "LABEL_NAMES",
    "SHORTCUT_WARNING",
    "class_statistics",
    "finite_values",
    "shortcut_auroc",
]

# features a shortcut classifier may use; the ones missing for some labelled file are dropped
FEATURES_2D = (
    "width",
    "height",
    "aspect",
    "is_rgb",
    "is_jpeg",
    "jpeg_quality",
    "bytes_per_pixel",
    "chroma",
    "brightness",
    "contrast",
    "foreground",
    "hf_energy",
)
FEATURES_3D = (
    "size_x",
    "size_y",
    "size_z",
    "spacing_x",
    "spacing_y",
    "spacing_z",
    "is_float",
    "bytes_per_pixel",
    "p01",
    "p50",
    "p99",
    "fg_median",
    "brightness",
    "contrast",
    "foreground",
    "hf_energy",
)
# the subset that describes the file and the acquisition, not the picture's intensities
FILE_FEATURES = (
    "width",
    "height",
    "aspect",
    "is_rgb",
    "is_jpeg",
    "jpeg_quality",
    "bytes_per_pixel",
    "chroma",
    "size_x",
    "size_y",
    "size_z",
    "spacing_x",
    "spacing_y",
    "spacing_z",
    "is_float",
)
LABEL_NAMES = {0: "normal", 1: "abnormal", -1: "unlabelled"}
_SHORTCUT_MODELS = ("logistic_regression", "random_forest")
SHORTCUT_WARNING = (
    "classes are separable without looking at anatomy: a detector's AUROC on this set may measure the source, "
    "not the disease"
)


def finite_values(values: Sequence[Any]) -> np.ndarray:
    arr = np.asarray([v for v in values if v is not None], dtype=np.float64)
    return arr[np.isfinite(arr)]


def _mean_std(values: Sequence[Any]) -> tuple[float | None, float | None]:
    a = finite_values(values)
    return (float(a.mean()), float(a.std())) if a.size else (None, None)


def _median(values: Sequence[Any]) -> float | None:
    a = finite_values(values)
    return float(np.median(a)) if a.size else None


def class_statistics(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row of summary statistics per label (normal / abnormal / unlabelled) and per class folder within a label.

    Returns:
        rows with ``name``, ``label``, ``n`` and, for 2D files, ``width``/``height`` (min, median, max), ``modes``,
        ``formats`` (counts), ``jpeg_quality_median``; for volumes ``shapes``, ``spacings``, ``dtypes`` (counts),
        ``p99_median``; for both ``brightness``, ``contrast``, ``foreground``, ``hf_energy``, ``chroma`` (mean, std) and
        ``bytes_per_pixel_median``.
    """
    by_label: dict[int, list[Mapping]] = defaultdict(list)
    for r in records:
        by_label[int(r["label"])].append(r)
    rows: list[dict[str, Any]] = []

    def row(name: str, label: int, rs: Sequence[Mapping]) -> dict[str, Any]:
        out: dict[str, Any] = {"name": name, "label": label, "n": len(rs)}
        r2 = [r for r in rs if r.get("kind") == "2d"]
        r3 = [r for r in rs if r.get("kind") == "3d"]
        if r2:
            for k in ("width", "height"):
                a = finite_values([r[k] for r in r2])
                out[k] = [float(a.min()), float(np.median(a)), float(a.max())]
            out["modes"] = dict(Counter(r["mode"] for r in r2).most_common())
            out["formats"] = dict(Counter(r["format"] for r in r2).most_common())
            out["n_jpeg"] = sum(1 for r in r2 if r.get("jpeg_quality") is not None)
            out["jpeg_quality_median"] = _median([r.get("jpeg_quality") for r in r2])
        if r3:
            out["shapes"] = dict(Counter(r["shape"] for r in r3).most_common())
            out["spacings"] = dict(Counter(r["spacing"] for r in r3).most_common())
            out["dtypes"] = dict(Counter(r["dtype"] for r in r3).most_common())
            out["p99_median"] = _median([r.get("p99") for r in r3])
        for k in ("brightness", "contrast", "foreground", "hf_energy", "chroma"):
            out[k] = list(_mean_std([r.get(k) for r in rs]))
        out["bytes_per_pixel_median"] = _median([r.get("bytes_per_pixel") for r in rs])
        return out

    for label in sorted(by_label, key=lambda v: (v < 0, v)):
        rs = by_label[label]
        rows.append(row(LABEL_NAMES.get(label, str(label)), label, rs))
        by_cls: dict[str, list[Mapping]] = defaultdict(list)
        for r in rs:
            by_cls[str(r.get("cls", ""))].append(r)
        if len(by_cls) > 1:
            for cls in sorted(by_cls):
                rows.append(row(f"{LABEL_NAMES.get(label, str(label))}: {cls}", label, by_cls[cls]))
    return rows


def _feature_matrix(records: Sequence[Mapping[str, Any]], features: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """The features present (finite) for every record; ``jpeg_quality`` of non-JPEG files counts as 100."""
    cols, names = [], []
    for f in features:
        vals = []
        for r in records:
            v = r.get(f)
            if f == "jpeg_quality" and v is None and r.get("kind") == "2d":
                v = 100.0  # lossless
            vals.append(np.nan if v is None else float(v))
        a = np.asarray(vals, dtype=np.float64)
        if a.size and np.isfinite(a).all():
            cols.append(a)
            names.append(f)
    if not cols:
        return np.zeros((len(records), 0)), []
    return np.stack(cols, axis=1), names


def shortcut_auroc(
    records: Sequence[Mapping[str, Any]],
    groups: Sequence[Any] | None = None,
    features: Sequence[str] | None = None,
    n_splits: int = 5,
    seed: int = 0,
    warn_auroc: float = 0.8,
) -> dict[str, Any]:
    """How well acquisition statistics alone separate normal (label 0) from abnormal (label 1) files.

    A logistic regression (on standardized features) and a random forest are trained and tested with
    :class:`~sklearn.model_selection.StratifiedGroupKFold` (near-duplicate groups never straddle a fold), and their
    mean test AUROC is reported; each feature's own AUROC is reported as ``max(a, 1 - a)`` with the direction.

    Args:
        records: per-file statistics with ``label``; files labelled -1 are ignored.
        groups: a group id per record (e.g. the near-duplicate component); default: one group per file.
        features: feature names to use (default :data:`FEATURES_2D` + :data:`FEATURES_3D`, those present in every
            labelled record).
        n_splits: folds (fewer when a class has fewer groups); at least 2 are needed.
        seed: fold shuffling and forest seed.
        warn_auroc: the AUROC at or above which ``warning`` is set.

    Returns:
        ``{"computable", "reason", "n", "n_normal", "n_abnormal", "n_splits", "features", "models": {name: {"mean",
        "std", "folds"}}, "auroc" (best model mean), "best_model", "single_feature": [{"feature", "auroc", "raw_auroc",
        "direction"}, ...] (highest first), "warning"}``.

    Example:
        >>> recs = [{"label": i % 2, "width": 100 + 50 * (i % 2) + i % 7, "kind": "2d"} for i in range(40)]
        >>> shortcut_auroc(recs, features=["width"])["auroc"] > 0.9
        True
    """
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedGroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    idx = [i for i, r in enumerate(records) if int(r["label"]) in (0, 1)]
    recs = [records[i] for i in idx]
    y = np.asarray([int(r["label"]) for r in recs])
    grp = np.asarray([str(groups[i]) for i in idx] if groups is not None else [str(i) for i in idx])
    feats = list(features) if features is not None else list(dict.fromkeys(FEATURES_2D + FEATURES_3D))
    X, names = _feature_matrix(recs, feats)
    out: dict[str, Any] = {
        "computable": False,
        "reason": "",
        "n": len(recs),
        "n_normal": int((y == 0).sum()),
        "n_abnormal": int((y == 1).sum()),
        "n_splits": 0,
        "features": names,
        "models": {},
        "auroc": None,
        "best_model": None,
        "single_feature": [],
        "warning": False,
    }
    if out["n_normal"] == 0 or out["n_abnormal"] == 0:
        out["reason"] = "only one class present (needs normal and abnormal files)"
        return out
    if not names:
        out["reason"] = "no feature is available for every file"
        return out
    single = []
    for k, name in enumerate(names):
        col = X[:, k]
        raw = 0.5 if np.ptp(col) == 0 else float(roc_auc_score(y, col))
        direction = "constant" if np.ptp(col) == 0 else ("higher in abnormal" if raw >= 0.5 else "lower in abnormal")
        single.append({"feature": name, "auroc": max(raw, 1.0 - raw), "raw_auroc": raw, "direction": direction})
    single.sort(key=lambda d: (-d["auroc"], d["feature"]))
    out["single_feature"] = single
    groups_per_class = min(len(set(grp[y == 0])), len(set(grp[y == 1])))
    k = min(int(n_splits), groups_per_class)
    if k < 2:
        out["reason"] = f"too few independent groups per class ({groups_per_class}) for cross-validation"
        return out
    out["n_splits"] = k
    cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    models = {
        "logistic_regression": lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
        "random_forest": lambda: RandomForestClassifier(
            n_estimators=100, min_samples_leaf=2, random_state=seed, n_jobs=1
        ),
    }
    for name, make in models.items():
        folds = []
        for tr, te in cv.split(X, y, grp):
            if len(set(y[tr])) < 2 or len(set(y[te])) < 2:
                continue
            clf = make().fit(X[tr], y[tr])
            folds.append(float(roc_auc_score(y[te], clf.predict_proba(X[te])[:, 1])))
        if folds:
            out["models"][name] = {"mean": float(np.mean(folds)), "std": float(np.std(folds)), "folds": folds}
    if not out["models"]:
        out["reason"] = "no fold had both classes in its test part"
        return out
    best = max(out["models"], key=lambda m: out["models"][m]["mean"])
    out.update(computable=True, auroc=out["models"][best]["mean"], best_model=best)
    out["warning"] = bool(out["auroc"] >= warn_auroc)
    return out
