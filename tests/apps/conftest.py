"""Fixtures for the MONAI Label app tests: the real autoencoder bundle, tiny and trained, and a studies folder."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from label_study_files import write_dicom_series, write_nifti, write_png  # noqa: E402


@pytest.fixture(scope="session")
def bundle(tiny_trained_bundle: Path) -> Path:
    """``bundles/autoencoder_anomaly`` shrunk and trained for two epochs (``tests/conftest.py``), served as is."""
    return tiny_trained_bundle


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
