"""Tests for monai_anomaly.transforms.spatial: square resizing with kept aspect ratio."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose

from monai_anomaly.transforms.intensity import ForegroundMaskd, PercentileScaled
from monai_anomaly.transforms.io import LoadScand
from monai_anomaly.transforms.slicing import VolumeToSlicesd
from monai_anomaly.transforms.spatial import ResizeToSquare, ResizeToSquared


def _bar_image(h: int = 40, w: int = 20) -> torch.Tensor:
    """A rectangle image filled with ones, so the padding is where the zeros are."""
    return torch.ones(1, h, w)


def test_pad_keeps_aspect_ratio_and_centres():
    out = ResizeToSquare(32, anti_aliasing=False)(_bar_image(40, 20))
    assert tuple(out.shape) == (1, 32, 32)
    cols = out[0].sum(0) > 0
    assert int(cols.sum()) == 16  # 20 * 32/40 columns of content
    assert torch.equal(torch.nonzero(cols).flatten(), torch.arange(8, 24))  # centred
    assert torch.all(out[0, :, 8:24] == 1.0)


def test_pad_value_and_upscale():
    out = ResizeToSquare(30, value=-1.0)(_bar_image(5, 10))
    assert tuple(out.shape) == (1, 30, 30)
    assert float(out[0, 0, 0]) == -1.0 and float(out[0, 15, 15]) == pytest.approx(1.0)
    assert int((out[0, :, 0] == -1.0).sum()) == 15  # 5 -> 15 rows of content, 15 rows of padding


def test_crop_mode_fills_the_square():
    img = torch.zeros(1, 40, 20)
    img[0, :2] = 5.0  # top rows: cut away by the centre crop
    out = ResizeToSquare(16, mode="crop")(img)
    assert tuple(out.shape) == (1, 16, 16)
    assert float(out.max()) == 0.0


def test_masks_nearest_stay_binary_and_align_with_image():
    rng = np.random.default_rng(0)
    mask = torch.from_numpy((rng.random((1, 37, 23)) > 0.7).astype(np.float32))
    img = MetaTensor(mask.clone() * 3.0 + 1.0)
    d = ResizeToSquared(["image", "mask"], size=64, interp_mode=["bilinear", "nearest"])({"image": img, "mask": mask})
    assert tuple(d["image"].shape) == (1, 64, 64) and tuple(d["mask"].shape) == (1, 64, 64)
    assert set(d["mask"].unique().tolist()) == {0.0, 1.0}
    inside = d["image"][0] > 0  # padding is 0, content >= 1
    assert torch.all(d["mask"][0][~inside] == 0)
    assert isinstance(d["image"], MetaTensor)


def test_content_box_and_restore_undo_the_padding():
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 48), torch.linspace(0, 1, 30), indexing="ij")
    img = (0.2 + 0.5 * yy + 0.3 * xx)[None]  # smooth: resizing keeps it
    t = ResizeToSquare(64, anti_aliasing=False)
    out = t(img)
    out = out.as_tensor() if isinstance(out, MetaTensor) else out
    assert t.content_box((48, 30)) == ((0, 64), (12, 52))
    assert float(out[:, :, :12].abs().max()) == 0.0 and float(out[:, :, 52:].abs().max()) == 0.0
    back = t.restore(out, (48, 30))
    assert back.shape == img.shape
    assert torch.allclose(back[:, 1:-1, 1:-1], img[:, 1:-1, 1:-1], atol=1e-3)
    assert torch.equal(
        ResizeToSquare(48, anti_aliasing=False).restore(torch.ones(1, 48, 48), (48, 48)), torch.ones(1, 48, 48)
    )


def test_3d_cube_and_bad_args():
    assert tuple(ResizeToSquare(8)(torch.rand(1, 16, 8, 4)).shape) == (1, 8, 8, 8)
    with pytest.raises(ValueError):
        ResizeToSquare(0)
    with pytest.raises(ValueError):
        ResizeToSquare(8, mode="stretch")


def test_documented_chain_load_mask_scale_slice_resize(tmp_path):
    """The example in docs/transforms.md: LoadScand -> ForegroundMaskd -> PercentileScaled -> VolumeToSlicesd ->
    ResizeToSquared, run by MONAI's Compose (which maps the last transform over the list of slices)."""
    arr = np.zeros((20, 12, 6), np.float32)
    arr[4:16, 2:10, 1:5] = np.random.default_rng(2).random((12, 8, 4)) * 100 + 10
    mask = np.zeros_like(arr)
    mask[8, 5, 3] = 1.0
    nib.save(nib.Nifti1Image(arr, np.diag([-1.0, -1.0, 2.0, 1.0])), str(tmp_path / "case.nii.gz"))
    nib.save(nib.Nifti1Image(mask, np.diag([-1.0, -1.0, 2.0, 1.0])), str(tmp_path / "case_mask.nii.gz"))
    pipe = Compose(
        [
            LoadScand(keys=["image", "mask"], orient="RAS", allow_constant=[False, True]),
            ForegroundMaskd(keys="image", threshold=0.0, fill_holes=True),
            PercentileScaled(keys="image", lower=0.5, upper=99.5, b_min=-1.0, b_max=1.0, mask_key="foreground"),
            VolumeToSlicesd(keys=["image", "mask"], axis=2, min_foreground=0.05, label_from_mask_key="mask"),
            ResizeToSquared(keys=["image", "mask"], size=16, interp_mode=["bilinear", "nearest"], value=[-1.0, 0.0]),
        ]
    )
    out = pipe({"image": str(tmp_path / "case.nii.gz"), "mask": str(tmp_path / "case_mask.nii.gz")})
    assert [d["slice_index"] for d in out] == [1, 2, 3, 4]
    assert [d["label"] for d in out] == [0, 0, 1, 0]
    assert all(tuple(d["image"].shape) == (1, 16, 16) for d in out)
    assert all(float(d["image"].min()) >= -1.0 and float(d["image"].max()) <= 1.0 for d in out)
    assert out[0]["volume_id"] == "case" and out[0]["image"].meta["slice_axis"] == 2
