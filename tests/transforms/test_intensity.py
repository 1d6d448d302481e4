"""Tests for monai_anomaly.transforms.intensity: foreground masks and per-volume normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from monai_anomaly.transforms.intensity import (
    ForegroundMask,
    ForegroundMaskd,
    ForegroundZScore,
    ForegroundZScored,
    PercentileScale,
    PercentileScaled,
)
from monai_anomaly.utils.errors import BadInputError


def _head(shape=(24, 24, 8), seed=0) -> MetaTensor:
    """A bright ellipsoid 'head' with a dark hole inside, on a zero background, plus a bright speck outside."""
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    head = (x**2 + y**2 + 0.2 * z**2) < 0.6
    img = np.where(head, 100 + 20 * rng.standard_normal(shape), 0.0).astype(np.float32)
    hole = (x**2 + y**2 + z**2) < 0.1  # enclosed in 3D
    img[hole] = 0.0
    img[0, 0, :] = 500.0  # a speck: not connected to the head
    return MetaTensor(torch.from_numpy(img)[None], meta={"filename_or_obj": "/data/head_01.nii.gz"})


def test_foreground_mask_threshold_fill_largest():
    img = _head()
    raw = ForegroundMask(threshold=0.0)(img)
    assert tuple(raw.shape) == (1, 24, 24, 8) and raw.dtype == torch.float32
    assert set(raw.unique().tolist()) == {0.0, 1.0}
    assert raw[0, 0, 0, 0] == 1.0 and raw[0, 12, 12, 4] == 0.0  # speck in, hole out
    clean = ForegroundMask(threshold=0.0, fill_holes=True, largest_component=True)(img)
    assert clean[0, 0, 0, 0] == 0.0  # speck removed
    assert clean[0, 12, 12, 4] == 1.0  # hole filled
    assert clean.meta["filename_or_obj"] == "/data/head_01.nii.gz"
    assert clean.sum() > raw.sum() - 8  # the hole (several voxels per slice) outweighs the 8-voxel speck


def test_foreground_maskd_adds_key():
    d = ForegroundMaskd(keys="image", threshold=50.0)({"image": _head()})
    assert "foreground" in d and tuple(d["foreground"].shape) == (1, 24, 24, 8)
    assert torch.equal(d["foreground"].as_tensor().bool(), (d["image"] > 50).as_tensor())


def test_percentile_scale_whole_image_vs_foreground():
    img = _head()
    whole = PercentileScale(lower=1, upper=99)(img)
    assert float(whole.min()) == 0.0 and float(whole.max()) == 1.0
    fg = (img > 0).float()
    scaler = PercentileScale(lower=1, upper=99)
    lo_all, _ = scaler.percentiles(img)
    lo_fg, hi_fg = scaler.percentiles(img, fg)
    assert lo_all == 0.0 and lo_fg > 30.0  # the background does not set the scale
    vals = img[img > 0]
    assert lo_fg == pytest.approx(float(np.percentile(vals.numpy(), 1)), rel=1e-4)
    assert hi_fg == pytest.approx(float(np.percentile(vals.numpy(), 99)), rel=1e-4)
    by_threshold = PercentileScale(lower=1, upper=99, threshold=0.0)(img)
    by_mask = PercentileScale(lower=1, upper=99)(img, fg)
    assert torch.allclose(by_threshold, by_mask)
    out = PercentileScale(lower=1, upper=99, b_min=-1.0, b_max=1.0)(img, fg)
    assert float(out.min()) == -1.0 and float(out.max()) == 1.0
    assert out[0, 5, 5, 0] == -1.0  # background clipped to b_min
    assert isinstance(out, MetaTensor) and out.meta["filename_or_obj"] == "/data/head_01.nii.gz"


def test_percentile_scale_is_per_volume_not_per_slice():
    img = _head()
    img[..., 0] *= 0.5  # a darker slice stays darker after scaling
    out = PercentileScaled(keys="image", lower=0, upper=100)({"image": img})["image"]
    m0, m4 = out[..., 0][img[..., 0] > 0].mean(), out[..., 4][img[..., 4] > 0].mean()
    assert m0 < 0.7 * m4


def test_percentile_scaled_mask_key_and_empty_foreground():
    img = _head()
    d = ForegroundMaskd(keys="image")({"image": img})
    out = PercentileScaled(keys="image", mask_key="foreground", upper=99)(d)
    assert float(out["image"].max()) == 1.0
    with pytest.raises(BadInputError, match="head_01.nii.gz"):
        PercentileScale(threshold=1e6)(img)
    with pytest.raises(ValueError):
        PercentileScale(lower=90, upper=10)


def test_foreground_zscore():
    img = _head()
    mask = ForegroundMask(0.0, fill_holes=False)(img)
    out = ForegroundZScore(background=-5.0)(img, mask)
    inside = out[mask > 0]
    assert abs(float(inside.mean())) < 1e-4 and float(inside.std(unbiased=False)) == pytest.approx(1.0, abs=1e-4)
    assert torch.all(out[mask == 0] == -5.0)
    d = ForegroundZScored(keys="image", threshold=0.0)({"image": img})
    assert torch.allclose(d["image"][mask > 0], inside)
    with pytest.raises(BadInputError, match="head_01.nii.gz"):
        ForegroundZScore(threshold=1e6)(img)


# --- intensity handling by input kind ---------------------------------------------------------------------------


def _png_like(values, name="/data/slice.png") -> MetaTensor:
    return MetaTensor(torch.tensor(values, dtype=torch.float32)[None, None], meta={"filename_or_obj": name})


def test_auto_mode_keeps_8bit_images_on_their_fixed_range():
    """A dark 8-bit image stays dark: no per-image stretching, unlike percentile scaling."""
    from monai_anomaly.transforms.intensity import ScaleIntensityByKind

    dark = _png_like(np.linspace(0, 100, 64).reshape(8, 8))
    out = ScaleIntensityByKind("auto")(dark)
    assert out.meta["intensity_mode"] == "fixed"
    assert float(out.max()) == pytest.approx(100 / 255, abs=1e-6) and float(out.min()) == 0.0
    stretched = ScaleIntensityByKind("percentile", lower=0, upper=100)(dark)
    assert float(stretched.max()) == pytest.approx(1.0)
    sixteen = _png_like(np.linspace(0, 40000, 64).reshape(8, 8))  # 16-bit content: 0-65535
    assert float(ScaleIntensityByKind("auto")(sixteen).max()) == pytest.approx(40000 / 65535, abs=1e-6)
    twelve = _png_like(np.linspace(0, 4000, 64).reshape(8, 8))  # 12-bit content (in a 16-bit file): 0-4095
    assert float(ScaleIntensityByKind("auto")(twelve).max()) == pytest.approx(4000 / 4095, abs=1e-6)


def test_auto_mode_windows_ct_and_percentiles_mri():
    from monai_anomaly.transforms.intensity import ScaleIntensityByKind, resolve_intensity_mode

    rng = np.random.default_rng(0)
    ct = np.full((1, 16, 16, 8), -1000.0, dtype=np.float32)  # air around a soft-tissue body
    ct[:, 4:12, 4:12] = 40 + 10 * rng.standard_normal((8, 8, 8))
    ct = MetaTensor(torch.from_numpy(ct), meta={"filename_or_obj": "/data/ct.nii.gz"})
    assert resolve_intensity_mode(ct) == "ct"
    out = ScaleIntensityByKind("auto", ct_window=(-160, 240))(ct)
    assert out.meta["intensity_mode"] == "ct" and float(out.min()) == 0.0
    assert float(out[:, 8, 8].mean()) == pytest.approx(0.5, abs=0.05)  # 40 HU is the window's centre
    mri = _head()
    assert resolve_intensity_mode(mri) == "percentile"
    scaled = ScaleIntensityByKind("auto")(mri, (mri > 0).float())
    assert scaled.meta["intensity_mode"] == "percentile" and float(scaled.max()) == pytest.approx(1.0)


def test_intensity_options_are_checked():
    from monai_anomaly.transforms.intensity import ScaleIntensityByKind, resolve_intensity_mode

    with pytest.raises(ValueError, match="intensity mode"):
        ScaleIntensityByKind("hounsfield")
    with pytest.raises(ValueError, match="ct_window"):
        ScaleIntensityByKind("ct", ct_window=(100, -100))
    with pytest.raises(ValueError, match="intensity mode"):
        resolve_intensity_mode(_head(), "nope")


def test_dataset_mode_is_one_for_the_training_set(tmp_path):
    import nibabel as nib

    from monai_anomaly.transforms.intensity import resolve_dataset_intensity_mode

    assert resolve_dataset_intensity_mode([{"image": "a.png"}, {"image": "b.JPG"}]) == "fixed"
    assert resolve_dataset_intensity_mode(["a.png"], "percentile") == "percentile"
    with pytest.raises(ValueError, match="mixes 2D image files"):
        resolve_dataset_intensity_mode(["a.png", "b.nii.gz"])
    vol = np.asarray(_head()[0])
    nib.save(nib.Nifti1Image(vol, np.eye(4)), tmp_path / "mri.nii.gz")
    assert resolve_dataset_intensity_mode([str(tmp_path / "mri.nii.gz")]) == "percentile"
    nib.save(nib.Nifti1Image(np.where(vol > 0, 40.0, -1000.0).astype(np.float32), np.eye(4)), tmp_path / "ct.nii.gz")
    assert resolve_dataset_intensity_mode([{"image": str(tmp_path / "ct.nii.gz")}]) == "ct"


def test_twelve_bit_data_in_a_sixteen_bit_png_scales_like_its_eight_bit_version(tmp_path):
    """Scaling by the dtype's maximum made a 12-bit picture in a 16-bit PNG 16 times darker than the same picture in
    8 bits; the full scale now follows the bit depth the content needs."""
    from PIL import Image

    from monai_anomaly.transforms.intensity import ScaleIntensityByKindd, content_bit_range
    from monai_anomaly.transforms.io import LoadScand

    pic = np.random.default_rng(0).integers(0, 256, (32, 32)).astype(np.uint8)
    Image.fromarray(pic).save(tmp_path / "8bit.png")
    Image.fromarray((pic.astype(np.uint16) * 16).astype(np.uint16)).save(tmp_path / "12bit.png")  # max 4080
    out = {}
    for name in ("8bit", "12bit"):
        d = LoadScand(keys="image")({"image": str(tmp_path / f"{name}.png")})
        out[name] = ScaleIntensityByKindd(keys="image", mode="auto")(d)["image"]
    assert float((out["8bit"] - out["12bit"]).abs().max()) < 0.01
    assert content_bit_range(65535) == 65535.0 and content_bit_range(1000) == 1023.0
