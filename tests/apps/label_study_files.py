"""Study files for the MONAI Label app tests: a NIfTI volume with a non-RAS affine, a DICOM series and a PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["write_nifti", "write_dicom_series", "write_png"]


def write_nifti(path: Path, shape: tuple[int, ...] = (20, 18, 5), affine: np.ndarray | None = None) -> Path:
    """A float32 NIfTI with a blob; the default affine is LPS-like (so the app must orient the map back)."""
    import nibabel as nib

    rng = np.random.default_rng(0)
    arr = rng.random(shape).astype(np.float32)
    arr[tuple(slice(s // 4, s // 2) for s in shape[:3])] += 3.0
    if affine is None:
        affine = np.array([[-1.5, 0, 0, 30.0], [0, -1.2, 0, 20.0], [0, 0, 3.0, -10.0], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(arr, affine), str(path))
    return path


def write_dicom_series(folder: Path, rows: int = 16, cols: int = 20, n: int = 4) -> Path:
    """A minimal, valid MR DICOM series (one file per slice) in ``folder``."""
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True)
    series, study, frame = generate_uid(), generate_uid(), generate_uid()
    rng = np.random.default_rng(1)
    for i in range(n):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = pydicom.uid.MRImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(str(folder / f"slice{i:03d}.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.PatientID, ds.PatientName = "MR", "anon", "anon"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.SeriesNumber, ds.InstanceNumber = 1, i + 1
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-10.0, -8.0, 2.5 * i]
        ds.PixelSpacing, ds.SliceThickness = [0.9, 0.8], 2.5
        ds.Rows, ds.Columns = rows, cols
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = (rng.random((rows, cols)) * 1000).astype(np.uint16).tobytes()
        if int(pydicom.__version__.split(".")[0]) < 3:  # pydicom 2 wants the encoding on the dataset
            ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.save_as(str(folder / f"slice{i:03d}.dcm"), write_like_original=False)
    return folder


def write_png(path: Path, shape: tuple[int, int] = (20, 24)) -> Path:
    """An 8-bit grey PNG of ``shape`` (rows, columns)."""
    from PIL import Image

    arr = (np.random.default_rng(2).random(shape) * 255).astype(np.uint8)
    Image.fromarray(arr, mode="L").save(path)
    return path
