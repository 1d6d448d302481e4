"""What a scan file is, told from its name and its first bytes, and the cheap checks run before it is decoded.

File-level only (no tensors): the suffix tables, :func:`scan_kind` (which loader a path needs), :func:`sniff_format`
(a file's real format from its bytes), :func:`check_scan_file` (empty files, content not matching the extension, a
singular NIfTI affine, the :func:`max_image_gb` size limit) and the plain reasons for a reader's failure. The loaders
of :mod:`monai_anomaly.transforms.io` and the input listing of :mod:`monai_anomaly.data.inputs` both use them.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from monai.utils import optional_import

from monai_anomaly.utils.errors import BadInputError

pydicom, _ = optional_import("pydicom")

__all__ = [
    "DICOM_SUFFIXES",
    "IMAGE_SUFFIXES",
    "NIFTI_SUFFIXES",
    "check_scan_file",
    "is_dicom_file",
    "max_image_gb",
    "read_problem",
    "scan_kind",
    "sniff_format",
]

NIFTI_SUFFIXES = (".nii", ".nii.gz")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
DICOM_SUFFIXES = (".dcm", ".dicom")


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def is_dicom_file(path: Path) -> bool:
    if _suffix(path) in DICOM_SUFFIXES:
        return True
    try:
        return bool(pydicom.misc.is_dicom(str(path)))
    except Exception:  # unreadable: not DICOM for our purpose
        return False


def scan_kind(path: str | os.PathLike) -> str:
    """Which loader a path needs: ``"nifti"``, ``"image"`` (PNG/JPEG), ``"dicom"`` (one file) or ``"dicom_series"``.

    Raises:
        BadInputError: the path does not exist or is not a supported type.

    Example:
        >>> scan_kind("case1.nii.gz")  # doctest: +SKIP
        'nifti'
    """
    p = Path(path)
    if not p.exists():
        raise BadInputError(p, "no such file or folder")
    if p.is_dir():
        return "dicom_series"
    suffix = _suffix(p)
    if suffix in NIFTI_SUFFIXES:
        return "nifti"
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if is_dicom_file(p):
        return "dicom"
    raise BadInputError(
        p,
        f"unsupported file type {suffix or '(no suffix)'!r}; "
        "expected .nii/.nii.gz, .png/.jpg/.jpeg, .dcm or a DICOM folder",
    )


MAX_IMAGE_GB_ENV = "MONAI_ANOMALY_MAX_IMAGE_GB"
DEFAULT_MAX_IMAGE_GB = 4.0


def max_image_gb() -> float:
    """The largest image (as float32, in GiB) a loader accepts: ``$MONAI_ANOMALY_MAX_IMAGE_GB`` or 4."""
    raw = os.environ.get(MAX_IMAGE_GB_ENV, "").strip()
    try:
        return float(raw) if raw else DEFAULT_MAX_IMAGE_GB
    except ValueError:
        raise ValueError(f"{MAX_IMAGE_GB_ENV}={raw!r}: expected a number of GiB") from None


def sniff_format(path: str | os.PathLike) -> str:
    """What a file's first bytes say it is: ``"png"``, ``"jpeg"``, ``"gzip"``, ``"nifti"``, ``"dicom"``, ``"text"``,
    ``"empty"`` or ``"unknown"`` (used to name the real problem when a file does not match its extension).

    Example:
        >>> import tempfile, pathlib
        >>> f = pathlib.Path(tempfile.mkdtemp()) / "a.png"; _ = f.write_text("hello")
        >>> sniff_format(f)
        'text'
    """
    with open(path, "rb") as fh:
        head = fh.read(132)
    if not head:
        return "empty"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if (
        len(head) >= 4
        and int.from_bytes(head[:4], "little") in (348, 540)
        or head[:4]
        in (
            (348).to_bytes(4, "big"),
            (540).to_bytes(4, "big"),
        )
    ):
        return "nifti"
    try:
        text = head.decode("utf-8")
        if all(c.isprintable() or c in "\r\n\t" for c in text):
            return "text"
    except UnicodeDecodeError:
        pass
    return "unknown"


# what a file's content may be for its extension: PIL reads PNG, JPEG and other image formats by their content (a
# JPEG named .png is common in public sets and loads fine), so only non-images are refused for .png / .jpg
_IMAGE_CONTENT = ("png", "jpeg", "unknown")
_EXPECTED = {
    ".png": _IMAGE_CONTENT,
    ".jpg": _IMAGE_CONTENT,
    ".jpeg": _IMAGE_CONTENT,
    ".nii.gz": ("gzip",),
    ".nii": ("nifti",),
    ".dcm": ("dicom", "unknown"),  # DICOM without the 128-byte preamble sniffs as unknown; other formats are refused
}
_FORMAT_NAMES = {
    "png": "a PNG image",
    "jpeg": "a JPEG image",
    "gzip": "gzip-compressed data",
    "nifti": "an uncompressed NIfTI file",
    "dicom": "a DICOM file",
    "text": "text",
    "unknown": "none of the supported formats",
}


def check_scan_file(path: str | os.PathLike, kind: str) -> None:
    """Cheap checks before a file is decoded, so that the error names the real problem: an empty file, content that
    does not match the extension (a text file named ``.png``, a PNG named ``.nii.gz``), a NIfTI header with a
    singular affine or a size over :func:`max_image_gb`.

    Raises:
        BadInputError: naming ``path`` and the problem.
    """
    p = Path(path)
    if not p.is_file():
        return  # DICOM series folders are checked by their reader
    if p.stat().st_size == 0:
        raise BadInputError(p, "is an empty file (0 bytes)")
    found = sniff_format(p)
    expected = _EXPECTED.get(_suffix(p))
    if expected and found not in expected:
        want = {
            ".nii.gz": "a gzip-compressed NIfTI file",
            ".png": "a PNG image",
            ".nii": "an uncompressed NIfTI file",
            ".dcm": "a DICOM file",
        }
        want = want.get(_suffix(p), "a JPEG image")
        raise BadInputError(p, f"is not {want}: its content is {_FORMAT_NAMES.get(found, found)}")
    limit = max_image_gb()
    if kind == "nifti":
        import nibabel as nib

        try:
            img = nib.load(str(p))
            shape = tuple(int(x) for x in img.header.get_data_shape())
            affine = np.asarray(img.affine, dtype=np.float64)
        except Exception as e:
            raise BadInputError(p, f"has an unreadable NIfTI header ({_short(e)})") from e
        if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
            raise BadInputError(
                p, "has a singular or non-finite affine (voxel sizes of 0 or an all-zero orientation); fix the header"
            )
    elif kind == "image":
        from PIL import Image

        try:
            with Image.open(p) as im:  # reads the header only
                shape = (im.size[1], im.size[0])
        except Exception as e:
            raise BadInputError(p, f"cannot be read as an image ({_short(e)})") from e
    else:
        return
    gib = float(np.prod(shape, dtype=np.float64)) * 4 / 2**30
    if gib > limit:
        raise BadInputError(
            p,
            f"is {'x'.join(map(str, shape))} voxels, {gib:.1f} GiB as float32, over the {limit:g} GiB limit; "
            f"set {MAX_IMAGE_GB_ENV} to a larger number of GiB to load it anyway",
        )


def read_problem(e: BaseException, kind: str) -> str:
    """A plain reason for a reader's failure: truncated compressed data, or the reader's own words."""
    import gzip
    import zlib

    cur: BaseException | None = e
    while cur is not None:
        if isinstance(cur, (EOFError, zlib.error, gzip.BadGzipFile)) or "ended before" in str(cur):
            return f"is truncated or corrupt: the compressed data is incomplete ({_short(cur)})"
        if "Expected" in str(cur) and "bytes" in str(cur):
            return f"is truncated: the file is shorter than its header says ({_short(cur)})"
        cur = cur.__cause__ or cur.__context__
    return f"cannot be read as a {kind.replace('_', ' ')} ({_short(e)})"


def _short(e: BaseException, limit: int = 300) -> str:
    msg = " ".join(str(e).split())
    if len(msg) > limit:
        msg = msg[:limit] + "..."
    return f"{type(e).__name__}: {msg}"
