"""SliceTranslator: every slice through the generator at the training size, put back on the scan's grid."""

from __future__ import annotations

import pytest
import torch

from monai_anomaly.inferers.translate import SliceTranslator


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_identity_generator_gives_back_the_volume_along_any_axis(axis):
    vol = torch.rand(1, 20, 24, 22)
    side = max(s for i, s in enumerate(vol.shape[1:]) if i != axis)  # no resampling: pad and crop only
    seen = []

    def gen(x):
        seen.append(tuple(x.shape))
        return x

    out = SliceTranslator(side, spatial_dim=axis, sw_batch_size=7)(vol, gen)
    assert out.shape == vol.shape and torch.allclose(out, vol, atol=1e-5)
    assert sum(s[0] for s in seen) == vol.shape[axis + 1] and all(s[1:] == (1, side, side) for s in seen)


def test_a_2d_image_is_translated_once_and_resized_back():
    img = torch.rand(1, 40, 30)
    out = SliceTranslator(16)(img, lambda x: -x)
    assert out.shape == img.shape and float(out.max()) <= 0.0


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="takes"):
        SliceTranslator(16)(torch.rand(2, 1, 4, 4, 4), lambda x: x)


def test_write_translations_puts_a_volume_back_on_the_scans_grid(tmp_path):
    import nibabel as nib
    import numpy as np

    from monai_anomaly.inferers.translate import write_translations
    from monai_anomaly.transforms.io import LoadScand

    affine = np.diag([1.5, 1.2, 3.0, 1.0])
    affine[:3, 3] = [-20.0, 10.0, 5.0]
    vol = np.random.default_rng(0).random((24, 20, 6)).astype(np.float32)
    nib.save(nib.Nifti1Image(vol, affine), str(tmp_path / "scan.nii.gz"))
    item = LoadScand(keys="image")({"image": str(tmp_path / "scan.nii.gz"), "volume_id": "scan"})
    flip = torch.nn.Identity()
    rows = write_translations([item], {"to_normal": flip, "to_abnormal": None}, tmp_path / "out", image_size=24)
    assert [r["file"] for r in rows] == ["scan_to_normal.nii.gz"]
    out = nib.load(str(tmp_path / "out" / "scan_to_normal.nii.gz"))
    assert out.shape == vol.shape and np.allclose(out.affine, affine, atol=1e-4)
    assert np.allclose(out.get_fdata(), vol, atol=1e-4)  # identity generator, no resampling at 24 px: the scan back
    assert (tmp_path / "out" / "translations.csv").read_text().splitlines()[1].startswith("scan,")
