"""Tests of monai_anomaly.reports.nifti: maps carry the input's affine and are never silently overwritten."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.transforms import LoadImage

from monai_anomaly.reports.nifti import save_map_nifti


def _scan(tmp_path):
    affine = np.array([[-0.9, 0, 0, 90.0], [0, 1.1, 0, -120.0], [0, 0, 2.5, -60.0], [0, 0, 0, 1]])
    data = np.random.default_rng(0).random((12, 10, 6)).astype(np.float32)
    path = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path, affine


def test_map_carries_the_input_affine(tmp_path):
    path, affine = _scan(tmp_path)
    img = LoadImage(image_only=True, ensure_channel_first=True)(str(path))  # (1, H, W, D) MetaTensor
    amap = torch.rand_like(img)
    out = save_map_nifti(amap, img.meta["original_affine"], tmp_path / "maps" / "map.nii.gz")
    loaded = nib.load(out)
    assert loaded.shape == (12, 10, 6)
    assert loaded.get_data_dtype() == np.float32
    np.testing.assert_allclose(loaded.affine, affine, atol=1e-5)
    np.testing.assert_allclose(loaded.get_fdata(), amap[0].numpy(), atol=1e-6)


def test_overwrite_protection(tmp_path):
    p = tmp_path / "m.nii.gz"
    save_map_nifti(np.zeros((4, 4, 2)), np.eye(4), p)
    with pytest.raises(FileExistsError, match="m.nii.gz"):
        save_map_nifti(np.ones((4, 4, 2)), np.eye(4), p)
    assert nib.load(str(p)).get_fdata().max() == 0
    save_map_nifti(np.ones((4, 4, 2)), np.eye(4), p, overwrite=True)
    assert nib.load(str(p)).get_fdata().max() == 1


def test_bad_maps_are_refused(tmp_path):
    with pytest.raises(ValueError, match="must be 3D"):
        save_map_nifti(np.zeros((4, 4)), np.eye(4), tmp_path / "a.nii.gz")
    with pytest.raises(ValueError, match="4x4"):
        save_map_nifti(np.zeros((4, 4, 2)), np.eye(3), tmp_path / "b.nii.gz")
    bad = np.zeros((4, 4, 2))
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        save_map_nifti(bad, np.eye(4), tmp_path / "c.nii.gz")
