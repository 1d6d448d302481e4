"""Tests of monai_anomaly.reports.plots: the PNGs exist, open and have the expected size."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from monai_anomaly.reports.plots import DPI, FIGSIZE, plot_panel, plot_pr, plot_roc, plot_score_distribution, to_2d

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
