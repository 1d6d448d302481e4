"""Tests for monai_anomaly.data.formats: which loader a path needs and the file checks run before decoding."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from monai_anomaly.data.formats import check_scan_file, scan_kind
from monai_anomaly.utils.errors import BadInputError


def test_unsupported_file_type(tmp_path):
    txt = tmp_path / "table.csv"
    txt.write_text("a,b\n1,2\n")
    with pytest.raises(BadInputError, match="table.csv: unsupported file type"):
        scan_kind(txt)


def test_image_content_is_checked_whatever_the_image_extension_says(tmp_path):
    """Public sets hold PNGs named .jpg (brain_tumor_yes_no's No15.jpg): they pass; a non-image does not."""
    arr = (np.arange(64, dtype=np.uint8).reshape(8, 8) * 3).astype(np.uint8)
    Image.fromarray(arr).save(tmp_path / "png_inside.jpg", format="PNG")
    check_scan_file(tmp_path / "png_inside.jpg", "image")
    (tmp_path / "volume.jpg").write_bytes(b"\x1f\x8b" + bytes(100))
    with pytest.raises(BadInputError, match="volume.jpg: is not a JPEG image: its content is gzip"):
        check_scan_file(tmp_path / "volume.jpg", "image")
