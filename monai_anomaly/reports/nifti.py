"""Save 3D anomaly maps as NIfTI files that overlay their input scan in 3D Slicer / ITK-SNAP."""

from __future__ import annotations

import os
from typing import Any

import nibabel as nib
import numpy as np
import torch

__all__ = ["save_map_nifti"]


def save_map_nifti(volume_map: Any, affine: Any, path: str | os.PathLike, overwrite: bool = False) -> str:
    """Write a 3D anomaly map as a float32 NIfTI carrying the input scan's affine.

    Give the affine of the loaded input (``image.meta["affine"]`` of :class:`~monai.data.MetaTensor`, or the
    ``original_affine`` when the map is on the file's own grid) so the map lands on the same voxels as the scan.

    Args:
        volume_map: ``(H, W, D)`` map, or ``(1, H, W, D)`` (channel axis dropped); array or tensor.
        affine: ``(4, 4)`` voxel-to-world matrix (array or tensor).
        path: output file (``.nii`` or ``.nii.gz``); parent folders are created.
        overwrite: replace an existing file.

    Returns:
        the path written, as a string.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        ValueError: the map is not 3D, the affine is not 4x4, or either holds NaN/Inf.

    Example:
        >>> import tempfile, os
        >>> p = save_map_nifti(np.zeros((4, 4, 3)), np.eye(4), os.path.join(tempfile.mkdtemp(), "map.nii.gz"))
        >>> nib.load(p).get_fdata().shape
        (4, 4, 3)
    """
    path = os.fspath(path)
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path}: already exists (pass overwrite=True to replace it)")
    if isinstance(volume_map, torch.Tensor):
        volume_map = volume_map.detach().cpu().float().numpy()
    m = np.asarray(volume_map, dtype=np.float32)
    if m.ndim == 4 and m.shape[0] == 1:
        m = m[0]
    if m.ndim != 3:
        raise ValueError(f"{path}: the anomaly map must be 3D (H, W, D) or (1, H, W, D), got shape {m.shape}")
    if not np.isfinite(m).all():
        raise ValueError(f"{path}: the anomaly map contains {int((~np.isfinite(m)).sum())} NaN/Inf voxel(s)")
    if isinstance(affine, torch.Tensor):
        affine = affine.detach().cpu().double().numpy()
    aff = np.asarray(affine, dtype=np.float64)
    if aff.shape != (4, 4) or not np.isfinite(aff).all():
        raise ValueError(f"{path}: the affine must be a finite 4x4 matrix, got shape {aff.shape}")
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    img = nib.Nifti1Image(m, aff)
    img.set_qform(aff, code=1)
    img.set_sform(aff, code=1)
    img.header.set_data_dtype(np.float32)
    name = os.path.basename(path)
    tmp = os.path.join(parent, f".{name[: -len(_suffix(name))]}.tmp{os.getpid()}{_suffix(name)}")
    try:  # atomically: a killed run never leaves a half-written map under the final name
        nib.save(img, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def _suffix(name: str) -> str:
    return ".nii.gz" if name.endswith(".nii.gz") else os.path.splitext(name)[1]
