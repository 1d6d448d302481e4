"""Report figures: ROC and PR curves, score histograms and per-case panels.

Figures are drawn on :class:`matplotlib.figure.Figure` objects with the Agg canvas, never through ``pyplot``, so they
work headless, in threads and inside a running Ignite engine without touching global matplotlib state.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from monai_anomaly.metrics.classification import binary_metrics, pr_curve_points, roc_curve_points

__all__ = ["DPI", "FIGSIZE", "plot_panel", "plot_pr", "plot_roc", "plot_score_distribution", "to_2d"]

DPI = 100
FIGSIZE = (5.0, 4.0)


def _new_figure(figsize: tuple[float, float] = FIGSIZE) -> Figure:
    fig = Figure(figsize=figsize, dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | os.PathLike) -> str:
    path = os.fspath(path)
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    fig.savefig(path, dpi=DPI)  # no bbox_inches="tight": the PNG size is figsize * DPI
    return path


def to_2d(x: Any, name: str = "image") -> np.ndarray:
    """A 2D float array from a 2D array / tensor, or a ``(1, H, W)`` / ``(1, 1, H, W)`` one (singleton axes dropped).

    Raises:
        ValueError: the array is not 2D after dropping singleton axes.
    """
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().float().numpy()
    a = np.asarray(x, dtype=np.float64)
    while a.ndim > 2 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2D (or (1, H, W)), got shape {tuple(np.shape(x))}")
    return a


def plot_roc(
    labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray, path: str, title: str = "ROC"
) -> str:
    """Save the ROC curve of ``scores`` against 0/1 ``labels`` as a PNG, with the AUROC in the legend.

    Args:
        labels: 0 normal / 1 anomalous (both classes needed).
        scores: anomaly scores (higher = more anomalous).
        path: output PNG file.
        title: figure title.

    Returns:
        ``path``.

    Raises:
        ValueError: see :func:`monai_anomaly.metrics.classification.check_labels_scores`.
    """
    fpr, tpr, _ = roc_curve_points(labels, scores)
    auroc = binary_metrics(labels, scores)["auroc"]
    fig = _new_figure()
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(fpr, tpr, color="C0", lw=2, label=f"AUROC = {auroc:.3f}")
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--", label="chance")
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="False positive rate (1 - specificity)", ylabel="Sensitivity")
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return _save(fig, path)


def plot_pr(
    labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray, path: str, title: str = "PR"
) -> str:
    """Save the precision-recall curve as a PNG, with the average precision and the prevalence baseline.

    Args:
        labels: 0 normal / 1 anomalous (both classes needed).
        scores: anomaly scores.
        path: output PNG file.
        title: figure title.

    Returns:
        ``path``.
    """
    precision, recall, _ = pr_curve_points(labels, scores)
    m = binary_metrics(labels, scores)
    prevalence = m["n_anomalous"] / m["n"]
    fig = _new_figure()
    ax = fig.add_subplot(1, 1, 1)
    ax.step(recall, precision, where="post", color="C1", lw=2, label=f"AP = {m['auprc']:.3f}")
    ax.axhline(prevalence, color="grey", lw=1, ls="--", label=f"prevalence = {prevalence:.2f}")
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="Recall (sensitivity)", ylabel="Precision")
    ax.set_title(title)
    ax.legend(loc="lower left")
    fig.tight_layout()
    return _save(fig, path)


def plot_score_distribution(
    labels: Sequence[int] | np.ndarray | None,
    scores: Sequence[float] | np.ndarray,
    path: str,
    threshold: float | None = None,
    title: str = "Score distribution",
    bins: int = 30,
) -> str:
    """Save overlaid histograms of normal (0), anomalous (1) and unlabelled (-1) scores with the threshold line.

    Args:
        labels: label per score (0, 1 or -1 unknown); ``None`` when no labels exist (all drawn as "unlabelled").
        scores: anomaly scores.
        path: output PNG file.
        threshold: decision threshold drawn as a vertical line (optional).
        title: figure title.
        bins: histogram bins (shared by all groups).

    Returns:
        ``path``.

    Raises:
        ValueError: lengths differ, or no finite score.
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    lab = np.full(s.shape, -1, dtype=np.int64) if labels is None else np.asarray(labels).reshape(-1).astype(np.int64)
    if lab.size != s.size:
        raise ValueError(f"labels and scores differ in length: {lab.size} labels, {s.size} scores")
    ok = np.isfinite(s)
    if not ok.any():
        raise ValueError("no finite score to plot")
    s, lab = s[ok], lab[ok]
    lo, hi = float(s.min()), float(s.max())
    if threshold is not None and np.isfinite(threshold):
        lo, hi = min(lo, float(threshold)), max(hi, float(threshold))
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, bins + 1)
    fig = _new_figure()
    ax = fig.add_subplot(1, 1, 1)
    for value, name, color in ((0, "normal", "C0"), (1, "anomalous", "C3"), (-1, "unlabelled", "grey")):
        g = s[lab == value]
        if g.size:
            ax.hist(g, bins=edges, alpha=0.55, color=color, label=f"{name} (n={g.size})")
    if threshold is not None:
        ax.axvline(float(threshold), color="k", ls="--", lw=1.5, label=f"threshold = {float(threshold):.4g}")
    ax.set(xlabel="Anomaly score", ylabel="Count")
    ax.set_title(title)
    ax.legend(loc="upper right")
    fig.tight_layout()
    return _save(fig, path)


def plot_panel(
    image: Any,
    reconstruction: Any | None,
    anomaly_map: Any,
    path: str,
    title: str = "",
    alpha: float = 0.5,
) -> str:
    """Save a panel: the image, its reconstruction (if any), ``|image - reconstruction|`` and the map over the image.

    Args:
        image: 2D image (or ``(1, H, W)``).
        reconstruction: 2D reconstruction of the same shape, or ``None`` for map-only methods (then the reconstruction
            and difference columns are left out).
        anomaly_map: 2D anomaly map of the same shape.
        path: output PNG file.
        title: figure title (e.g. the file and its score).
        alpha: opacity of the heatmap overlay.

    Returns:
        ``path``.

    Raises:
        ValueError: inputs that are not 2D or differ in shape.
    """
    img = to_2d(image, "image")
    amap = to_2d(anomaly_map, "anomaly_map")
    rec = None if reconstruction is None else to_2d(reconstruction, "reconstruction")
    for name, a in (("anomaly_map", amap), ("reconstruction", rec)):
        if a is not None and a.shape != img.shape:
            raise ValueError(f"{name} shape {a.shape} differs from the image shape {img.shape}")
    columns: list[tuple[str, np.ndarray, str]] = [("Image", img, "gray")]
    if rec is not None:
        columns += [("Reconstruction", rec, "gray"), ("|Image - Reconstruction|", np.abs(img - rec), "magma")]
    n = len(columns) + 1
    fig = _new_figure((3.0 * n, 3.4))
    vmin, vmax = float(np.nanmin(img)), float(np.nanmax(img))
    for i, (name, a, cmap) in enumerate(columns):
        ax = fig.add_subplot(1, n, i + 1)
        kw = {"vmin": vmin, "vmax": vmax} if cmap == "gray" else {}
        ax.imshow(a, cmap=cmap, **kw)
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    ax = fig.add_subplot(1, n, n)
    ax.imshow(img, cmap="gray", vmin=vmin, vmax=vmax)
    im = ax.imshow(amap, cmap="jet", alpha=alpha)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_title("Anomaly map", fontsize=9)
    ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)
