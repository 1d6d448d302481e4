from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from monai_anomaly.data.audit.features import estimate_jpeg_quality, image_statistics

sys.path.insert(0, str(Path(__file__).parent))

from audit_files import brain, save  # noqa: E402


def test_estimate_jpeg_quality():
    rng = np.random.default_rng(0)
    arr = brain(rng)
    for q in (30, 50, 75, 95):
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, "JPEG", quality=q)
        assert estimate_jpeg_quality(Image.open(buf)) == q
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    assert estimate_jpeg_quality(Image.open(buf)) is None


def test_image_statistics(tmp_path):
    arr = brain(np.random.default_rng(1))
    png = image_statistics(save(arr, tmp_path / "a.png"))
    jpg = image_statistics(save(arr, tmp_path / "a.jpg", "JPEG", quality=50, rgb=True))
    assert (png["width"], png["height"], png["mode"], png["format"]) == (64, 64, "L", "PNG")
    assert (png["is_rgb"], png["is_jpeg"], png["jpeg_quality"]) == (0.0, 0.0, None)
    assert (jpg["mode"], jpg["is_rgb"], jpg["jpeg_quality"]) == ("RGB", 1.0, 50.0)
    assert 0 < png["foreground"] < 1 and png["hf_energy"] > 0
    assert abs(png["brightness"] - float(arr.mean())) < 1e-6
    assert abs(jpg["brightness"] - png["brightness"]) < 3  # the grey content is the same
    assert bin(int(png["phash"], 16) ^ int(jpg["phash"], 16)).count("1") <= 4
