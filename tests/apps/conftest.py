"""Fixtures for the MONAI Label app tests: a tiny trained anomaly bundle and a studies folder."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the mock bundle's config imports anomaly_mock_bundle

from anomaly_mock_bundle import write_dicom_series, write_mock_bundle, write_nifti, write_png  # noqa: E402


@pytest.fixture(scope="session")
def mock_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny, briefly trained bundle with the anomaly inference contract (threshold 0.5)."""
    return write_mock_bundle(tmp_path_factory.mktemp("bundles"))


@pytest.fixture()
def studies(tmp_path: Path) -> Path:
    """``vol.nii.gz`` (LPS-like affine), DICOM series ``series1/``, ``pic.png``, and two bad files."""
    import nibabel as nib
    import numpy as np

    root = tmp_path / "studies"
    root.mkdir()
    write_nifti(root / "vol.nii.gz")
    write_dicom_series(root / "series1")
    write_png(root / "pic.png")
    (root / "notes.png").write_text("this is not a picture\n")
    nib.save(nib.Nifti1Image(np.random.rand(8, 8, 4, 3).astype(np.float32), np.eye(4)), str(root / "series4d.nii.gz"))
    return root
