"""Tests for monai_anomaly.transforms.io: loading NIfTI, DICOM, PNG/JPEG, orientation and bad input."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from monai.data import MetaTensor
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from monai_anomaly.data.formats import scan_kind
from monai_anomaly.transforms.io import LoadScan, LoadScand, OrientScan, OrientScand, to_grey
from monai_anomaly.utils.errors import BadInputError

LPS_AFFINE = np.array([[-2.0, 0, 0, 10.0], [0, -1.5, 0, 20.0], [0, 0, 3.0, -5.0], [0, 0, 0, 1]])


def _nifti(path: Path, arr: np.ndarray, affine: np.ndarray = LPS_AFFINE) -> Path:
    nib.save(nib.Nifti1Image(arr, affine), str(path))
    return path


def _volume(shape=(6, 5, 4)) -> np.ndarray:
    return np.arange(np.prod(shape), dtype=np.float32).reshape(shape) + 1.0


def _dicom_slice(path: Path, pixels: np.ndarray, z: float, instance: int, series_uid: str, spacing=(0.8, 0.9)) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "MR"
    ds.SeriesInstanceUID = series_uid
    ds.StudyInstanceUID = "1.2.3.4"
    ds.PatientID = "anon"
    ds.InstanceNumber = instance
    ds.ImagePositionPatient = [-50.0, -60.0, float(z)]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.PixelSpacing = [spacing[0], spacing[1]]
    ds.SliceThickness = 2.0
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    return path


def _dicom_series(folder: Path, n: int = 4, shape=(6, 5), shuffle_instances: bool = True) -> np.ndarray:
    """Write n slices 2 mm apart; instance numbers run backwards so sorting must use the positions."""
    folder.mkdir(parents=True, exist_ok=True)
    uid = generate_uid()
    vol = np.zeros((*shape, n), dtype=np.uint16)
    for k in range(n):
        px = (np.arange(np.prod(shape)).reshape(shape) + 100 * (k + 1)).astype(np.uint16)
        vol[..., k] = px
        instance = n - k if shuffle_instances else k + 1
        _dicom_slice(folder / f"file_{(k * 7) % n:03d}_{k}.dcm", px, z=2.0 * k, instance=instance, series_uid=uid)
    return vol  # (rows, cols, slices) in order of increasing z


# ----------------------------------------------------------------------------------------------------------- NIfTI


def test_nifti_volume_shape_meta_and_ras(tmp_path):
    arr = _volume()
    f = _nifti(tmp_path / "case1.nii.gz", arr)
    raw = LoadScan(orient=None)(f)
    assert isinstance(raw, MetaTensor) and raw.dtype == torch.float32
    assert tuple(raw.shape) == (1, 6, 5, 4)
    np.testing.assert_array_equal(raw[0].numpy(), arr)
    np.testing.assert_allclose(raw.affine.numpy(), LPS_AFFINE)
    assert raw.meta["filename_or_obj"] == str(f)
    assert list(raw.meta["spatial_shape"]) == [6, 5, 4]

    ras = LoadScan()(f)  # default orient="RAS": axes 0 and 1 flipped
    assert tuple(ras.shape) == (1, 6, 5, 4)
    np.testing.assert_array_equal(ras[0].numpy(), arr[::-1, ::-1, :])
    assert nib.aff2axcodes(ras.affine.numpy()) == ("R", "A", "S")
    np.testing.assert_allclose(np.asarray(ras.meta["original_affine"]), LPS_AFFINE)
    # the same voxel keeps its world position
    world_raw = LPS_AFFINE @ np.array([0, 0, 0, 1.0])
    world_ras = ras.affine.numpy() @ np.array([5, 4, 0, 1.0])
    np.testing.assert_allclose(world_raw, world_ras)


def test_nifti_permuted_axes_oriented(tmp_path):
    affine = np.array([[0, 0, 2.0, 0], [-2.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, 0, 1]])  # PSR, like IXI
    f = _nifti(tmp_path / "psr.nii", _volume((6, 5, 4)), affine)
    img = LoadScan()(f)
    assert tuple(img.shape) == (1, 4, 6, 5)
    assert list(img.meta["spatial_shape"]) == [6, 5, 4]  # shape in the file


def test_nifti_singleton_4th_dim_squeezed(tmp_path):
    f = _nifti(tmp_path / "t1.nii.gz", _volume((6, 5, 4))[..., None])
    assert tuple(LoadScan(orient=None)(f).shape) == (1, 6, 5, 4)


def test_nifti_uint8_and_2d(tmp_path):
    f = _nifti(tmp_path / "u8.nii.gz", (np.arange(120).reshape(6, 5, 4) * 2).astype(np.uint8))
    img = LoadScan(orient=None)(f)
    assert img.dtype == torch.float32 and float(img.max()) == 238.0
    f2 = _nifti(tmp_path / "plane.nii.gz", _volume((6, 5)))
    assert tuple(LoadScan()(f2).shape) == (1, 6, 5)


@pytest.mark.parametrize(
    ("name", "arr", "problem"),
    [
        ("fourd.nii.gz", np.random.rand(6, 5, 4, 3).astype(np.float32), "holds 3 volumes"),
        ("oned.nii.gz", np.random.rand(7).astype(np.float32), "1D array"),
        ("zeros.nii.gz", np.zeros((6, 5, 4), np.float32), "constant"),
        ("nan.nii.gz", np.where(np.eye(6)[:, :5, None] > 0, np.nan, 1.0).repeat(4, 2).astype(np.float32), "NaN"),
        (
            "inf.nii.gz",
            np.pad(np.full((1, 1, 1), np.inf, np.float32), ((0, 5), (0, 4), (0, 3)), constant_values=1),
            "Inf",
        ),
    ],
)
def test_bad_nifti_arrays(tmp_path, name, arr, problem):
    f = _nifti(tmp_path / name, arr)
    with pytest.raises(BadInputError, match=problem) as err:
        LoadScan()(f)
    assert name in str(err.value) and err.value.path == str(f)


def test_constant_allowed_for_masks(tmp_path):
    img = _nifti(tmp_path / "img.nii.gz", _volume())
    mask = _nifti(tmp_path / "mask.nii.gz", np.zeros((6, 5, 4), np.float32))
    d = LoadScand(keys=["image", "mask"], allow_constant=[False, True])({"image": str(img), "mask": str(mask)})
    assert tuple(d["mask"].shape) == (1, 6, 5, 4) and float(d["mask"].sum()) == 0.0
    with pytest.raises(BadInputError, match="mask.nii.gz"):
        LoadScand(keys=["image", "mask"])({"image": str(img), "mask": str(mask)})


def test_truncated_and_fake_files(tmp_path):
    good = _nifti(tmp_path / "good.nii.gz", _volume((20, 20, 20)))
    trunc = tmp_path / "trunc.nii.gz"
    trunc.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    with pytest.raises(BadInputError, match="trunc.nii.gz"):
        LoadScan()(trunc)
    raw = tmp_path / "trunc.nii"
    raw.write_bytes(gzip.decompress(good.read_bytes())[:1000])
    with pytest.raises(BadInputError, match="trunc.nii"):
        LoadScan()(raw)
    fake = tmp_path / "notes.png"
    fake.write_text("this is not an image\n")
    with pytest.raises(BadInputError, match="notes.png"):
        LoadScan()(fake)
    fake_nii = tmp_path / "notes.nii.gz"
    fake_nii.write_text("hello")
    with pytest.raises(BadInputError, match="notes.nii.gz"):
        LoadScan()(fake_nii)


def test_missing_file(tmp_path):
    with pytest.raises(BadInputError, match="nope.nii.gz: no such file"):
        LoadScan()(tmp_path / "nope.nii.gz")


# ------------------------------------------------------------------------------------------------------ PNG / JPEG


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "I;16", "LA", "1"])
def test_png_every_mode_is_one_grey_channel(tmp_path, mode):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (12, 20, 3), dtype=np.uint8)  # non-square: rows != cols
    base = Image.fromarray(rgb, "RGB")
    if mode == "I;16":
        src = (rng.integers(0, 60000, (12, 20))).astype(np.uint16)
        im = Image.fromarray(src)
        expected = src.astype(np.float32)
    elif mode == "L":
        im = base.convert("L")
        expected = np.asarray(im, dtype=np.float32)
    elif mode in ("RGB", "RGBA"):
        im = base.convert(mode)
        expected = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    elif mode == "P":
        im = base.convert("P")
        expected = np.asarray(im.convert("RGB"), dtype=np.float64) @ np.array([0.299, 0.587, 0.114])
    else:
        im = base.convert(mode)
        expected = np.asarray(im.convert("L"), dtype=np.float32)
    f = tmp_path / f"img_{mode.replace(';', '')}.png"
    im.save(f)
    assert Image.open(f).mode == mode
    out = LoadScan()(f)
    assert tuple(out.shape) == (1, 12, 20)  # (1, H, W), row-major
    assert out.dtype == torch.float32
    np.testing.assert_allclose(out[0].numpy(), expected, atol=1e-3)
    assert list(out.meta["spatial_shape"]) == [12, 20]
    assert out.meta["filename_or_obj"] == str(f)
    if mode == "I;16":
        assert float(out.max()) > 255  # 16-bit range kept


def test_jpeg_rgb_and_grey(tmp_path):
    rng = np.random.default_rng(1)
    arr = np.kron(rng.integers(0, 256, (4, 6, 3)), np.ones((8, 8, 1))).astype(np.uint8)
    Image.fromarray(arr, "RGB").save(tmp_path / "c.jpg", quality=95)
    Image.fromarray(arr[..., 0], "L").save(tmp_path / "g.jpeg", quality=95)
    c, g = LoadScan()(tmp_path / "c.jpg"), LoadScan()(tmp_path / "g.jpeg")
    assert tuple(c.shape) == (1, 32, 48) and tuple(g.shape) == (1, 32, 48)
    lum = arr.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    assert np.abs(c[0].numpy() - lum).mean() < 4.0  # JPEG is lossy


def test_truncated_jpeg_and_constant_png(tmp_path):
    arr = np.random.default_rng(2).integers(0, 256, (64, 64), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "full.jpg")
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 3])
    with pytest.raises(BadInputError, match="cut.jpg"):
        LoadScan()(tmp_path / "cut.jpg")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "black.png")
    with pytest.raises(BadInputError, match="black.png: is constant"):
        LoadScan()(tmp_path / "black.png")


def test_orientation_leaves_2d_alone(tmp_path):
    img = MetaTensor(torch.rand(1, 5, 7))
    assert OrientScan("RAS")(img) is img
    vol = MetaTensor(torch.rand(1, 3, 4, 5), affine=torch.as_tensor(LPS_AFFINE))
    out = OrientScand(keys="image")({"image": vol})["image"]
    assert nib.aff2axcodes(out.affine.numpy()) == ("R", "A", "S")
    assert torch.equal(out.as_tensor(), vol.as_tensor().flip(1, 2))


def test_to_grey():
    px = np.array([[[10, 20, 30, 255]]], dtype=np.uint8)
    assert to_grey(px)[0, 0] == pytest.approx(0.299 * 10 + 0.587 * 20 + 0.114 * 30, rel=1e-6)
    with pytest.raises(ValueError):
        to_grey(np.zeros((2, 2, 5)))


# ----------------------------------------------------------------------------------------------------------- DICOM


def test_dicom_series_sorted_by_position(tmp_path):
    vol = _dicom_series(tmp_path / "series", n=4, shape=(6, 5))
    img = LoadScan(orient=None)(tmp_path / "series")
    # (i, j, k) = (column, row, slice): the transpose of the (rows, cols) pixel arrays
    assert tuple(img.shape) == (1, 5, 6, 4)
    np.testing.assert_array_equal(img[0].numpy(), vol.transpose(1, 0, 2).astype(np.float32))
    np.testing.assert_allclose(img.pixdim.numpy(), [0.9, 0.8, 2.0], rtol=1e-5)
    assert img.meta["filename_or_obj"] == str(tmp_path / "series")
    ras = LoadScan()(tmp_path / "series")
    assert nib.aff2axcodes(ras.affine.numpy()) == ("R", "A", "S")
    assert tuple(ras.shape) == (1, 5, 6, 4)


def test_single_dcm_is_2d_row_major(tmp_path):
    px = (np.arange(30).reshape(6, 5) + 7).astype(np.uint16)
    f = _dicom_slice(tmp_path / "one.dcm", px, z=0.0, instance=1, series_uid=generate_uid())
    img = LoadScan()(f)
    assert tuple(img.shape) == (1, 6, 5)
    np.testing.assert_array_equal(img[0].numpy(), px.astype(np.float32))
    # a DICOM file without a suffix is recognised by its header
    nosuffix = tmp_path / "IM0001"
    nosuffix.write_bytes(f.read_bytes())
    assert scan_kind(nosuffix) == "dicom"


def test_dicom_bad_inputs(tmp_path):
    empty = tmp_path / "empty_series"
    empty.mkdir()
    (empty / "readme.txt").write_text("no dicom here")
    with pytest.raises(BadInputError, match="empty_series: empty DICOM folder"):
        LoadScan()(empty)

    mixed = tmp_path / "mixed_series"
    mixed.mkdir()
    uid = generate_uid()
    _dicom_slice(mixed / "a.dcm", np.ones((6, 5)) * 3, z=0.0, instance=1, series_uid=uid)
    _dicom_slice(mixed / "b.dcm", np.ones((8, 8)) * 4, z=2.0, instance=2, series_uid=uid)
    with pytest.raises(BadInputError, match="mixed_series: DICOM series of mixed slice sizes"):
        LoadScan()(mixed)

    two = tmp_path / "two_series"
    two.mkdir()
    _dicom_slice(two / "a.dcm", np.ones((6, 5)) * 3, z=0.0, instance=1, series_uid=generate_uid())
    _dicom_slice(two / "b.dcm", np.ones((6, 5)) * 4, z=2.0, instance=2, series_uid=generate_uid())
    with pytest.raises(BadInputError, match="two_series: holds 2 DICOM series"):
        LoadScan()(two)

    fake = tmp_path / "fake.dcm"
    fake.write_text("not dicom")
    with pytest.raises(BadInputError, match="fake.dcm"):
        LoadScan()(fake)


# ------------------------------------------------------------------------------------------------------ real files


def test_real_jpeg_rgb_to_one_channel(shared_data):
    f = sorted((shared_data / "brain_tumor_mri_4class" / "normal").glob("*.jpg"))[0]
    assert Image.open(f).mode == "RGB"
    img = LoadScan()(f)
    assert img.shape[0] == 1 and img.ndim == 3 and tuple(img.shape[1:]) == Image.open(f).size[::-1]


def test_real_ixi_volume(shared_data):
    f = sorted((shared_data / "ixi_t1_2mm_sample" / "volumes").glob("*.nii.gz"))[0]
    img = LoadScand(keys="image", orient=None)({"image": str(f)})["image"]
    assert tuple(img.shape) == (1, 120, 120, 90)
    ras = LoadScan()(f)
    assert nib.aff2axcodes(ras.affine.numpy()) == ("R", "A", "S")
    assert sorted(ras.shape[1:]) == [90, 120, 120] and list(ras.meta["spatial_shape"]) == [120, 120, 90]


def test_real_dicom_series(shared_data):
    series = shared_data / "dicom_mr_t1_mprage" / "series" / "t1_MPRAGEcr_noGRAPPA_19"
    assert len(list(series.glob("*.dcm"))) == 176
    img = LoadScan(orient=None)(series)
    assert tuple(img.shape) == (1, 256, 256, 176)
    np.testing.assert_allclose(img.pixdim.numpy(), [1.0, 1.0, 1.0], atol=1e-3)
    assert float(img.max()) == 1579.0
    assert pydicom.dcmread(sorted(series.glob("*.dcm"))[0], stop_before_pixels=True).Rows == 256


def test_image_content_is_read_whatever_the_image_extension_says(tmp_path):
    """Public sets hold PNGs named .jpg (brain_tumor_yes_no's No15.jpg): they load (the file checks are in
    tests/data/test_formats.py)."""
    arr = (np.arange(64, dtype=np.uint8).reshape(8, 8) * 3).astype(np.uint8)
    Image.fromarray(arr).save(tmp_path / "png_inside.jpg", format="PNG")
    assert tuple(LoadScan()(tmp_path / "png_inside.jpg").shape) == (1, 8, 8)
