"""Data audit: duplicates, split leaks, label conflicts and acquisition shortcuts in an anomaly-detection data set.

Run it before trusting a number. :func:`audit_dataset` reads a data set with the same datalist builder and the same
split as the bundles (:func:`~monai_anomaly.data.layouts.build_datalist`, then
:func:`~monai_anomaly.data.splits.split_datalist` with the defaults of ``bundles/autoencoder_anomaly``), computes
per-file statistics (perceptual hashes, size, colour mode, format, JPEG quality, brightness, foreground fraction,
high-frequency energy; for volumes shape, spacing, dtype, intensity percentiles and a hash of the middle axial slice),
and then finds:

* near-duplicate groups (connected components of files whose perceptual-hash Hamming distance is at most a
  threshold) and exact duplicates (same md5);
* groups that cross the train/val/test split, and groups that hold both a normal and an abnormal file;
* a per-class statistics table;
* a cross-validated "shortcut AUROC": how well a trivial classifier separates normal from abnormal using those
  statistics alone (no anatomy), plus each feature's own AUROC.

:func:`write_audit_report` writes the human report and the tables. ``python -m monai_anomaly audit DATASET`` runs both.

Volumes are read with nibabel (NIfTI, reoriented to RAS so the last axis is axial) and SimpleITK (DICOM series,
oriented to LPS so the first array axis is axial), not with :class:`monai_anomaly.transforms.io.LoadScan`: ``data``
sits below ``transforms`` in the package's dependency order.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import os
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from monai.utils import optional_import

from monai_anomaly.data.inputs import file_suffix
from monai_anomaly.data.layouts import IMAGE_2D_SUFFIXES, build_datalist
from monai_anomaly.data.splits import split_datalist
from monai_anomaly.utils.enums import AnomalyKeys
from monai_anomaly.utils.errors import BadInputError, SkipLog
from monai_anomaly.utils.outputs import OutputKind

imagehash, _has_imagehash = optional_import("imagehash")
nib, _ = optional_import("nibabel")
sitk, _ = optional_import("SimpleITK")
pydicom, _ = optional_import("pydicom")

__all__ = [
    "AuditResult",
    "FEATURES_2D",
    "FEATURES_3D",
    "FILE_FEATURES",
    "AUDIT",
    "REPORT_FILES",
    "STD_LUMINANCE_QTABLE",
    "THUMB_KEY",
    "audit_dataset",
    "check_output_dir",
    "class_statistics",
    "duplicate_groups",
    "estimate_jpeg_quality",
    "file_statistics",
    "hamming_pairs",
    "image_statistics",
    "shortcut_auroc",
    "volume_statistics",
    "write_audit_report",
]

logger = logging.getLogger("monai_anomaly")

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

# features a shortcut classifier may use; the ones missing for some labelled file are dropped
FEATURES_2D = (
    "width",
    "height",
    "aspect",
    "is_rgb",
    "is_jpeg",
    "jpeg_quality",
    "bytes_per_pixel",
    "chroma",
    "brightness",
    "contrast",
    "foreground",
    "hf_energy",
)
FEATURES_3D = (
    "size_x",
    "size_y",
    "size_z",
    "spacing_x",
    "spacing_y",
    "spacing_z",
    "is_float",
    "bytes_per_pixel",
    "p01",
    "p50",
    "p99",
    "fg_median",
    "brightness",
    "contrast",
    "foreground",
    "hf_energy",
)
# the subset that describes the file and the acquisition, not the picture's intensities
FILE_FEATURES = (
    "width",
    "height",
    "aspect",
    "is_rgb",
    "is_jpeg",
    "jpeg_quality",
    "bytes_per_pixel",
    "chroma",
    "size_x",
    "size_y",
    "size_z",
    "spacing_x",
    "spacing_y",
    "spacing_z",
    "is_float",
)
REPORT_FILES = (
    "audit_report.txt",
    "audit.json",
    "audit_images.csv",
    "duplicate_groups.csv",
    "audit_features.png",
    "audit_shortcut.png",
)
# the audit's output folder rule (monai_anomaly.utils.outputs): the files above, an earlier one known by its report
AUDIT = OutputKind("audit", "audit report", REPORT_FILES, legacy_required=("audit_report.txt", "audit.json"))
_COLOUR_MODES = {"RGB", "RGBA", "RGBX", "RGBa", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV"}
_HF_SIZE = 128  # images are resized to this before the high-frequency energy, so their size does not bias it
_THUMB = 32  # side of the thumbnails whose correlation checks a hash link
THUMB_KEY = "_thumbnail"  # record key of that thumbnail (dropped from the audit's records)
_FG_THRESHOLD = 10.0  # grey level (0-255) above which a pixel counts as foreground
_LABEL_NAMES = {0: "normal", 1: "abnormal", -1: "unlabelled"}
_SHORTCUT_MODELS = ("logistic_regression", "random_forest")
SHORTCUT_WARNING = (
    "classes are separable without looking at anatomy: a detector's AUROC on this set may measure the source, "
    "not the disease"
)


# ----------------------------------------------------------------------------------------------------------------
# per-file statistics


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
        thumbnail that checks hash links; :func:`audit_dataset` keeps it out of its records).

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


# ----------------------------------------------------------------------------------------------------------------
# duplicates


def _hash_words(hexes: Sequence[str]) -> np.ndarray:
    """Hex hashes as an ``(n, words)`` uint64 array (all hashes must have the same length)."""
    nbytes = len(hexes[0]) // 2
    pad = (-nbytes) % 8
    raw = np.frombuffer(b"".join(bytes.fromhex(h) + b"\0" * pad for h in hexes), dtype=np.uint8)
    return raw.reshape(len(hexes), -1).view(np.uint64)


def _popcount(x: np.ndarray) -> np.ndarray:
    """Set bits per element (``numpy.bitwise_count`` needs numpy >= 2; the MONAI Label environment has numpy < 2)."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x)
    bits = np.unpackbits(np.ascontiguousarray(x).view(np.uint8).reshape(*x.shape, x.dtype.itemsize), axis=-1)
    return bits.sum(-1, dtype=np.int64)


def hamming_pairs(hexes: Sequence[str], threshold: int, chunk: int = 512) -> list[tuple[int, int, int]]:
    """All pairs ``(i, j, distance)`` with ``i < j`` whose hashes differ in at most ``threshold`` bits.

    Example:
        >>> hamming_pairs(["ff00", "ff01", "00ff"], threshold=2)
        [(0, 1, 1)]
    """
    if len(hexes) < 2:
        return []
    if len({len(h) for h in hexes}) != 1:
        raise ValueError("all hashes must have the same length")
    words = _hash_words(hexes)
    n = len(hexes)
    out: list[tuple[int, int, int]] = []
    for start in range(0, n, chunk):
        block = words[start : start + chunk]
        dist = _popcount(block[:, None, :] ^ words[None, :, :]).sum(-1)
        ii, jj = np.nonzero(dist <= threshold)
        for i, j in zip(ii.tolist(), jj.tolist()):
            i += start
            if i < j:
                out.append((i, j, int(dist[i - start, j])))
    return out


def _components(n: int, pairs: Sequence[tuple[int, int]]) -> list[int]:
    """Union-find component index of each of ``n`` nodes, numbered by first appearance."""
    parent = list(range(n))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for a, b in pairs:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    ids: dict[int, int] = {}
    return [ids.setdefault(find(i), len(ids)) for i in range(n)]


def duplicate_groups(
    records: Sequence[Mapping[str, Any]],
    hash_key: str = "phash",
    threshold: int = 4,
    thumbnails: Sequence[np.ndarray] | None = None,
    min_correlation: float | None = None,
) -> tuple[list[int], list[dict[str, Any]], list[dict[str, Any]]]:
    """Near-duplicate groups (hash distance <= ``threshold``, linked transitively) and exact (md5) duplicates.

    Args:
        records: per-file dicts with ``md5``, ``hash_key``, ``path``, ``label``, ``split`` (and ``cls``).
        hash_key: the record key holding the hex hash to compare.
        threshold: the largest Hamming distance that links two files.
        thumbnails: per record, a z-scored thumbnail (flattened); the correlation of each hash link is then
            recorded (``min_link_correlation`` of a group).
        min_correlation: with ``thumbnails``, keep only the hash links whose thumbnails correlate at least this
            much (exact md5 copies always link). Use it when hash links chain distinct images into huge groups.

    Returns:
        ``(component, groups, exact_groups)``: the component index of each record; the groups of two or more
        records, each ``{"group", "size", "members" (record indices), "paths", "labels", "classes", "splits",
        "crosses_split", "both_classes", "exact", "max_link_distance", "min_link_correlation"}``, largest first;
        and the md5 groups of two or more records (``{"md5", "size", "members", "paths"}``).
    """
    n = len(records)
    near = hamming_pairs([str(r[hash_key]) for r in records], threshold) if n else []
    corr: list[float | None] = [None] * len(near)
    if thumbnails is not None and near:
        t = np.stack([np.asarray(x, dtype=np.float64).ravel() for x in thumbnails])
        ii = np.asarray([i for i, _, _ in near])
        jj = np.asarray([j for _, j, _ in near])
        corr = (t[ii] * t[jj]).mean(axis=1).tolist()
        if min_correlation is not None:
            keep = [k for k, c in enumerate(corr) if c >= min_correlation]
            near, corr = [near[k] for k in keep], [corr[k] for k in keep]
    by_md5: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        by_md5[str(r["md5"])].append(i)
    exact_pairs = [(m[0], j) for m in by_md5.values() for j in m[1:]]
    comp = _components(n, [(i, j) for i, j, _ in near] + exact_pairs)
    link_max: dict[int, int] = defaultdict(int)
    link_corr: dict[int, float] = {}
    for (i, _j, d), c in zip(near, corr):
        link_max[comp[i]] = max(link_max[comp[i]], d)
        if c is not None:
            link_corr[comp[i]] = min(link_corr.get(comp[i], 1.0), float(c))
    members: dict[int, list[int]] = defaultdict(list)
    for i, c in enumerate(comp):
        members[c].append(i)
    groups = []
    for c, idx in members.items():
        if len(idx) < 2:
            continue
        labels = sorted({int(records[i]["label"]) for i in idx})
        splits = sorted({str(records[i].get("split") or "") for i in idx})
        groups.append(
            {
                "group": c,
                "size": len(idx),
                "members": idx,
                "paths": [str(records[i]["path"]) for i in idx],
                "labels": labels,
                "classes": sorted({str(records[i].get("cls", "")) for i in idx}),
                "splits": splits,
                "crosses_split": len(splits) > 1,
                "both_classes": 0 in labels and 1 in labels,
                "exact": len({records[i]["md5"] for i in idx}) == 1,
                "max_link_distance": link_max.get(c, 0),
                "min_link_correlation": link_corr.get(c),
            }
        )
    groups.sort(key=lambda g: (-g["size"], g["group"]))
    exact = [
        {"md5": m, "size": len(idx), "members": idx, "paths": [str(records[i]["path"]) for i in idx]}
        for m, idx in by_md5.items()
        if len(idx) > 1
    ]
    exact.sort(key=lambda g: (-g["size"], g["paths"][0]))
    return comp, groups, exact


# ----------------------------------------------------------------------------------------------------------------
# statistics and the shortcut classifier


def _finite(values: Sequence[Any]) -> np.ndarray:
    arr = np.asarray([v for v in values if v is not None], dtype=np.float64)
    return arr[np.isfinite(arr)]


def _mean_std(values: Sequence[Any]) -> tuple[float | None, float | None]:
    a = _finite(values)
    return (float(a.mean()), float(a.std())) if a.size else (None, None)


def _median(values: Sequence[Any]) -> float | None:
    a = _finite(values)
    return float(np.median(a)) if a.size else None


def class_statistics(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row of summary statistics per label (normal / abnormal / unlabelled) and per class folder within a label.

    Returns:
        rows with ``name``, ``label``, ``n`` and, for 2D files, ``width``/``height`` (min, median, max), ``modes``,
        ``formats`` (counts), ``jpeg_quality_median``; for volumes ``shapes``, ``spacings``, ``dtypes`` (counts),
        ``p99_median``; for both ``brightness``, ``contrast``, ``foreground``, ``hf_energy``, ``chroma`` (mean, std) and
        ``bytes_per_pixel_median``.
    """
    by_label: dict[int, list[Mapping]] = defaultdict(list)
    for r in records:
        by_label[int(r["label"])].append(r)
    rows: list[dict[str, Any]] = []

    def row(name: str, label: int, rs: Sequence[Mapping]) -> dict[str, Any]:
        out: dict[str, Any] = {"name": name, "label": label, "n": len(rs)}
        r2 = [r for r in rs if r.get("kind") == "2d"]
        r3 = [r for r in rs if r.get("kind") == "3d"]
        if r2:
            for k in ("width", "height"):
                a = _finite([r[k] for r in r2])
                out[k] = [float(a.min()), float(np.median(a)), float(a.max())]
            out["modes"] = dict(Counter(r["mode"] for r in r2).most_common())
            out["formats"] = dict(Counter(r["format"] for r in r2).most_common())
            out["n_jpeg"] = sum(1 for r in r2 if r.get("jpeg_quality") is not None)
            out["jpeg_quality_median"] = _median([r.get("jpeg_quality") for r in r2])
        if r3:
            out["shapes"] = dict(Counter(r["shape"] for r in r3).most_common())
            out["spacings"] = dict(Counter(r["spacing"] for r in r3).most_common())
            out["dtypes"] = dict(Counter(r["dtype"] for r in r3).most_common())
            out["p99_median"] = _median([r.get("p99") for r in r3])
        for k in ("brightness", "contrast", "foreground", "hf_energy", "chroma"):
            out[k] = list(_mean_std([r.get(k) for r in rs]))
        out["bytes_per_pixel_median"] = _median([r.get("bytes_per_pixel") for r in rs])
        return out

    for label in sorted(by_label, key=lambda v: (v < 0, v)):
        rs = by_label[label]
        rows.append(row(_LABEL_NAMES.get(label, str(label)), label, rs))
        by_cls: dict[str, list[Mapping]] = defaultdict(list)
        for r in rs:
            by_cls[str(r.get("cls", ""))].append(r)
        if len(by_cls) > 1:
            for cls in sorted(by_cls):
                rows.append(row(f"{_LABEL_NAMES.get(label, str(label))}: {cls}", label, by_cls[cls]))
    return rows


def _feature_matrix(records: Sequence[Mapping[str, Any]], features: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """The features present (finite) for every record; ``jpeg_quality`` of non-JPEG files counts as 100."""
    cols, names = [], []
    for f in features:
        vals = []
        for r in records:
            v = r.get(f)
            if f == "jpeg_quality" and v is None and r.get("kind") == "2d":
                v = 100.0  # lossless
            vals.append(np.nan if v is None else float(v))
        a = np.asarray(vals, dtype=np.float64)
        if a.size and np.isfinite(a).all():
            cols.append(a)
            names.append(f)
    if not cols:
        return np.zeros((len(records), 0)), []
    return np.stack(cols, axis=1), names


def shortcut_auroc(
    records: Sequence[Mapping[str, Any]],
    groups: Sequence[Any] | None = None,
    features: Sequence[str] | None = None,
    n_splits: int = 5,
    seed: int = 0,
    warn_auroc: float = 0.8,
) -> dict[str, Any]:
    """How well acquisition statistics alone separate normal (label 0) from abnormal (label 1) files.

    A logistic regression (on standardized features) and a random forest are trained and tested with
    :class:`~sklearn.model_selection.StratifiedGroupKFold` (near-duplicate groups never straddle a fold), and their
    mean test AUROC is reported; each feature's own AUROC is reported as ``max(a, 1 - a)`` with the direction.

    Args:
        records: per-file statistics with ``label``; files labelled -1 are ignored.
        groups: a group id per record (e.g. the near-duplicate component); default: one group per file.
        features: feature names to use (default :data:`FEATURES_2D` + :data:`FEATURES_3D`, those present in every
            labelled record).
        n_splits: folds (fewer when a class has fewer groups); at least 2 are needed.
        seed: fold shuffling and forest seed.
        warn_auroc: the AUROC at or above which ``warning`` is set.

    Returns:
        ``{"computable", "reason", "n", "n_normal", "n_abnormal", "n_splits", "features", "models": {name: {"mean",
        "std", "folds"}}, "auroc" (best model mean), "best_model", "single_feature": [{"feature", "auroc", "raw_auroc",
        "direction"}, ...] (highest first), "warning"}``.

    Example:
        >>> recs = [{"label": i % 2, "width": 100 + 50 * (i % 2) + i % 7, "kind": "2d"} for i in range(40)]
        >>> shortcut_auroc(recs, features=["width"])["auroc"] > 0.9
        True
    """
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedGroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    idx = [i for i, r in enumerate(records) if int(r["label"]) in (0, 1)]
    recs = [records[i] for i in idx]
    y = np.asarray([int(r["label"]) for r in recs])
    grp = np.asarray([str(groups[i]) for i in idx] if groups is not None else [str(i) for i in idx])
    feats = list(features) if features is not None else list(dict.fromkeys(FEATURES_2D + FEATURES_3D))
    X, names = _feature_matrix(recs, feats)
    out: dict[str, Any] = {
        "computable": False,
        "reason": "",
        "n": len(recs),
        "n_normal": int((y == 0).sum()),
        "n_abnormal": int((y == 1).sum()),
        "n_splits": 0,
        "features": names,
        "models": {},
        "auroc": None,
        "best_model": None,
        "single_feature": [],
        "warning": False,
    }
    if out["n_normal"] == 0 or out["n_abnormal"] == 0:
        out["reason"] = "only one class present (needs normal and abnormal files)"
        return out
    if not names:
        out["reason"] = "no feature is available for every file"
        return out
    single = []
    for k, name in enumerate(names):
        col = X[:, k]
        raw = 0.5 if np.ptp(col) == 0 else float(roc_auc_score(y, col))
        direction = "constant" if np.ptp(col) == 0 else ("higher in abnormal" if raw >= 0.5 else "lower in abnormal")
        single.append({"feature": name, "auroc": max(raw, 1.0 - raw), "raw_auroc": raw, "direction": direction})
    single.sort(key=lambda d: (-d["auroc"], d["feature"]))
    out["single_feature"] = single
    groups_per_class = min(len(set(grp[y == 0])), len(set(grp[y == 1])))
    k = min(int(n_splits), groups_per_class)
    if k < 2:
        out["reason"] = f"too few independent groups per class ({groups_per_class}) for cross-validation"
        return out
    out["n_splits"] = k
    cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    models = {
        "logistic_regression": lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
        "random_forest": lambda: RandomForestClassifier(
            n_estimators=100, min_samples_leaf=2, random_state=seed, n_jobs=1
        ),
    }
    for name, make in models.items():
        folds = []
        for tr, te in cv.split(X, y, grp):
            if len(set(y[tr])) < 2 or len(set(y[te])) < 2:
                continue
            clf = make().fit(X[tr], y[tr])
            folds.append(float(roc_auc_score(y[te], clf.predict_proba(X[te])[:, 1])))
        if folds:
            out["models"][name] = {"mean": float(np.mean(folds)), "std": float(np.std(folds)), "folds": folds}
    if not out["models"]:
        out["reason"] = "no fold had both classes in its test part"
        return out
    best = max(out["models"], key=lambda m: out["models"][m]["mean"])
    out.update(computable=True, auroc=out["models"][best]["mean"], best_model=best)
    out["warning"] = bool(out["auroc"] >= warn_auroc)
    return out


# ----------------------------------------------------------------------------------------------------------------
# the audit


@dataclass
class AuditResult:
    """Everything :func:`audit_dataset` found.

    Attributes:
        dataset_dir: the folder (or manifest) audited.
        layout: the layout it was read as.
        kind: ``"2d"``, ``"3d"`` or ``"mixed"``.
        params: the audit's settings (hash, threshold, split fractions, seed, ...).
        records: one dict of statistics per file (``path``, ``rel_path``, ``label``, ``cls``, ``role``, ``split``,
            ``group`` (the datalist's), ``dup_group``, ``dup_group_size`` and the statistics of
            :func:`image_statistics` / :func:`volume_statistics`).
        groups: near-duplicate groups of two or more files (see :func:`duplicate_groups`).
        exact_groups: files with the same md5.
        class_stats: :func:`class_statistics` rows.
        shortcut: :func:`shortcut_auroc` result on all statistics (what the warning is about).
        split_counts: ``{split: {label name: count}}`` of the split the bundles use.
        skipped: ``[{"path", "problem"}]`` bad inputs skipped (``skip_bad``).
        warnings: the serious findings, one sentence each.
        findings: the short human summary (warnings first).
        shortcut_file: :func:`shortcut_auroc` on the file/acquisition features only (:data:`FILE_FEATURES`: size,
            colour mode, format, JPEG quality, bytes per pixel, spacing, dtype), leaving out the intensity statistics
            (brightness, contrast, foreground, HF energy), which a large lesion can move too.

    Example:
        >>> result = audit_dataset("brain_tumor_yes_no")  # doctest: +SKIP
        >>> write_audit_report(result, "audit")  # doctest: +SKIP
    """

    dataset_dir: str
    layout: str
    kind: str
    params: dict[str, Any]
    records: list[dict[str, Any]]
    groups: list[dict[str, Any]]
    exact_groups: list[dict[str, Any]]
    class_stats: list[dict[str, Any]]
    shortcut: dict[str, Any]
    split_counts: dict[str, dict[str, int]]
    skipped: list[dict[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    shortcut_file: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def crossing_groups(self) -> list[dict[str, Any]]:
        """Near-duplicate groups whose files fall in more than one split."""
        return [g for g in self.groups if g["crosses_split"]]

    @property
    def both_class_groups(self) -> list[dict[str, Any]]:
        """Near-duplicate groups holding both a normal and an abnormal file."""
        return [g for g in self.groups if g["both_classes"]]


def _rel(path: str, root: Path) -> str:
    try:
        return Path(os.path.relpath(path, root if root.is_dir() else root.parent)).as_posix()
    except ValueError:
        return path


def audit_dataset(
    dataset_dir: str | os.PathLike,
    layout: str = "auto",
    skip_bad: bool = False,
    default_label: int | None = None,
    hash_method: str = "phash",
    hash_size: int = 8,
    hash_threshold: int = 4,
    min_correlation: float | None = None,
    val_fraction: float = 0.15,
    test_fraction: float = 0.3,
    seed: int = 0,
    n_splits: int = 5,
    warn_auroc: float = 0.8,
    progress: bool = True,
) -> AuditResult:
    """Audit a data set: duplicates, split leaks, label conflicts, per-class statistics and the shortcut AUROC.

    Args:
        dataset_dir: a data-set folder in any layout :func:`~monai_anomaly.data.layouts.build_datalist` reads, or a
            CSV manifest.
        layout: ``"auto"`` or a layout name (``normal_abnormal``, ``oct2017``, ``brainomaly``, ``volumes_csv``,
            ``manifest``).
        skip_bad: skip unreadable files (listed in the result) instead of raising.
        default_label: the label of volumes in a folder without labels.csv (e.g. a lone DICOM series: 0).
        hash_method: ``"phash"`` or ``"dhash"``: the hash near-duplicates are grouped by (both are recorded).
        hash_size: hash side; 8 gives 64-bit hashes, 16 gives 256-bit ones.
        hash_threshold: the largest Hamming distance that links two files into one group.
        min_correlation: also require a hash link's two 32x32 z-scored thumbnails to correlate at least this much
            (e.g. 0.98); ``None`` keeps every hash link. The report warns when groups chain (one group holding many
            files): registered, skull-stripped slices of different subjects can be hash neighbours.
        val_fraction: as in the bundle's ``train.json`` (0.15).
        test_fraction: as in the bundle's ``train.json`` (0.3).
        seed: split seed, as in the bundle's ``train.json`` (0); also seeds the shortcut classifier's folds.
        n_splits: folds of the shortcut classifier.
        warn_auroc: shortcut AUROC at or above which a warning is raised.
        progress: show a tqdm progress bar while reading the files.

    Returns:
        an :class:`AuditResult`.

    Raises:
        BadInputError: a missing folder, no known layout, or (unless ``skip_bad``) an unreadable file; the message
            names the file.
        ValueError: an unknown ``hash_method`` or a bad split fraction.
    """
    from tqdm import tqdm

    if hash_method not in ("phash", "dhash"):
        raise ValueError(f"hash_method must be 'phash' or 'dhash', got {hash_method!r}")
    if int(hash_size) < 2:
        raise ValueError(f"hash_size must be at least 2, got {hash_size}")
    dl = build_datalist(dataset_dir, layout=layout, skip_bad=skip_bad, default_label=default_label)
    root = Path(dl.root)
    splits = split_datalist(dl.items, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)
    split_of = {it[AnomalyKeys.IMAGE.value]: s for s, its in splits.items() for it in its}
    log = SkipLog(skip_bad)
    records: list[dict[str, Any]] = []
    thumbs: list[np.ndarray] = []
    items = dl.items
    bar = tqdm(items, desc="audit: reading files", unit="file", disable=not progress or len(items) < 20, mininterval=1)
    for it in bar:
        path = str(it[AnomalyKeys.IMAGE.value])
        try:
            stats = file_statistics(path, hash_size=hash_size)
        except BadInputError as e:
            log.handle(e)
            continue
        rec: dict[str, Any] = {
            "path": path,
            "rel_path": _rel(path, root),
            "label": int(it.get(AnomalyKeys.LABEL.value, -1)),
            "cls": str(it.get(AnomalyKeys.CLASS.value, "")),
            "role": str(it.get(AnomalyKeys.ROLE.value, "")),
            "split": split_of.get(path, ""),
            "group": str(it.get(AnomalyKeys.GROUP.value, "")),
        }
        thumbs.append(stats.pop(THUMB_KEY))
        rec.update(stats)
        records.append(rec)
    if not records:
        raise BadInputError(root, "no readable file to audit")
    skipped = list(dl.skipped) + log.as_list()

    comp, groups, exact = duplicate_groups(
        records, hash_method, hash_threshold, thumbnails=thumbs, min_correlation=min_correlation
    )
    sizes = Counter(comp)
    for r, c in zip(records, comp):
        r["dup_group"] = c
        r["dup_group_size"] = sizes[c]
    kinds = {r["kind"] for r in records}
    kind = kinds.pop() if len(kinds) == 1 else "mixed"
    shortcut = shortcut_auroc(records, groups=comp, n_splits=n_splits, seed=seed, warn_auroc=warn_auroc)
    shortcut_file = shortcut_auroc(
        records, groups=comp, features=FILE_FEATURES, n_splits=n_splits, seed=seed, warn_auroc=warn_auroc
    )
    split_counts: dict[str, dict[str, int]] = {}
    for r in records:
        d = split_counts.setdefault(r["split"] or "(none)", {})
        name = _LABEL_NAMES.get(r["label"], str(r["label"]))
        d[name] = d.get(name, 0) + 1
    params = {
        "layout": str(layout),
        "skip_bad": bool(skip_bad),
        "default_label": default_label,
        "hash_method": hash_method,
        "hash_size": int(hash_size),
        "hash_bits": int(hash_size) ** 2,
        "hash_threshold": int(hash_threshold),
        "min_correlation": None if min_correlation is None else float(min_correlation),
        "val_fraction": float(val_fraction),
        "test_fraction": float(test_fraction),
        "seed": int(seed),
        "n_splits": int(n_splits),
        "warn_auroc": float(warn_auroc),
    }
    result = AuditResult(
        dataset_dir=str(root),
        layout=str(dl.layout.value if hasattr(dl.layout, "value") else dl.layout),
        kind=kind,
        params=params,
        records=records,
        groups=groups,
        exact_groups=exact,
        class_stats=class_statistics(records),
        shortcut=shortcut,
        split_counts=split_counts,
        skipped=skipped,
        shortcut_file=shortcut_file,
    )
    result.warnings, result.findings = _summarize(result)
    return result


def _fmt(v: Any, nd: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "-"
        return f"{v:.{nd}g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def _summarize(res: AuditResult) -> tuple[list[str], list[str]]:
    """``(warnings, findings)`` sentences; findings start with the warnings."""
    warnings: list[str] = []
    info: list[str] = []
    p = res.params
    sc = res.shortcut
    n_dup_files = sum(g["size"] for g in res.groups)
    cross, both = res.crossing_groups, res.both_class_groups
    if sc.get("warning"):
        top = ", ".join(f"{d['feature']} {d['auroc']:.2f}" for d in sc["single_feature"][:3])
        warnings.append(
            f"WARNING: shortcut AUROC {sc['auroc']:.3f} ({sc['best_model']}) >= {p['warn_auroc']:g}: "
            f"{SHORTCUT_WARNING}. Top features: {top}."
        )
    if both:
        n = sum(g["size"] for g in both)
        warnings.append(
            f"WARNING: {len(both)} near-duplicate group(s) ({n} files) hold both normal and abnormal files: "
            "the same image is labelled normal and abnormal."
        )
    if cross:
        n = sum(g["size"] for g in cross)
        pairs = Counter("/".join(g["splits"]) for g in cross)
        how = ", ".join(f"{k}: {v}" for k, v in pairs.most_common())
        warnings.append(
            f"WARNING: {len(cross)} near-duplicate group(s) ({n} files) cross the train/val/test split the bundles "
            f"use (val {p['val_fraction']:g}, test {p['test_fraction']:g}, seed {p['seed']}) [{how}]: the same "
            "picture is seen in training and scored in evaluation."
        )
    big = res.groups[0] if res.groups else None
    if big is not None and big["size"] > max(20, 0.05 * len(res.records)):
        warnings.append(
            f"WARNING: the largest near-duplicate group holds {big['size']} of {len(res.records)} files (its weakest "
            f"link correlates {_fmt(big['min_link_correlation'])}): hash links are chaining distinct images, so the "
            "group counts above are upper bounds. Re-run with a stricter --hash_threshold or --min_correlation 0.98."
        )
    if res.skipped:
        warnings.append(f"WARNING: {len(res.skipped)} bad file(s) skipped (listed below).")
    info.append(
        f"{len(res.records)} files ({res.kind}, layout {res.layout}): "
        + ", ".join(f"{k} {v}" for k, v in Counter(_LABEL_NAMES.get(r["label"], "?") for r in res.records).items())
    )
    info.append(
        f"near-duplicates ({p['hash_method']} {p['hash_bits']}-bit, distance <= {p['hash_threshold']}"
        + (f", thumbnail correlation >= {p['min_correlation']:g}" if p.get("min_correlation") is not None else "")
        + "): "
        f"{len(res.groups)} group(s) of 2+ files covering {n_dup_files} files"
        + (f", largest {res.groups[0]['size']}" if res.groups else "")
        + f"; exact (md5) duplicate sets: {len(res.exact_groups)} "
        f"({sum(g['size'] for g in res.exact_groups)} files)"
    )
    info.append(f"groups crossing the split: {len(cross)}; groups with both classes: {len(both)}")
    if sc.get("computable"):
        models = ", ".join(f"{m} {v['mean']:.3f} +/- {v['std']:.3f}" for m, v in sc["models"].items())
        top = ", ".join(f"{d['feature']} {d['auroc']:.2f} ({d['direction']})" for d in sc["single_feature"][:5])
        info.append(f"shortcut AUROC ({sc['n_splits']}-fold, grouped by near-duplicate group): {models}")
        info.append(f"top single-feature AUROCs: {top}")
        scf = res.shortcut_file
        if scf.get("computable"):
            info.append(
                f"shortcut AUROC on file/acquisition features only ({', '.join(scf['features'])}): "
                + ", ".join(f"{m} {v['mean']:.3f}" for m, v in scf["models"].items())
            )
    else:
        info.append(f"shortcut AUROC: not computed ({sc.get('reason', '')})")
    if not warnings:
        shortcut_note = "no strong acquisition shortcut" if sc.get("computable") else "shortcut AUROC not computable"
        info.insert(0, f"no warning: no near-duplicates across the split or the classes; {shortcut_note}.")
    return warnings, warnings + info


# ----------------------------------------------------------------------------------------------------------------
# the report


def check_output_dir(output_dir: str | os.PathLike, overwrite: bool = False) -> Path:
    """The report folder, refusing to write into an existing non-empty one unless ``overwrite``.

    Raises:
        FileExistsError: ``output_dir`` exists and is not empty, and ``overwrite`` is false.
        NotADirectoryError: ``output_dir`` is a file.
    """
    out = Path(output_dir).expanduser().absolute()
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out}: exists and is not a folder")
    ours = (".monai_anomaly", ".monai_anomaly.lock")  # the marker and lock of utils.outputs
    if out.is_dir() and any(p.name not in ours for p in out.iterdir()) and not overwrite:
        raise FileExistsError(
            f"{out}: already exists and is not empty; pass overwrite=True (--overwrite) or choose another output_dir"
        )
    return out


def _jsonable(o: Any) -> Any:
    if isinstance(o, Mapping):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple, set)):
        return [_jsonable(v) for v in o]
    if isinstance(o, np.generic):
        return _jsonable(o.item())
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return o


_CSV_FIRST = ("rel_path", "label", "cls", "role", "split", "group", "dup_group", "dup_group_size", "kind", "md5")


def _write_images_csv(res: AuditResult, path: Path) -> None:
    keys: list[str] = list(_CSV_FIRST) + ["phash", "dhash"]
    for r in res.records:
        for k in r:
            if k not in keys and k != "path":
                keys.append(k)
    keys.append("path")
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        for r in res.records:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in keys})


def _write_groups_csv(res: AuditResult, path: Path) -> None:
    hk = res.params["hash_method"]
    keys = ["dup_group", "group_size", "exact", "crosses_split", "both_classes", "group_splits", "group_labels"]
    keys += ["rel_path", "label", "cls", "split", "md5", hk, "path"]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for g in res.groups:
            for i in g["members"]:
                r = res.records[i]
                w.writerow(
                    {
                        "dup_group": g["group"],
                        "group_size": g["size"],
                        "exact": int(g["exact"]),
                        "crosses_split": int(g["crosses_split"]),
                        "both_classes": int(g["both_classes"]),
                        "group_splits": "/".join(g["splits"]),
                        "group_labels": "/".join(str(v) for v in g["labels"]),
                        "rel_path": r["rel_path"],
                        "label": r["label"],
                        "cls": r["cls"],
                        "split": r["split"],
                        "md5": r["md5"],
                        hk: r[hk],
                        "path": r["path"],
                    }
                )


def _class_table(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    def ms(v: Sequence[Any]) -> str:
        return "-" if not v or v[0] is None else f"{v[0]:.3g}+/-{v[1]:.2g}"

    def counts(d: Mapping[str, int] | None, limit: int = 3) -> str:
        if not d:
            return "-"
        items = list(d.items())
        s = " ".join(f"{k}:{v}" for k, v in items[:limit])
        return s + (" ..." if len(items) > limit else "")

    header = ["class", "n", "size (w x h median) / shape", "modes / dtype", "formats / spacing", "jpeg q"]
    header += ["brightness", "foreground", "hf energy", "chroma"]
    table = [header]
    for r in rows:
        if "width" in r:
            size = f"{r['width'][1]:.0f}x{r['height'][1]:.0f} ({r['width'][0]:.0f}-{r['width'][2]:.0f} wide)"
            modes, fmts = counts(r.get("modes")), counts(r.get("formats"))
        else:
            size, modes, fmts = counts(r.get("shapes"), 2), counts(r.get("dtypes"), 2), counts(r.get("spacings"), 2)
        table.append(
            [
                r["name"],
                str(r["n"]),
                size,
                modes,
                fmts,
                _fmt(r.get("jpeg_quality_median")),
                ms(r["brightness"]),
                ms(r["foreground"]),
                ms(r["hf_energy"]),
                ms(r["chroma"]),
            ]
        )
    widths = [max(len(row[k]) for row in table) for k in range(len(header))]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table]


def _report_text(res: AuditResult, limit: int = 10) -> str:
    p = res.params
    lines = [f"Data audit of {res.dataset_dir}", ""]
    lines += ["Findings", "--------"] + [f"- {s}" for s in res.findings] + [""]

    def group_block(title: str, groups: Sequence[Mapping[str, Any]]) -> None:
        if not groups:
            return
        lines.extend([f"{title} ({len(groups)}; first {min(limit, len(groups))} shown)", ""])
        for g in groups[:limit]:
            lines.append(
                f"  group {g['group']}: {g['size']} files, splits {'/'.join(g['splits'])}, labels "
                f"{'/'.join(str(v) for v in g['labels'])}{', exact copies' if g['exact'] else ''}, "
                f"max hash distance {g['max_link_distance']}, "
                f"weakest link correlation {_fmt(g['min_link_correlation'])}"
            )
            for i in g["members"][:8]:
                r = res.records[i]
                lines.append(f"    [{r['split'] or '-'}] label {r['label']} {r['cls']}: {r['rel_path']}")
            if g["size"] > 8:
                lines.append(f"    ... {g['size'] - 8} more (duplicate_groups.csv)")
        lines.append("")

    group_block("Groups holding both normal and abnormal files", res.both_class_groups)
    group_block("Groups crossing the train/val/test split", res.crossing_groups)
    lines += ["Split used (as the bundles do)", "------------------------------"]
    lines += [
        f"  {s}: " + ", ".join(f"{k} {v}" for k, v in sorted(d.items())) for s, d in sorted(res.split_counts.items())
    ]
    lines += [f"  (val_fraction {p['val_fraction']:g}, test_fraction {p['test_fraction']:g}, seed {p['seed']})", ""]
    lines += ["Per-class statistics", "--------------------"] + ["  " + s for s in _class_table(res.class_stats)]
    lines.append("")
    sc = res.shortcut
    lines += ["Shortcut classifier (acquisition statistics only, no anatomy)", "-" * 62]
    if sc.get("computable"):
        for m, v in sc["models"].items():
            folds = ", ".join(f"{a:.3f}" for a in v["folds"])
            lines.append(f"  {m}: AUROC {v['mean']:.3f} +/- {v['std']:.3f} ({sc['n_splits']} folds: {folds})")
        scf = res.shortcut_file
        if scf.get("computable"):
            models = ", ".join(f"{m} {v['mean']:.3f} +/- {v['std']:.3f}" for m, v in scf["models"].items())
            lines.append(f"  file/acquisition features only ({', '.join(scf['features'])}): {models}")
    else:
        lines.append(f"  not computed: {sc.get('reason', '')}")
    if sc.get("single_feature"):
        lines.append("  single-feature AUROC (max(a, 1-a)):")
        for d in sc["single_feature"]:
            lines.append(f"    {d['feature']:<16} {d['auroc']:.3f}  {d['direction']}")
    lines.append("")
    if res.skipped:
        lines += ["Skipped bad files", "-----------------"] + [f"  {s['path']}: {s['problem']}" for s in res.skipped]
        lines.append("")
    lines += [
        "Files: audit.json (everything), audit_images.csv (one row per file), duplicate_groups.csv, "
        "audit_features.png, audit_shortcut.png",
    ]
    return "\n".join(lines) + "\n"


def _new_figure(figsize: tuple[float, float]) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _plot_features(res: AuditResult, path: Path) -> None:
    feats = [("brightness", "mean brightness (0-255)"), ("foreground", "foreground fraction")]
    feats += [("hf_energy", "high-frequency energy")]
    fig = _new_figure((12.0, 3.6))
    by_label: dict[int, list[Mapping]] = defaultdict(list)
    for r in res.records:
        by_label[int(r["label"])].append(r)
    for k, (key, title) in enumerate(feats):
        ax = fig.add_subplot(1, len(feats), k + 1)
        allv = _finite([r.get(key) for r in res.records])
        bins = np.histogram_bin_edges(allv, bins=30) if allv.size and np.ptp(allv) > 0 else 10
        for label in sorted(by_label):
            v = _finite([r.get(key) for r in by_label[label]])
            if v.size:
                ax.hist(v, bins=bins, alpha=0.5, density=True, label=f"{_LABEL_NAMES.get(label, label)} ({v.size})")
        ax.set_title(title)
        ax.set_ylabel("density")
        ax.legend(fontsize=8)
    fig.suptitle(f"Per-class file statistics: {Path(res.dataset_dir).name}")
    fig.tight_layout()
    fig.savefig(path)


def _plot_shortcut(res: AuditResult, path: Path) -> None:
    sc = res.shortcut
    single = sc.get("single_feature") or []
    fig = _new_figure((7.0, max(3.0, 0.35 * len(single) + 1.5)))
    ax = fig.add_subplot(1, 1, 1)
    if single:
        names = [d["feature"] for d in single][::-1]
        vals = [d["auroc"] for d in single][::-1]
        colours = ["tab:red" if v >= res.params["warn_auroc"] else "tab:blue" for v in vals]
        ax.barh(names, vals, color=colours)
        ax.axvline(0.5, color="grey", ls="--", lw=1)
        ax.axvline(res.params["warn_auroc"], color="tab:red", ls=":", lw=1)
        ax.set_xlim(0.4, 1.0)
        ax.set_xlabel("single-feature AUROC, max(a, 1-a)")
    else:
        ax.text(0.5, 0.5, f"not computed: {sc.get('reason', '')}", ha="center", va="center", wrap=True)
        ax.set_axis_off()
    if sc.get("computable"):
        models = ", ".join(f"{m.replace('_', ' ')} {v['mean']:.2f}" for m, v in sc["models"].items())
        ax.set_title(f"Shortcut AUROC (CV): {models}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)


def write_audit_report(result: AuditResult, output_dir: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write the audit's files into ``output_dir``.

    Files: ``audit_report.txt`` (findings first), ``audit.json`` (everything), ``audit_images.csv`` (one row per
    file: statistics, hashes, near-duplicate group, split, label), ``duplicate_groups.csv`` (one row per file of each
    group of two or more), ``audit_features.png`` (per-class histograms of brightness, foreground fraction and
    high-frequency energy) and ``audit_shortcut.png`` (single-feature AUROCs).

    Args:
        result: what :func:`audit_dataset` returned.
        output_dir: the folder to write (created).
        overwrite: write into an existing non-empty folder (the audit's own files are replaced).

    Returns:
        the folder written.

    Raises:
        FileExistsError: ``output_dir`` exists, is not empty, and ``overwrite`` is false.
    """
    out = check_output_dir(output_dir, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    (out / "audit_report.txt").write_text(_report_text(result))
    doc = result.as_dict()
    doc["report_files"] = list(REPORT_FILES)
    (out / "audit.json").write_text(json.dumps(_jsonable(doc), indent=1))
    _write_images_csv(result, out / "audit_images.csv")
    _write_groups_csv(result, out / "duplicate_groups.csv")
    _plot_features(result, out / "audit_features.png")
    _plot_shortcut(result, out / "audit_shortcut.png")
    return out
