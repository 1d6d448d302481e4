"""Report figures: ROC and PR curves, score histograms, confusion matrices, training curves and per-case panels.

Figures are drawn on :class:`matplotlib.figure.Figure` objects with the Agg canvas, never through ``pyplot``, so they
work headless, in threads and inside a running Ignite engine without touching global matplotlib state.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from monai_anomaly.metrics.classification import binary_metrics, pr_curve_points, roc_curve_points

__all__ = [
    "DPI",
    "FIGSIZE",
    "plot_confusion_matrix",
    "plot_panel",
    "plot_pr",
    "plot_roc",
    "plot_score_distribution",
    "plot_training_curves",
    "to_2d",
    "training_curve_tags",
]

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


def _as_confusion(matrix: Any, name: str) -> np.ndarray:
    """A 2x2 array of non-negative counts ``[[tn, fp], [fn, tp]]``."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (2, 2) or not np.all(np.isfinite(m)) or (m < 0).any() or np.any(m != np.round(m)):
        raise ValueError(f"{name} must be 2x2 non-negative counts [[tn, fp], [fn, tp]], got {np.asarray(matrix)!r}")
    return m.astype(np.int64)


def _draw_confusion(fig: Figure, ax: Any, m: np.ndarray, title: str) -> None:
    rows = m.sum(axis=1, keepdims=True)
    frac = np.divide(m, rows, out=np.zeros(m.shape, dtype=np.float64), where=rows > 0)
    im = ax.imshow(frac, cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(2):
        for j in range(2):
            pct = f"{100.0 * frac[i, j]:.1f} %" if rows[i, 0] > 0 else "n/a"
            ax.text(
                j,
                i,
                f"{m[i, j]}\n({pct})",
                ha="center",
                va="center",
                fontsize=11,
                color="white" if frac[i, j] > 0.5 else "black",
            )
    ax.set_xticks([0, 1], labels=["normal", "anomalous"])
    ax.set_yticks([0, 1], labels=[f"normal\n(n={rows[0, 0]})", f"anomalous\n(n={rows[1, 0]})"])
    ax.set(xlabel="predicted", ylabel="true")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class (row)")


def plot_confusion_matrix(
    matrix: Sequence[Sequence[int]] | np.ndarray | None,
    path: str,
    title: str = "Slice level",
    volume_matrix: Sequence[Sequence[int]] | np.ndarray | None = None,
    volume_title: str = "Volume level",
    suptitle: str = "Confusion matrix",
) -> str | None:
    """Save the 2x2 confusion matrix (counts and row percentages) of the slice level and, if given, the volume level.

    Rows are the true class, columns the predicted one (normal / anomalous); each cell shows its count and its share
    of the true class (the row): the lower right cell's share is the sensitivity, the upper left one's the
    specificity. Nothing is written when neither matrix is given (no threshold, unlabelled data or one class only).

    Args:
        matrix: slice-level ``[[tn, fp], [fn, tp]]``, as :func:`~monai_anomaly.metrics.classification.binary_metrics`
            gives in ``confusion_matrix``; ``None`` when that level has none.
        path: output PNG file.
        title: title of the slice panel (e.g. the threshold and its rule).
        volume_matrix: volume-level ``[[tn, fp], [fn, tp]]`` drawn in a second panel, or ``None``.
        volume_title: title of the volume panel.
        suptitle: title of the figure.

    Returns:
        ``path``, or ``None`` when no matrix was given (no file written).

    Raises:
        ValueError: a matrix that is not 2x2 non-negative counts.

    Example:
        >>> import tempfile, os
        >>> p = plot_confusion_matrix([[8, 2], [1, 9]], os.path.join(tempfile.mkdtemp(), "cm.png"))
        >>> os.path.basename(p)
        'cm.png'
        >>> plot_confusion_matrix(None, os.path.join(tempfile.mkdtemp(), "cm.png")) is None
        True
    """
    given = ((matrix, title, "matrix"), (volume_matrix, volume_title, "volume_matrix"))
    panels = [(_as_confusion(m, name), t) for m, t, name in given if m is not None]
    if not panels:
        return None
    fig = _new_figure((FIGSIZE[0] * len(panels), FIGSIZE[1]))
    for k, (m, t) in enumerate(panels):
        _draw_confusion(fig, fig.add_subplot(1, len(panels), k + 1), m, t)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def training_curve_tags(tags: Sequence[str]) -> dict[str, list[str]]:
    """Sort logged scalar tags into the groups :func:`plot_training_curves` draws.

    - ``"train_loss"``: losses of the training iterations (``train_loss``, a GAN's ``loss`` / ``critic_loss`` ...):
      a tag with ``loss`` in its name that does not start with ``val``;
    - ``"val_loss"``: validation losses (``val_normal_loss``): ``val...`` tags with ``loss`` in the name;
    - ``"val_auroc"``: validation AUROCs (``slice_auroc``, ``volume_auroc``, ``val_mixed_auroc``, ``val_aucp``).

    Tags of a report (``report/...``) and other scalars (thresholds, score means) are left out.

    Example:
        >>> training_curve_tags(["train_loss", "val_normal_loss", "slice_auroc", "val_threshold", "report/slice_auroc"])
        {'train_loss': ['train_loss'], 'val_loss': ['val_normal_loss'], 'val_auroc': ['slice_auroc']}
    """
    out: dict[str, list[str]] = {"train_loss": [], "val_loss": [], "val_auroc": []}
    for tag in tags:
        low = tag.lower()
        if "/" in low and low.split("/", 1)[0] == "report":
            continue
        if "loss" in low:
            out["val_loss" if low.startswith("val") else "train_loss"].append(tag)
        elif "auroc" in low or "aucp" in low:
            out["val_auroc"].append(tag)
    return out


def _finite_xy(points: Sequence[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    a = a[np.isfinite(a).all(axis=1)]
    return a[:, 0], a[:, 1]


def plot_training_curves(
    scalars: Mapping[str, Sequence[tuple[float, float]]], path: str, title: str = "Training curves"
) -> str | None:
    """Save the training loss per iteration and the validation curves per epoch, from a run's logged scalars.

    The left panel has the training losses (x: iteration, as the trainer logs them), the right one the validation
    losses (left axis) and AUROCs (right axis, 0-1) per epoch; a panel without data is left out, and nothing is
    written when neither has any (:func:`training_curve_tags` says which tags are drawn).

    Args:
        scalars: ``{tag: [(step, value), ...]}``, e.g. from
            :func:`~monai_anomaly.reports.training_logs.read_training_scalars`.
        path: output PNG file.
        title: figure title.

    Returns:
        ``path``, or ``None`` when no training or validation curve was found (no file written).

    Example:
        >>> import tempfile, os
        >>> curves = {"train_loss": [(1, 0.3), (2, 0.2), (3, 0.15)], "val_normal_loss": [(1, 0.25), (2, 0.2)]}
        >>> os.path.basename(plot_training_curves(curves, os.path.join(tempfile.mkdtemp(), "tc.png")))
        'tc.png'
    """
    groups = training_curve_tags(sorted(scalars))
    series = {tag: _finite_xy(scalars[tag]) for tags in groups.values() for tag in tags}
    series = {tag: xy for tag, xy in series.items() if xy[0].size}
    train = [t for t in groups["train_loss"] if t in series]
    val = [t for t in groups["val_loss"] + groups["val_auroc"] if t in series]
    n = int(bool(train)) + int(bool(val))
    if n == 0:
        return None
    fig = _new_figure((FIGSIZE[0] * n, FIGSIZE[1]))
    k = 1
    if train:
        ax = fig.add_subplot(1, n, k)
        k += 1
        for i, tag in enumerate(train):
            x, y = series[tag]
            ax.plot(x, y, color=f"C{i}", lw=1.2, marker="o" if x.size <= 30 else None, ms=3, label=tag)
        ax.set(xlabel="Iteration", ylabel="Loss")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title("Training loss", fontsize=9)
        ax.legend(loc="upper right", fontsize=8)
    if val:
        ax = fig.add_subplot(1, n, k)
        handles = []
        losses = [t for t in groups["val_loss"] if t in series]
        aurocs = [t for t in groups["val_auroc"] if t in series]
        for i, tag in enumerate(losses):
            x, y = series[tag]
            handles += ax.plot(x, y, color=f"C{i + 1}", lw=1.5, marker="o", ms=4, label=tag)
        ax.set(xlabel="Epoch", ylabel="Validation loss" if losses else "")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if aurocs:
            ax2 = ax.twinx() if losses else ax
            for i, tag in enumerate(aurocs):
                x, y = series[tag]
                handles += ax2.plot(x, y, color=f"C{i + 4}", lw=1.5, ls="--", marker="s", ms=4, label=tag)
            ax2.set_ylim(0.0, 1.02)
            ax2.set_ylabel("AUROC")
        ax.set_title("Validation", fontsize=9)
        ax.legend(handles=handles, loc="best", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
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


def most_anomalous_slices(anomaly_map: Any, window: int = 5) -> tuple[int, int, int]:
    """For a 3D map ``(H, W, D)``: the voxel where the map's local mean (a ``window``-voxel cube) peaks, i.e. the
    three planes through the strongest compact anomaly (a single bright voxel or a wide faint area rank lower).

    Example:
        >>> m = np.zeros((9, 10, 11)); m[1:4, 5:8, 2:5] = 1.0; m[8, 0, 10] = 3.0
        >>> most_anomalous_slices(m, window=3)
        (2, 6, 3)
    """
    m = np.nan_to_num(np.asarray(anomaly_map, dtype=np.float32))
    if m.ndim != 3:
        raise ValueError(f"anomaly_map must be 3D (H, W, D), got shape {m.shape}")
    t = torch.from_numpy(m)[None, None]
    k = max(1, int(window))
    local = torch.nn.functional.avg_pool3d(t, k, stride=1, padding=k // 2, count_include_pad=True)[0, 0]
    local = local[: m.shape[0], : m.shape[1], : m.shape[2]]
    flat = int(torch.argmax(local))
    return tuple(int(i) for i in np.unravel_index(flat, m.shape))


def plot_orthogonal_panels(
    image: Any,
    anomaly_map: Any,
    path: str,
    title: str = "",
    alpha: float = 0.5,
    max_side: float = 2.6,
    spacing: Sequence[float] | None = None,
) -> str:
    """Save the most anomalous slice of a volume in its three orientations, the map over the image (one PNG a row
    of three), for a quick look without a viewer.

    The planes pass through :func:`most_anomalous_slices` of the map; each plane is drawn transposed with its origin
    at the bottom (for a RAS-oriented volume: axial with anterior up, coronal and sagittal with superior up), at the
    voxels' aspect ratio, with the map on a colour scale shared by the three panels.

    Args:
        image: 3D volume ``(H, W, D)`` (or ``(1, H, W, D)``) on the map's grid.
        anomaly_map: 3D map of the same shape.
        path: output PNG file.
        title: figure title (the scan and its score).
        alpha: opacity of the map.
        max_side: size of a panel in inches (thumbnails: small files).
        spacing: voxel size along the three axes (mm), for the panels' aspect ratio; ``None``: isotropic.

    Returns:
        ``path``.

    Raises:
        ValueError: inputs that are not 3D or differ in shape.
    """
    img = np.asarray(image.detach().cpu() if isinstance(image, torch.Tensor) else image, dtype=np.float32)
    amap = np.asarray(
        anomaly_map.detach().cpu() if isinstance(anomaly_map, torch.Tensor) else anomaly_map, dtype=np.float32
    )
    img, amap = (
        (img[0] if img.ndim == 4 and img.shape[0] == 1 else img),
        (amap[0] if amap.ndim == 4 and amap.shape[0] == 1 else amap),
    )
    if img.ndim != 3 or amap.shape != img.shape:
        raise ValueError(f"image {img.shape} and anomaly_map {amap.shape} must be 3D and of the same shape")
    idx = most_anomalous_slices(amap)
    sp = np.ones(3) if spacing is None else np.asarray([abs(float(v)) or 1.0 for v in spacing][:3], dtype=np.float64)
    vmin, vmax = float(np.nanmin(img)), float(np.nanmax(img))
    mmax = float(np.nanmax(amap)) if np.isfinite(amap).any() else 1.0
    fig = _new_figure((3 * max_side + 0.6, max_side + 0.5))
    im = None
    for axis in range(3):
        ax = fig.add_subplot(1, 3, axis + 1)
        sl = [slice(None)] * 3
        sl[axis] = idx[axis]
        rows, cols = [a for a in range(3) if a != axis][::-1]  # transposed: the second remaining axis runs up
        aspect = float(sp[rows] / sp[cols])
        ax.imshow(img[tuple(sl)].T, cmap="gray", vmin=vmin, vmax=vmax, origin="lower", aspect=aspect)
        im = ax.imshow(
            amap[tuple(sl)].T, cmap="jet", alpha=alpha, vmin=0.0, vmax=max(mmax, 1e-12), origin="lower", aspect=aspect
        )
        ax.set_title(f"axis {axis}, slice {idx[axis]}", fontsize=8)
        ax.axis("off")
    fig.colorbar(im, ax=fig.axes, fraction=0.02, pad=0.02)
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path)
