"""Load NIfTI, DICOM (series folder or single file), PNG and JPEG scans as channel-first float32 MetaTensors.

Conventions (see ``docs/transforms.md``):

* 3D volumes come out as ``(1, H, W, D)`` in the index order of the file's voxel grid (NIfTI ``i, j, k``; DICOM
  column, row, slice), with ``meta["affine"]`` mapping indices to RAS world coordinates, as in MONAI. With
  ``orient="RAS"`` (the default of :class:`LoadScan`) the axes are then reordered/flipped so that axis 0 runs to the
  Right, 1 to Anterior, 2 to Superior: axis 2 is axial.
* 2D images (PNG/JPEG, single-frame DICOM) come out as ``(1, H, W)`` in row-major order: ``H`` is the number of rows
  (top to bottom), ``W`` the number of columns, exactly like ``numpy.asarray(PIL.Image.open(f))``. This is *not*
  MONAI's default for PNG (``PILReader(reverse_indexing=True)`` gives ``(W, H)``): row-major keeps anomaly maps
  overlaying the picture with ``matplotlib.imshow`` and PIL with no transposition. Colour images are converted to
  one grey channel with ITU-R 601 luminance (``L = 0.299 R + 0.587 G + 0.114 B``, alpha ignored, palettes expanded),
  computed in float so nothing is rounded; 16-bit images keep their 0-65535 range.
* ``meta["spatial_shape"]`` is the shape of the grid *in the file* (MONAI semantics; orientation may permute the
  array), ``meta["original_affine"]`` the affine before orientation.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor, NibabelReader, PILReader
from monai.data.image_reader import ImageReader
from monai.transforms import LoadImage, MapTransform, Orientation, Transform
from monai.utils import TransformBackends, ensure_tuple_rep, optional_import

from monai_anomaly.data.formats import check_scan_file, is_dicom_file, read_problem, scan_kind
from monai_anomaly.utils.errors import BadInputError

pydicom, _ = optional_import("pydicom")
sitk, _ = optional_import("SimpleITK")

_RAS_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))  # MONAI's labels, given so no FutureWarning shows

__all__ = [
    "to_grey",
    "SimpleITKDicomReader",
    "LoadScan",
    "LoadScand",
    "LoadScanD",
    "LoadScanDict",
    "OrientScan",
    "OrientScand",
    "OrientScanD",
    "OrientScanDict",
]

logger = logging.getLogger("monai_anomaly")

_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601-2, what PIL uses for "L"


def to_grey(arr: np.ndarray, channel_axis: int = -1) -> np.ndarray:
    """Luminance of an RGB(A) array along ``channel_axis`` (alpha dropped), as float32; 1 channel is just squeezed.

    Example:
        >>> to_grey(np.array([[[255, 0, 0]]], dtype=np.uint8)).tolist()
        [[76.24500274658203]]
    """
    arr = np.moveaxis(np.asarray(arr), channel_axis, -1)
    n = arr.shape[-1]
    if n == 1:
        return arr[..., 0].astype(np.float32)
    if n == 2:  # grey + alpha
        return arr[..., 0].astype(np.float32)
    if n in (3, 4):
        return (arr[..., :3].astype(np.float64) @ np.asarray(_LUMA)).astype(np.float32)
    raise ValueError(f"cannot convert {n} channels to grey")


def _pil_to_grey(img: Any) -> Any:
    """PILReader converter: any PIL mode to one grey band, keeping 16/32-bit and float ranges."""
    mode = img.mode
    if mode in ("L", "F", "I") or mode.startswith("I;16"):
        return img
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif mode in ("1", "LA", "La"):
        img = img.convert("L")
        return img
    elif mode not in ("RGB", "RGBA"):  # CMYK, YCbCr, LAB, HSV, RGBX ...
        img = img.convert("RGB")
    return img.convert("F")  # float luminance (0.299 R + 0.587 G + 0.114 B), alpha ignored, no rounding


def _lps_affine(image: Any) -> np.ndarray:
    """The 4x4 LPS affine of a SimpleITK image, for index order ``(i, j, k)`` (column, row, slice)."""
    dim = image.GetDimension()
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(dim, dim)
    affine = np.eye(4)
    affine[:dim, :dim] = direction * np.asarray(image.GetSpacing(), dtype=np.float64)[None, :]
    affine[:dim, 3] = image.GetOrigin()
    return affine


class SimpleITKDicomReader(ImageReader):
    """A MONAI :class:`~monai.data.ImageReader` for DICOM, backed by SimpleITK/GDCM (MONAI's ITKReader needs ``itk``).

    A folder is read as one series: its headers are checked (one series, one slice size) and the slices sorted by
    their position along the slice normal (``ImagePositionPatient`` projected on the normal of
    ``ImageOrientationPatient``; ``InstanceNumber`` when positions are missing). A single file is read as a 2D image
    (single frame, row-major ``(rows, columns)``, affine = its pixel spacing) or a volume (multi-frame). Volumes come
    out ``(i, j, k)`` with a RAS affine, as MONAI's ITKReader / PydicomReader give. GDCM decodes compressed transfer
    syntaxes too.

    Example:
        >>> from monai.transforms import LoadImage
        >>> LoadImage(reader=SimpleITKDicomReader(), image_only=True)("series_dir")  # doctest: +SKIP
    """

    def verify_suffix(self, filename: Sequence[str | os.PathLike] | str | os.PathLike) -> bool:
        names = filename if isinstance(filename, (list, tuple)) else [filename]
        return all(Path(f).is_dir() or is_dicom_file(Path(f)) for f in names)

    @staticmethod
    def series_files(folder: str | os.PathLike) -> list[str]:
        """The DICOM files of a series folder, validated and sorted by slice position.

        Raises:
            BadInputError: no DICOM files, unreadable headers, several series, or slices of mixed sizes.
        """
        folder = Path(folder)
        names = sorted(
            f for f in folder.iterdir() if f.is_file() and not f.name.startswith(".") and f.name.upper() != "DICOMDIR"
        )
        files = [f for f in names if is_dicom_file(f)]
        if not files:
            raise BadInputError(folder, "empty DICOM folder: it holds no DICOM files")
        headers = []
        for f in files:
            try:
                headers.append(pydicom.dcmread(str(f), stop_before_pixels=True))
            except Exception as e:
                raise BadInputError(f, f"unreadable DICOM file ({type(e).__name__}: {e})") from e
        series = {str(getattr(h, "SeriesInstanceUID", "")) for h in headers}
        if len(series) > 1:
            raise BadInputError(folder, f"holds {len(series)} DICOM series; give one folder per series")
        sizes: dict[tuple[int, int], int] = {}
        for h in headers:
            if "Rows" not in h or "Columns" not in h:
                raise BadInputError(folder, "a DICOM file in this folder has no Rows/Columns (not an image)")
            key = (int(h.Rows), int(h.Columns))
            sizes[key] = sizes.get(key, 0) + 1
        if len(sizes) > 1:
            desc = ", ".join(f"{r}x{c} ({n} files)" for (r, c), n in sorted(sizes.items()))
            raise BadInputError(folder, f"DICOM series of mixed slice sizes: {desc}")

        def position(h: Any) -> float | None:
            iop, ipp = getattr(h, "ImageOrientationPatient", None), getattr(h, "ImagePositionPatient", None)
            if iop is None or ipp is None:
                return None
            normal = np.cross(np.asarray(iop[:3], float), np.asarray(iop[3:], float))
            return float(np.dot(normal, np.asarray(ipp, float)))

        positions = [position(h) for h in headers]
        if all(p is not None for p in positions):
            keys: list[Any] = positions
            if len(files) > 1 and len(set(np.round(np.asarray(positions, float), 4))) < len(files):
                raise BadInputError(
                    folder, "several DICOM slices share one position (echoes or time points?); cannot stack one volume"
                )
        else:
            keys = [int(getattr(h, "InstanceNumber", i) or i) for i, h in enumerate(headers)]
        order = sorted(range(len(files)), key=lambda i: (keys[i], str(files[i])))
        return [str(files[i]) for i in order]

    def read(self, data: Sequence[str | os.PathLike] | str | os.PathLike, **kwargs: Any) -> Any:
        names = data if isinstance(data, (list, tuple)) else [data]
        if len(names) != 1:
            raise ValueError("SimpleITKDicomReader reads one file or one series folder at a time")
        path = Path(names[0])
        if path.is_dir():
            reader = sitk.ImageSeriesReader()
            reader.SetFileNames(self.series_files(path))
            image = reader.Execute()
            return image, True
        return sitk.ReadImage(str(path)), False

    def get_data(self, img: Any) -> tuple[np.ndarray, dict]:
        image, is_series = img
        arr = sitk.GetArrayFromImage(image)  # (k, j, i[, components])
        ncomp = image.GetNumberOfComponentsPerPixel()
        if ncomp > 1:
            arr = to_grey(arr, channel_axis=-1)
        affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ _lps_affine(image)  # LPS -> RAS
        if not is_series and arr.ndim == 3 and arr.shape[0] == 1:  # single-frame file: a 2D image, row-major
            arr = arr[0]
            sx, sy = image.GetSpacing()[:2]
            affine = np.diag([float(sy), float(sx), 1.0, 1.0])  # in-plane pixel spacing, like MONAI's 2D readers
        else:
            arr = np.ascontiguousarray(np.transpose(arr, tuple(range(arr.ndim))[::-1]))  # (i, j, k)
        meta = {
            "affine": affine,
            "original_affine": affine.copy(),
            "spatial_shape": np.asarray(arr.shape),
            "original_channel_dim": float("nan"),
            "spacing": np.sqrt((affine[:3, : arr.ndim] ** 2).sum(0)),
            "space": "RAS",
        }
        return arr, meta


def _check_array(img: torch.Tensor, path: str, kind: str, allow_constant: bool) -> torch.Tensor:
    """Validate a loaded channel-first tensor: dimensionality, finiteness, not constant."""
    spatial = img.ndim - 1
    if spatial < 2:
        raise BadInputError(path, f"is a 1D array of shape {tuple(img.shape[1:])}; expected a 2D image or 3D volume")
    if spatial > 3:
        raise BadInputError(path, f"has {spatial} spatial dimensions {tuple(img.shape[1:])}; expected 2D or 3D")
    if img.shape[0] != 1:
        what = "volumes (a 4D series)" if kind in ("nifti", "dicom_series") else "channels"
        raise BadInputError(path, f"holds {img.shape[0]} {what}, shape {tuple(img.shape)}; expected one")
    if any(s == 0 for s in img.shape):
        raise BadInputError(path, f"is empty, shape {tuple(img.shape)}")
    finite = torch.isfinite(img)
    if not bool(finite.all()):
        n_nan = int(torch.isnan(img).sum())
        n_inf = int((~finite).sum()) - n_nan
        raise BadInputError(path, f"contains non-finite voxels ({n_nan} NaN, {n_inf} Inf)")
    if not allow_constant:
        lo, hi = float(img.min()), float(img.max())
        if lo == hi:
            raise BadInputError(path, f"is constant (every voxel is {lo:g}); nothing to learn from")
    return img


class LoadScan(Transform):
    """Load one scan (NIfTI, DICOM series folder or file, PNG/JPEG) as a float32 channel-first :class:`MetaTensor`.

    Wraps MONAI's :class:`~monai.transforms.LoadImage` with :class:`~monai.data.NibabelReader` (NIfTI),
    :class:`~monai.data.PILReader` (PNG/JPEG, row-major, converted to grey) and :class:`SimpleITKDicomReader`
    (DICOM). The result is ``(1, H, W)`` for 2D images and ``(1, H, W, D)`` for volumes, with ``meta`` holding
    ``affine``, ``original_affine``, ``filename_or_obj`` and ``spatial_shape``. A trailing singleton 4th dimension is
    squeezed. Volumes are oriented to ``orient`` (e.g. ``"RAS"``) with MONAI's :class:`~monai.transforms.Orientation`
    (the affine follows); 2D images are left as they are.

    Args:
        orient: axis codes to orient volumes to, or ``None`` to keep the file's voxel order.
        allow_constant: accept a constant image (e.g. an empty lesion mask); otherwise it is bad input.
        dtype: output data type.

    Raises:
        BadInputError: a missing path, an unsupported, unreadable or truncated file, a non-image renamed as one, an
            empty DICOM folder, a DICOM series of mixed slice sizes, NaN/Inf voxels, a 1D or 4D array, a constant
            image. The message starts with the file's path.

    Example:
        >>> img = LoadScan()("case1_flair.nii.gz")  # doctest: +SKIP
        >>> img.shape, img.meta["filename_or_obj"]  # doctest: +SKIP
        (torch.Size([1, 240, 240, 155]), 'case1_flair.nii.gz')
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, orient: str | None = "RAS", allow_constant: bool = False, dtype: Any = np.float32) -> None:
        self.orient = orient
        self.allow_constant = allow_constant
        self.dtype = dtype
        common: dict[str, Any] = {"image_only": True, "ensure_channel_first": True, "dtype": dtype}
        self._loaders = {
            "nifti": LoadImage(reader=NibabelReader(squeeze_non_spatial_dims=True), **common),
            "image": LoadImage(reader=PILReader(reverse_indexing=False, converter=_pil_to_grey), **common),
            "dicom": LoadImage(reader=SimpleITKDicomReader(), **common),
        }
        self._orient = OrientScan(orient) if orient else None

    def __call__(self, filename: str | os.PathLike) -> MetaTensor:
        path = str(filename)
        kind = scan_kind(path)
        if kind == "dicom_series":
            SimpleITKDicomReader.series_files(path)  # clear errors before GDCM sees the folder
        check_scan_file(path, kind)
        loader = self._loaders["dicom" if kind.startswith("dicom") else kind]
        try:
            img = loader(path)
        except BadInputError:
            raise
        except Exception as e:  # MONAI wraps reader errors in a RuntimeError listing them
            raise BadInputError(path, read_problem(e, kind)) from e
        if not isinstance(img, MetaTensor):
            img = MetaTensor(img)
        if kind == "image":  # PILReader records (width, height) whatever reverse_indexing says
            img.meta["spatial_shape"] = np.asarray(img.shape[1:])
        if "original_affine" not in img.meta:
            img.meta["original_affine"] = np.asarray(img.affine.clone())
        img.meta["filename_or_obj"] = path
        img = _check_array(img, path, kind, self.allow_constant)
        if self._orient is not None:
            img = self._orient(img)
        return img


class LoadScand(MapTransform):
    """Dictionary wrapper of :class:`LoadScan`: replaces the paths under ``keys`` with loaded MetaTensors.

    Args:
        keys: keys holding paths (e.g. ``"image"``, ``"mask"``).
        orient: axis codes to orient volumes to, or ``None`` to keep the voxel order.
        allow_constant: per key (or one for all): accept constant images (set it for masks, which may be empty).
        dtype: output data type.
        allow_missing_keys: do not fail when a key is absent.

    Example:
        >>> loader = LoadScand(keys=["image", "mask"], allow_constant=[False, True])
        >>> item = loader({"image": "case1_flair.nii.gz", "mask": "case1_wt.nii.gz"})  # doctest: +SKIP
    """

    backend = LoadScan.backend

    def __init__(
        self,
        keys: KeysCollection,
        orient: str | None = "RAS",
        allow_constant: Sequence[bool] | bool = False,
        dtype: Any = np.float32,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        flags = ensure_tuple_rep(allow_constant, len(self.keys))
        self._loaders = {flag: LoadScan(orient=orient, allow_constant=flag, dtype=dtype) for flag in set(flags)}
        self._flags = flags

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key, flag in self.key_iterator(d, self._flags):
            d[key] = self._loaders[flag](d[key])
        return d


class OrientScan(Transform):
    """Orient a ``(C, H, W, D)`` volume to ``axcodes`` with MONAI's :class:`~monai.transforms.Orientation`.

    The affine is updated (``meta["original_affine"]`` keeps the file's). 2D images ``(C, H, W)`` pass unchanged.

    Args:
        axcodes: target axis codes, e.g. ``"RAS"``.

    Example:
        >>> import torch
        >>> from monai.data import MetaTensor
        >>> vol = MetaTensor(torch.rand(1, 4, 5, 6), affine=torch.diag(torch.tensor([-1.0, -1.0, 1.0, 1.0])))
        >>> OrientScan("RAS")(vol).affine.diagonal().tolist()
        [1.0, 1.0, 1.0, 1.0]
    """

    backend = Orientation.backend

    def __init__(self, axcodes: str = "RAS") -> None:
        self.axcodes = axcodes
        self._orientation = Orientation(axcodes=axcodes, labels=_RAS_LABELS)

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        if img.ndim != 4:
            return img
        return self._orientation(img)


class OrientScand(MapTransform):
    """Dictionary wrapper of :class:`OrientScan`.

    Example:
        >>> OrientScand(keys=["image", "mask"], axcodes="RAS")  # doctest: +SKIP
    """

    backend = OrientScan.backend

    def __init__(self, keys: KeysCollection, axcodes: str = "RAS", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.orient = OrientScan(axcodes)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.orient(d[key])
        return d


LoadScanD = LoadScanDict = LoadScand
OrientScanD = OrientScanDict = OrientScand
