from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image

from monai_anomaly.data.conflicts import conflict_warnings, find_label_conflicts, warn_label_conflicts
from monai_anomaly.data.layouts import build_datalist


def _brain(seed: int, size: int = 96) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    img = np.zeros((size, size))
    for _ in range(6):  # a few blobs, so that two seeds give clearly different pictures
        cy, cx, r = rng.uniform(20, size - 20, 2).tolist() + [rng.uniform(6, 18)]
        img += rng.uniform(60, 120) * (((yy - cy) ** 2 + (xx - cx) ** 2) <= r**2)
    return np.clip(img, 0, 255).astype(np.uint8)


def test_same_image_as_normal_and_abnormal_is_found_and_warned(tmp_path, caplog):
    pytest.importorskip("imagehash")
    (tmp_path / "normal").mkdir()
    (tmp_path / "abnormal" / "tumour").mkdir(parents=True)
    for i in range(4):
        Image.fromarray(_brain(i)).save(tmp_path / "normal" / f"n{i}.png")
    for i in range(10, 13):
        Image.fromarray(_brain(i)).save(tmp_path / "abnormal" / "tumour" / f"t{i}.png")
    # an exact copy and a re-encoded, resized copy of normals, filed as tumours
    (tmp_path / "abnormal" / "tumour" / "copy.png").write_bytes((tmp_path / "normal" / "n0.png").read_bytes())
    Image.fromarray(_brain(1)).resize((128, 128)).save(tmp_path / "abnormal" / "tumour" / "resized.jpg", quality=95)
    dl = build_datalist(tmp_path)
    with caplog.at_level(logging.WARNING, logger="monai_anomaly"):
        warn_label_conflicts(dl)
    groups = {c["kind"]: sorted(p.split("/")[-1] for p in c["paths"]) for c in dl.conflicts}
    assert groups == {"exact": ["copy.png", "n0.png"], "near": ["n1.png", "resized.jpg"]}
    assert "labelled both normal and abnormal" in caplog.text and "copy.png" in caplog.text
    lines = conflict_warnings(dl)
    assert len(lines) == 2 and all("label 0" in s and "label 1" in s for s in lines)
    assert find_label_conflicts(dl.items, near=False)[0]["kind"] == "exact"


def test_distinct_images_give_no_conflict(tmp_path):
    (tmp_path / "normal").mkdir()
    (tmp_path / "abnormal" / "tumour").mkdir(parents=True)
    for i in range(3):
        Image.fromarray(_brain(i)).save(tmp_path / "normal" / f"n{i}.png")
        Image.fromarray(_brain(i + 50)).save(tmp_path / "abnormal" / "tumour" / f"t{i}.png")
    assert find_label_conflicts(build_datalist(tmp_path).items) == []
