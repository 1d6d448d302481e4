"""Per-file statistics of the data audit: hashes, size, colour mode, format, JPEG quality and intensities.

:func:`file_statistics` reads one file: :func:`image_statistics` for PNG/JPEG (md5, perceptual hashes, size,
colour mode, format, estimated JPEG quality, bytes per pixel, chroma, brightness, contrast, foreground fraction,
high-frequency energy), :func:`volume_statistics` for NIfTI/DICOM (shape, spacing, dtype, intensity percentiles,
and the same picture statistics and hashes on the middle axial slice).

Volumes are read with nibabel (NIfTI, reoriented to RAS so the last axis is axial) and SimpleITK (DICOM series,
oriented to LPS so the first array axis is axial), not with :class:`monai_anomaly.transforms.io.LoadScan`: ``data``
sits below ``transforms`` in the package's dependency order.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from monai.utils import optional_import

from monai_anomaly.data.inputs import file_suffix
from monai_anomaly.data.layouts import IMAGE_2D_SUFFIXES
from monai_anomaly.utils.errors import BadInputError

imagehash, _has_imagehash = optional_import("imagehash")
nib, _ = optional_import("nibabel")
sitk, _ = optional_import("SimpleITK")
pydicom, _ = optional_import("pydicom")

__all__ = [
    "STD_LUMINANCE_QTABLE",
    "THUMB_KEY",
    "estimate_jpeg_quality",
    "file_statistics",
    "image_statistics",
    "volume_statistics",
]

# IJG (libjpeg) standard luminance quantization table, natural (row-major) order, as PIL's ``quantization`` gives it
STD_LUMINANCE_QTABLE = (
    (16, 11, 10, 16, 24, 40, 51, 61),
    (12, 12, 14, 19, 26, 58, 60, 55),
    (14, 13, 16, 24, 40, 57, 69, 56),
    (14, 17, 22, 29, 51, 87, 80, 62),
    (18, 22, 37, 56, 68, 109, 103, 77),
    (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101),
    (72, 92, 95, 98, 112, 100, 103, 99),
)
_COLOUR_MODES = {"RGB", "RGBA", "RGBX", "RGBa", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV"}
_HF_SIZE = 128  # images are resized to this before the high-frequency energy, so their size does not bias it
_THUMB = 32  # side of the thumbnails whose correlation checks a hash link
THUMB_KEY = "_thumbnail"  # record key of that thumbnail (dropped from the audit's records)
_FG_THRESHOLD = 10.0  # grey level (0-255) above which a pixel counts as foreground


def estimate_jpeg_quality(img: Any) -> float | None:
    """The IJG quality (1-100) whose scaled standard luminance table is closest to a JPEG's own table.

    Args:
        img: an open :class:`PIL.Image.Image`.

    Returns:
        the estimated quality, or ``None`` when ``img`` is not a JPEG or has no quantization table. Encoders that do
        not scale the standard table (some cameras, Photoshop) get the nearest IJG quality.

    Example:
        >>> from PIL import Image
        >>> import io, numpy as np
        >>> buf = io.BytesIO()
        >>> Image.fromarray(np.zeros((16, 16), np.uint8)).save(buf, "JPEG", quality=60)
        >>> estimate_jpeg_quality(Image.open(buf))
        60.0
    """
    tables = getattr(img, "quantization", None)
    if getattr(img, "format", None) != "JPEG" or not tables:
        return None
    table = np.asarray(tables.get(0, next(iter(tables.values()))), dtype=np.float64)
    if table.size != 64:
        return None
    std = np.asarray(STD_LUMINANCE_QTABLE, dtype=np.float64).ravel()
    best_q, best_err = 1, math.inf
    for q in range(1, 101):
        scale = 5000.0 / q if q < 50 else 200.0 - 2.0 * q
        ref = np.clip(np.floor((std * scale + 50.0) / 100.0), 1, 255)
        err = float(np.abs(ref - table).sum())
        if err < best_err:
            best_q, best_err = q, err
    return float(best_q)


def _grey_uint8_range(img: Any) -> np.ndarray:
    """A PIL image as float grey values on a 0-255 scale (ITU-R 601 luminance for colour, 16-bit scaled down)."""
    mode = img.mode
    if mode in ("I", "F") or mode.startswith("I;16"):
        arr = np.asarray(img, dtype=np.float64)
        hi = float(arr.max()) if arr.size else 0.0
        if hi > 255:
            arr = arr * (255.0 / (65535.0 if hi <= 65535 else hi))
        return arr
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif mode in ("1", "LA", "La"):
        img = img.convert("L")
    elif mode not in ("L", "RGB", "RGBA"):
        img = img.convert("RGB")
    return np.asarray(img.convert("F") if img.mode != "L" else img, dtype=np.float64)


def _chroma(img: Any) -> float:
    """Mean (max - min) over the RGB channels: 0 for grey content, whatever the stored mode."""
    if img.mode not in _COLOUR_MODES:
        return 0.0
    rgb = np.asarray(img.convert("RGB"), dtype=np.int16)
    return float((rgb.max(axis=-1) - rgb.min(axis=-1)).mean())


def _hf_energy(grey: np.ndarray) -> float:
    """Mean squared difference between a 0-255 grey image resized to 128x128 and its Gaussian blur (sigma 1)."""
    from PIL import Image
    from scipy.ndimage import gaussian_filter

    small = np.asarray(
        Image.fromarray(grey.astype(np.float32), mode="F").resize((_HF_SIZE, _HF_SIZE), Image.BILINEAR),
        dtype=np.float64,
    )
    return float(np.mean((small - gaussian_filter(small, 1.0)) ** 2))


def _hashes(grey: np.ndarray, hash_size: int) -> tuple[str, str]:
    """``(phash, dhash)`` hex strings of a 0-255 grey image."""
    if not _has_imagehash:
        raise ImportError("the data audit needs the imagehash package: pip install imagehash")
    from PIL import Image

    pil = Image.fromarray(np.clip(np.rint(grey), 0, 255).astype(np.uint8), mode="L")
    return str(imagehash.phash(pil, hash_size=hash_size)), str(imagehash.dhash(pil, hash_size=hash_size))


def _thumbnail(grey: np.ndarray) -> np.ndarray:
    """The grey image resized to 32x32 and z-scored (brightness and contrast removed), flattened, float32."""
    from PIL import Image

    t = np.asarray(
        Image.fromarray(grey.astype(np.float32), mode="F").resize((_THUMB, _THUMB), Image.BILINEAR), dtype=np.float64
    ).ravel()
    return ((t - t.mean()) / (t.std() + 1e-8)).astype(np.float32)


def _grey_features(grey: np.ndarray) -> dict[str, Any]:
    return {
        THUMB_KEY: _thumbnail(grey),
        "brightness": float(grey.mean()),
        "contrast": float(grey.std()),
        "foreground": float((grey > _FG_THRESHOLD).mean()),
        "hf_energy": _hf_energy(grey),
    }


def image_statistics(path: str | os.PathLike, hash_size: int = 8) -> dict[str, Any]:
    """Statistics of one 2D image file (PNG/JPEG).

    Args:
        path: the image file.
        hash_size: side of the perceptual hashes (8 gives 64-bit hashes, 16 gives 256-bit ones).

    Returns:
        ``kind`` ("2d"), ``md5``, ``phash``, ``dhash`` (hex), ``width``, ``height``, ``aspect``, ``mode``, ``format``,
        ``is_rgb``, ``is_jpeg``, ``jpeg_quality`` (estimated IJG quality, ``None`` for non-JPEG), ``file_bytes``,
        ``bytes_per_pixel``, ``chroma`` (mean RGB spread, 0 for grey), ``brightness`` (mean grey 0-255),
        ``contrast`` (grey std), ``foreground`` (fraction of pixels above 10 on 0-255), ``hf_energy`` (mean squared
        image-minus-blur on the grey image resized to 128x128), and :data:`THUMB_KEY` (the z-scored 32x32 grey
        thumbnail that checks hash links; :func:`~monai_anomaly.data.audit.run.audit_dataset` keeps it out of its
        records).

    Raises:
        BadInputError: the file cannot be decoded, or is constant.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise BadInputError(path, f"cannot be read ({e})") from e
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            fmt, mode, (width, height) = img.format, img.mode, img.size
            quality = estimate_jpeg_quality(img)
            grey = _grey_uint8_range(img)
            chroma = _chroma(img)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise BadInputError(path, f"cannot be decoded as an image ({' '.join(str(e).split())})") from e
    if grey.ndim != 2 or grey.size == 0:
        raise BadInputError(path, f"is not a 2D image (decoded shape {grey.shape})")
    if float(grey.min()) == float(grey.max()):
        raise BadInputError(path, f"is constant (every pixel is {float(grey.min()):g}); nothing to learn from")
    phash, dhash = _hashes(grey, hash_size)
    stats: dict[str, Any] = {
        "kind": "2d",
        "md5": hashlib.md5(data).hexdigest(),
        "phash": phash,
        "dhash": dhash,
        "width": int(width),
        "height": int(height),
        "aspect": float(width) / float(height),
        "mode": mode,
        "format": fmt or file_suffix(path).lstrip(".").upper(),
        "is_rgb": float(mode in _COLOUR_MODES),
        "is_jpeg": float(fmt == "JPEG"),
        "jpeg_quality": quality,
        "file_bytes": len(data),
        "bytes_per_pixel": len(data) / float(width * height),
        "chroma": chroma,
    }
    stats.update(_grey_features(grey))
    return stats


def _md5_files(paths: Sequence[Path]) -> tuple[str, int]:
    h = hashlib.md5()
    total = 0
    for p in paths:
        data = p.read_bytes()
        total += len(data)
        h.update(data)
    return h.hexdigest(), total


def _read_volume(path: Path) -> tuple[np.ndarray, tuple[int, ...], tuple[float, ...], str, str, int]:
    """``(array with the axial axis last, file shape, file spacing, dtype, md5, bytes)`` of a NIfTI or DICOM scan.

    The shape and spacing are those of the file's own voxel grid (NIfTI ``i, j, k``; DICOM column, row, slice), as
    ``labels.csv`` files and scanners give them; only the array is reoriented, to take its middle axial slice.
    """
    if path.is_dir() or file_suffix(path) == ".dcm":
        if path.is_dir():
            reader = sitk.ImageSeriesReader()
            ids = reader.GetGDCMSeriesIDs(str(path)) or []
            series = [reader.GetGDCMSeriesFileNames(str(path), i) for i in ids]
            if not series:
                raise BadInputError(path, "holds no readable DICOM series")
            files = list(max(series, key=len))
            reader.SetFileNames(files)
            image = reader.Execute()
        else:
            files = [str(path)]
            image = sitk.ReadImage(str(path))
        shape = tuple(int(v) for v in image.GetSize())
        sp = tuple(float(v) for v in image.GetSpacing())
        if image.GetDimension() == 3:
            image = sitk.DICOMOrient(image, "LPS")
        arr = sitk.GetArrayFromImage(image)  # (k, j, i): k axial after LPS orientation
        if image.GetNumberOfComponentsPerPixel() > 1:
            arr = arr[..., :3].astype(np.float64) @ np.asarray((0.299, 0.587, 0.114))
        arr = np.transpose(arr, tuple(range(arr.ndim))[::-1])  # (i, j, k)
        dtype = str(arr.dtype)
        try:
            hdr = pydicom.dcmread(files[0], stop_before_pixels=True)
            dtype = f"{'int' if int(hdr.PixelRepresentation) else 'uint'}{int(hdr.BitsAllocated)}"
        except Exception:  # header without those tags: keep SimpleITK's pixel type
            pass
        md5, nbytes = _md5_files([Path(f) for f in files])
    else:
        img = nib.load(str(path))
        dtype = str(img.get_data_dtype())
        shape = tuple(int(v) for v in img.shape)
        sp = tuple(float(z) for z in img.header.get_zooms()[: len(shape)])
        img = nib.as_closest_canonical(img)
        arr = np.asarray(img.get_fdata(dtype=np.float32))
        md5, nbytes = _md5_files([path])
    while arr.ndim > 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3:
        raise BadInputError(path, f"has shape {arr.shape}; expected a 3D volume")
    shape = (tuple(shape[:3]) + (1, 1, 1))[:3]
    sp = (tuple(sp) + (1.0, 1.0, 1.0))[:3]
    return arr, shape, sp, dtype, md5, nbytes


def volume_statistics(path: str | os.PathLike, hash_size: int = 8) -> dict[str, Any]:
    """Statistics of one volume (NIfTI file, DICOM series folder or DICOM file).

    The volume is oriented so that the last axis is axial (RAS for NIfTI, LPS for DICOM); intensities are scaled to
    0-255 between the volume's minimum and its 99.5th percentile for the 2D-like features, which are computed on the
    middle axial slice (``brightness``, ``contrast``, ``hf_energy``, the hashes) or the whole volume
    (``foreground``).

    Returns:
        ``kind`` ("3d"), ``md5`` (of the file bytes, all files of a series), ``phash``/``dhash`` of the middle axial
        slice, ``shape`` ("XxYxZ", the file's voxel grid), ``size_x/y/z``, ``spacing`` ("sx x sy x sz" mm, the
        file's), ``spacing_x/y/z``, ``dtype`` (stored),
        ``is_float``, ``file_bytes``, ``bytes_per_pixel``, ``p01``/``p50``/``p99`` (raw intensity percentiles),
        ``fg_median`` (median raw intensity of the foreground), ``brightness``, ``contrast``, ``foreground``,
        ``hf_energy`` and :data:`THUMB_KEY` (thumbnail of the middle slice).

    Raises:
        BadInputError: the file cannot be read, is not 3D, holds NaN/Inf, or is constant.
    """
    path = Path(path)
    if not path.exists():
        raise BadInputError(path, "no such file or folder")
    try:
        arr, shape, spacing, dtype, md5, nbytes = _read_volume(path)
    except BadInputError:
        raise
    except Exception as e:  # nibabel / SimpleITK errors
        raise BadInputError(path, f"cannot be read as a volume ({' '.join(str(e).split())[:300]})") from e
    if not np.isfinite(arr).all():
        raise BadInputError(path, "contains non-finite voxels (NaN or Inf)")
    lo, hi = float(arr.min()), float(arr.max())
    if lo == hi:
        raise BadInputError(path, f"is constant (every voxel is {lo:g}); nothing to learn from")
    p01, p50, p99, p995 = (float(v) for v in np.percentile(arr, [1, 50, 99, 99.5]))
    top = p995 if p995 > lo else hi
    norm = np.clip((arr.astype(np.float32) - lo) / (top - lo), 0, 1) * 255.0
    fg = norm > _FG_THRESHOLD
    mid = norm[:, :, arr.shape[2] // 2].astype(np.float64)
    phash, dhash = _hashes(mid, hash_size)
    feats = _grey_features(mid)
    stats: dict[str, Any] = {
        "kind": "3d",
        "md5": md5,
        "phash": phash,
        "dhash": dhash,
        "shape": "x".join(str(s) for s in shape),
        "size_x": shape[0],
        "size_y": shape[1],
        "size_z": shape[2],
        "spacing": "x".join(f"{s:g}" for s in spacing),
        "spacing_x": spacing[0],
        "spacing_y": spacing[1],
        "spacing_z": spacing[2],
        "dtype": dtype,
        "is_float": float(dtype.startswith("float")),
        "file_bytes": nbytes,
        "bytes_per_pixel": nbytes / float(np.prod(shape)),
        "p01": p01,
        "p50": p50,
        "p99": p99,
        "fg_median": float(np.median(arr[fg])) if fg.any() else p50,
        "brightness": feats["brightness"],
        "contrast": feats["contrast"],
        "foreground": float(fg.mean()),
        "hf_energy": feats["hf_energy"],
        THUMB_KEY: feats[THUMB_KEY],
    }
    return stats


def file_statistics(path: str | os.PathLike, hash_size: int = 8) -> dict[str, Any]:
    """:func:`image_statistics` for PNG/JPEG files, :func:`volume_statistics` for NIfTI/DICOM.

    Raises:
        BadInputError: an unsupported or unreadable file.
    """
    p = Path(path)
    if p.is_file() and file_suffix(p) in IMAGE_2D_SUFFIXES:
        return image_statistics(p, hash_size)
    if p.is_dir() or file_suffix(p) in (".nii", ".nii.gz", ".dcm"):
        return volume_statistics(p, hash_size)
    if not p.exists():
        raise BadInputError(p, "no such file or folder")
    raise BadInputError(p, "unsupported file type (expected PNG/JPEG, NIfTI or DICOM)")
