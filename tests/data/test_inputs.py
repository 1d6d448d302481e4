from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from monai_anomaly.data.inputs import find_scans, scan_id
from monai_anomaly.utils.errors import BadInputError, SkipLog


def _png(path):
    Image.fromarray((np.random.rand(8, 8) * 255).astype(np.uint8)).save(path)


def test_find_scans_files_series_and_folders(tmp_path):
    import nibabel as nib

    _png(tmp_path / "a.png")
    nib.save(nib.Nifti1Image(np.random.rand(8, 8, 4).astype(np.float32), np.eye(4)), str(tmp_path / "vol.nii.gz"))
    series = tmp_path / "series1"
    series.mkdir()
    for i in range(3):
        (series / f"{i}.dcm").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("ignored")
    items = find_scans(tmp_path)
    ids = sorted(it["volume_id"] for it in items)
    assert ids == ["a", "series1", "vol"]
    assert all(it["label"] == -1 for it in items)
    assert find_scans(series)[0]["image"] == str(series)
    assert find_scans(tmp_path / "a.png")[0]["volume_id"] == "a"
    assert scan_id("x/case.nii.gz") == "case"


def test_find_scans_checks_files_before_anything_is_written(tmp_path):
    """Empty files and files whose content does not match their name fail (or are skipped) when the scans are
    listed, before inference starts writing."""
    _png(tmp_path / "ok.png")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.nii.gz").write_text("not a volume")
    with pytest.raises(BadInputError, match="empty.png: is an empty file"):
        find_scans(tmp_path)
    log = SkipLog(skip_bad=True)
    assert [it["volume_id"] for it in find_scans(tmp_path, skip_bad=True, skip_log=log)] == ["ok"]
    assert sorted(s.problem.split(":")[0] for s in log.skipped) == [
        "is an empty file (0 bytes)",
        "is not a gzip-compressed NIfTI file",
    ]


def test_find_scans_reads_dicom_files_without_extension(tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1]))
    from bad_input_corpus import _dicom_series_without_extension

    series = _dicom_series_without_extension(tmp_path / "scans" / "s1", np.random.default_rng(0))
    assert not any(f.suffix for f in series.iterdir())
    items = find_scans(tmp_path / "scans")
    assert [it["image"] for it in items] == [str(series)]


def test_find_scans_errors_name_the_path(tmp_path):
    with pytest.raises(BadInputError, match="missing_dir"):
        find_scans(tmp_path / "missing_dir")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BadInputError, match="empty.*no PNG"):
        find_scans(empty)
    bad = tmp_path / "scan.bmp"
    bad.write_bytes(b"x")
    with pytest.raises(BadInputError, match="scan.bmp"):
        find_scans(bad)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    _png(mixed / "ok.png")
    (mixed / "weird.exe").write_bytes(b"x")
    with pytest.raises(BadInputError, match="weird.exe"):
        find_scans(mixed)
    log = SkipLog(skip_bad=True)
    items = find_scans(mixed, skip_bad=True, skip_log=log)
    assert [it["volume_id"] for it in items] == ["ok"]
    assert any("weird.exe" in s["path"] for s in log.as_list())


def _png(path, value=100):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8), value, np.uint8)).save(path)
    return path


def test_scan_ids_are_unique_within_a_run(tmp_path):
    """BIDS names every subject's scan T1w: ids fall back to the path relative to the input folder."""
    for sub in ("sub-01", "sub-02"):
        _png(tmp_path / sub / "anat" / "T1w.png")
    _png(tmp_path / "case.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "case.jpg")
    _png(tmp_path / "solo.png")
    ids = sorted(it["volume_id"] for it in find_scans(tmp_path))
    assert ids == ["case_jpg", "case_png", "solo", "sub-01__anat__T1w", "sub-02__anat__T1w"]
    both = find_scans([tmp_path / "sub-01", tmp_path / "sub-01" / "anat" / "T1w.png"])
    assert len(both) == 1  # the same file named twice is scored once


def test_an_unreadable_sub_folder_is_reported(tmp_path, monkeypatch):
    """os.walk skips a folder it cannot list without a word; it is named (raised, or skipped and listed)."""
    import os

    from monai_anomaly.data.layouts import build_datalist

    _png(tmp_path / "scans" / "a.png")
    _png(tmp_path / "scans" / "locked" / "b.png")
    for i in range(4):
        _png(tmp_path / "data" / "normal" / f"n{i}.png")
        _png(tmp_path / "data" / "normal" / "locked" / f"m{i}.png")
        _png(tmp_path / "data" / "abnormal" / "t" / f"t{i}.png")
    real = os.scandir

    def scandir(path="."):
        if os.path.basename(os.fspath(path)) == "locked":
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(BadInputError, match=r"locked: folder cannot be read \(Permission denied\)"):
        find_scans(tmp_path / "scans")
    log = SkipLog(skip_bad=True)
    assert [it["volume_id"] for it in find_scans(tmp_path / "scans", skip_log=log)] == ["a"]
    assert [s.path for s in log.skipped] == [str(tmp_path / "scans" / "locked")]
    with pytest.raises(BadInputError, match="locked: folder cannot be read"):
        build_datalist(tmp_path / "data")


def test_other_scans_inside_a_dicom_series_folder_are_not_dropped_silently(tmp_path):
    from monai_anomaly.data import inputs

    series = tmp_path / "series"
    series.mkdir()
    (series / "IM0001.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 64)
    _png(series / "screenshot.png")
    with pytest.raises(BadInputError, match=r"screenshot\.png: is inside a DICOM series folder"):
        inputs.find_scans(series)
