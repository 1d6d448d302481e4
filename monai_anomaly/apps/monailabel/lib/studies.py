"""Make a local studies folder's DICOM series visible to MONAI Label, whose local datastore lists only files."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import nibabel as nib
import numpy as np

from monai_anomaly.data.inputs import find_scans
from monai_anomaly.transforms.io import LoadScan
from monai_anomaly.utils.errors import BadInputError, SkipLog

__all__ = ["dicom_series_folders", "convert_dicom_series"]

logger = logging.getLogger("monai_anomaly")


def dicom_series_folders(studies: str | os.PathLike) -> list[Path]:
    """The DICOM series folders (folders of ``*.dcm`` files) under ``studies``, searched recursively.

    Example:
        >>> dicom_series_folders("studies/")  # doctest: +SKIP
        [PosixPath('studies/patient1_t1')]
    """
    try:
        items = find_scans(studies, skip_bad=True, skip_log=SkipLog(True))
    except BadInputError:  # nothing to score at all
        return []
    return sorted({Path(it["image"]) for it in items if Path(it["image"]).is_dir()})


def convert_dicom_series(studies: str | os.PathLike, skip_bad: bool = True) -> list[Path]:
    """Write each DICOM series folder under ``studies`` as ``<studies>/<folder name>.nii.gz`` (once; redone if older).

    The volume keeps the series' voxel grid and affine as :class:`~monai_anomaly.transforms.io.LoadScan` reads it, so
    the heatmap of the NIfTI overlays the series. MONAI Label then lists it under the folder's name as image id.

    Args:
        studies: the studies folder given to ``monailabel start_server --studies``.
        skip_bad: log and skip a series that cannot be read (else raise).

    Returns:
        the NIfTI files (converted now or before).

    Raises:
        BadInputError: a series that cannot be read, when ``skip_bad`` is False.

    Example:
        >>> convert_dicom_series("studies/")  # doctest: +SKIP
        [PosixPath('studies/patient1_t1.nii.gz')]
    """
    root = Path(studies)
    loader = LoadScan(orient=None)
    out: list[Path] = []
    for folder in dicom_series_folders(root):
        target = root / f"{folder.name}.nii.gz"
        newest = max((f.stat().st_mtime for f in folder.iterdir() if f.is_file()), default=0.0)
        if target.exists() and target.stat().st_mtime >= newest:
            out.append(target)
            continue
        try:
            img = loader(folder)
        except BadInputError as e:
            if not skip_bad:
                raise
            logger.warning("studies: skipping DICOM series %s", e)
            continue
        affine = np.asarray(img.affine.detach().cpu().numpy(), dtype=np.float64)
        nib.save(nib.Nifti1Image(np.ascontiguousarray(img[0].detach().cpu().numpy(), dtype=np.float32), affine), target)
        logger.info("studies: DICOM series %s -> %s", folder, target)
        out.append(target)
    return out
