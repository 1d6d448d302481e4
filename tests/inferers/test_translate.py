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
