"""Tests of monai_anomaly.reports.plots: the PNGs exist, open and have the expected size."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from monai_anomaly.reports.plots import (
    DPI,
    FIGSIZE,
    plot_confusion_matrix,
    plot_panel,
    plot_pr,
    plot_roc,
    plot_score_distribution,
    plot_training_curves,
    to_2d,
    training_curve_tags,
)

W, H = int(FIGSIZE[0] * DPI), int(FIGSIZE[1] * DPI)


@pytest.fixture
def scores():
    rng = np.random.default_rng(0)
    labels = np.array([0] * 20 + [1] * 10)
    return labels, np.concatenate([rng.normal(0, 1, 20), rng.normal(2, 1, 10)])


def test_roc_pr_distribution_pngs(tmp_path, scores):
    labels, s = scores
    for fn, name in ((plot_roc, "roc.png"), (plot_pr, "pr.png")):
        p = fn(labels, s, str(tmp_path / "sub" / name), title=name)
        with Image.open(p) as im:
            assert im.format == "PNG" and im.size == (W, H)
    p = plot_score_distribution(np.r_[labels, [-1, -1]], np.r_[s, [0.5, 0.7]], str(tmp_path / "d.png"), threshold=1.0)
    with Image.open(p) as im:
        assert im.size == (W, H)
        # not a blank canvas: histograms in several colours
        assert len(np.unique(np.asarray(im.convert("RGB")).reshape(-1, 3), axis=0)) > 10


def test_score_distribution_without_labels(tmp_path):
    p = plot_score_distribution(None, [0.1, 0.2, 0.2], str(tmp_path / "d.png"))
    with Image.open(p) as im:
        assert im.size == (W, H)


def test_roc_needs_both_classes(tmp_path):
    with pytest.raises(ValueError, match="both classes"):
        plot_roc([0, 0, 0], [0.1, 0.2, 0.3], str(tmp_path / "r.png"))
    assert not (tmp_path / "r.png").exists()


def test_panel_with_and_without_reconstruction(tmp_path):
    rng = np.random.default_rng(1)
    img = rng.random((32, 32))
    rec = img.copy()
    rec[10:16, 10:16] = 0
    amap = np.abs(img - rec)
    p4 = plot_panel(img[None], rec, amap, str(tmp_path / "p4.png"), title="case 1")
    p2 = plot_panel(img, None, amap, str(tmp_path / "p2.png"))
    with Image.open(p4) as a, Image.open(p2) as b:
        assert a.size == (4 * 3 * DPI, int(3.4 * DPI))
        assert b.size == (2 * 3 * DPI, int(3.4 * DPI))


def test_panel_rejects_bad_shapes(tmp_path):
    with pytest.raises(ValueError, match="differs from the image shape"):
        plot_panel(np.zeros((8, 8)), None, np.zeros((8, 9)), str(tmp_path / "p.png"))
    with pytest.raises(ValueError, match="must be 2D"):
        to_2d(np.zeros((2, 8, 8)))


def _colours(path) -> int:
    with Image.open(path) as im:
        return len(np.unique(np.asarray(im.convert("RGB")).reshape(-1, 3), axis=0))


def test_confusion_matrix_png(tmp_path):
    p = plot_confusion_matrix([[8, 2], [1, 9]], str(tmp_path / "sub" / "cm.png"), title="Slice level\nthreshold 0.5")
    with Image.open(p) as im:
        assert im.format == "PNG" and im.size == (W, H)
    assert _colours(p) > 10  # cells shaded by their row share, counts written in them
    both = plot_confusion_matrix([[8, 2], [1, 9]], str(tmp_path / "both.png"), volume_matrix=np.array([[3, 0], [1, 2]]))
    with Image.open(both) as im:
        assert im.size == (2 * W, H)  # the volume level in a second panel
    # a level without a confusion matrix (no threshold, unlabelled or one class): nothing is drawn for it
    only_volume = plot_confusion_matrix(None, str(tmp_path / "v.png"), volume_matrix=[[3, 0], [1, 2]])
    with Image.open(only_volume) as im:
        assert im.size == (W, H)
    # an empty true class (no anomalous item) has no row percentage but is still drawn
    assert plot_confusion_matrix([[5, 1], [0, 0]], str(tmp_path / "empty_row.png"))


def test_confusion_matrix_without_matrix_writes_nothing(tmp_path):
    assert plot_confusion_matrix(None, str(tmp_path / "cm.png")) is None
    assert plot_confusion_matrix(None, str(tmp_path / "cm.png"), volume_matrix=None) is None
    assert not (tmp_path / "cm.png").exists()


@pytest.mark.parametrize("bad", [[[1, 2, 3]], [[1, -1], [0, 2]], [[0.5, 1], [1, 1]], [[1, float("nan")], [1, 1]]])
def test_confusion_matrix_rejects_what_is_not_counts(tmp_path, bad):
    with pytest.raises(ValueError, match="2x2 non-negative counts"):
        plot_confusion_matrix(bad, str(tmp_path / "cm.png"))
    assert not (tmp_path / "cm.png").exists()


def test_training_curve_tags():
    tags = ["train_loss", "loss", "critic_loss", "val_normal_loss", "slice_auroc", "volume_auroc", "val_aucp"]
    tags += ["val_threshold", "val_score_mean", "slice_auprc", "report/slice_auroc", "report/slice_loss"]
    assert training_curve_tags(tags) == {
        "train_loss": ["train_loss", "loss", "critic_loss"],
        "val_loss": ["val_normal_loss"],
        "val_auroc": ["slice_auroc", "volume_auroc", "val_aucp"],
    }


def test_training_curves_png(tmp_path):
    rng = np.random.default_rng(0)
    curves = {
        "train_loss": [(i, float(np.exp(-i / 30) + 0.02 * rng.random())) for i in range(1, 101)],
        "val_normal_loss": [(e, 1.0 / e) for e in range(1, 11)],
        "slice_auroc": [(e, 0.5 + 0.04 * e) for e in range(1, 11)],
        "val_threshold": [(e, 3.0) for e in range(1, 11)],
    }
    p = plot_training_curves(curves, str(tmp_path / "sub" / "tc.png"), title="run")
    with Image.open(p) as im:
        assert im.format == "PNG" and im.size == (2 * W, H)  # training panel + validation panel
    assert _colours(p) > 10
    # training loss only (no validation logged): one panel
    p1 = plot_training_curves({"train_loss": curves["train_loss"]}, str(tmp_path / "t1.png"))
    with Image.open(p1) as im:
        assert im.size == (W, H)
    # validation only, non-finite points dropped
    p2 = plot_training_curves({"slice_auroc": [(1, float("nan")), (2, 0.7)]}, str(tmp_path / "t2.png"))
    assert p2 is not None


def test_training_curves_without_curves_write_nothing(tmp_path):
    assert plot_training_curves({}, str(tmp_path / "tc.png")) is None
    assert plot_training_curves({"val_threshold": [(1, 2.0)], "train_loss": []}, str(tmp_path / "tc.png")) is None
    assert plot_training_curves({"train_loss": [(1, float("inf"))]}, str(tmp_path / "tc.png")) is None
    assert not (tmp_path / "tc.png").exists()


def test_orthogonal_panels_pass_through_the_strongest_compact_anomaly(tmp_path):
    from monai_anomaly.reports.plots import most_anomalous_slices, plot_orthogonal_panels

    rng = np.random.default_rng(0)
    img = rng.random((30, 34, 12)).astype(np.float32)
    amap = np.zeros_like(img)
    amap[20:25, 5:10, 3:6] = 1.0  # a compact lesion
    amap[0, 0, 11] = 4.0  # one hot voxel: brighter, but not where the anomaly is
    amap[:, :, 9] += 0.05  # a faint slab over a whole slice
    i, j, k = most_anomalous_slices(amap)
    assert 20 <= i < 25 and 5 <= j < 10 and 3 <= k < 6  # inside the lesion
    path = plot_orthogonal_panels(img, amap, str(tmp_path / "p.png"), title="case: 0.5", spacing=(1.0, 1.0, 3.0))
    with Image.open(path) as im:
        w, h = im.size
    assert w > 2 * h  # three panels side by side
    with pytest.raises(ValueError, match="3D"):
        plot_orthogonal_panels(img[..., 0], amap[..., 0], str(tmp_path / "q.png"))
