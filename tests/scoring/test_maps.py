"""Tests for monai_anomaly.scoring.maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.metrics import SSIMMetric
from monai.transforms import GaussianSmooth

from monai_anomaly.scoring.maps import (
    compute_anomaly_map,
    erode_mask,
    gaussian_smooth,
    image_detail_energy,
    mask_outside,
    normalise_map,
    residual_map,
    ssim_map,
)


def _brain(shape=(2, 1, 32, 32), seed=0) -> torch.Tensor:
    """A smooth disc with mild texture, like a normalised brain slice."""
    g = torch.Generator().manual_seed(seed)
    grids = torch.meshgrid(*[torch.linspace(-1, 1, s) for s in shape[2:]], indexing="ij")
    disc = (sum(x**2 for x in grids) < 0.7).float() * 0.6
    return (disc + 0.05 * torch.rand(shape, generator=g)).clamp(0, 1)


def _with_lesion(img: torch.Tensor) -> torch.Tensor:
    out = img.clone()
    out[:, :, 8:13, 18:23, ...] = 1.0
    return out


@pytest.mark.parametrize("method", ["abs", "squared", "ssim", "combined"])
@pytest.mark.parametrize("shape", [(2, 1, 32, 32), (1, 2, 16, 16, 8)])
def test_identical_gives_zero_map(method, shape):
    img = _brain(shape)
    m = compute_anomaly_map(img, img.clone(), method=method)
    assert m.shape == (shape[0], 1, *shape[2:])
    assert m.dtype == torch.float32
    assert torch.allclose(m, torch.zeros_like(m), atol=1e-5)


@pytest.mark.parametrize("method", ["abs", "squared", "ssim", "combined"])
def test_lesion_is_where_the_map_peaks(method):
    rec = _brain()
    img = _with_lesion(rec)
    m = compute_anomaly_map(img, rec, method=method, smooth_sigma=1.0)
    for b in range(m.shape[0]):
        r, c = divmod(int(m[b, 0].argmax()), m.shape[-1])
        assert 7 <= r <= 13 and 17 <= c <= 23, (method, r, c)
    inside = m[:, :, 8:13, 18:23].mean()
    outside = m[:, :, 20:, :10].mean()
    assert inside > 5 * outside


def test_residual_values_and_channel_mean():
    img = torch.zeros(1, 2, 4, 4)
    rec = torch.zeros(1, 2, 4, 4)
    img[0, 0, 1, 1] = 2.0  # channel 0 differs by 2, channel 1 by -1 at the same pixel
    rec[0, 1, 1, 1] = 1.0
    a = residual_map(img, rec, "abs")
    s = residual_map(img, rec, "squared")
    assert a.shape == (1, 1, 4, 4)
    assert a[0, 0, 1, 1] == pytest.approx(1.5)
    assert s[0, 0, 1, 1] == pytest.approx(2.5)
    assert a.sum() == pytest.approx(1.5)
    with pytest.raises(ValueError, match="kind"):
        residual_map(img, rec, "cubic")


def test_numpy_input_returns_torch():
    img = _brain().numpy()
    m = compute_anomaly_map(img, np.zeros_like(img), "abs")
    assert isinstance(m, torch.Tensor)
    np.testing.assert_allclose(m.numpy(), img, atol=1e-6)


def test_ssim_map_matches_monai_ssim_metric_on_the_valid_region():
    rec = _brain(seed=1)
    img = _with_lesion(rec)
    m = ssim_map(img, rec, win_size=7, data_range=1.0)
    ref = SSIMMetric(spatial_dims=2, data_range=1.0, win_size=7)(rec, img)  # (B, 1) mean SSIM of the valid region
    valid = 1.0 - m[:, :, 3:-3, 3:-3].mean(dim=(1, 2, 3))
    assert torch.allclose(valid, ref.flatten(), atol=1e-5)
    assert m.shape == img.shape


def test_ssim_default_data_range_is_per_sample():
    rec = _brain(seed=2)
    img = _with_lesion(rec)
    scaled = ssim_map(img * 100, rec * 100)
    assert torch.allclose(scaled, ssim_map(img, rec), atol=1e-4)
    with pytest.raises(ValueError, match="odd"):
        ssim_map(img, rec, win_size=4)


def test_combined_is_weighted_sum():
    rec = _brain(seed=3)
    img = _with_lesion(rec)
    a, s = residual_map(img, rec), ssim_map(img, rec)
    assert torch.allclose(compute_anomaly_map(img, rec, "combined"), 0.5 * a + 0.5 * s, atol=1e-6)
    w = compute_anomaly_map(img, rec, "combined", weights={"abs": 1.0, "ssim": 2.0})
    assert torch.allclose(w, a + 2 * s, atol=1e-6)
    assert torch.allclose(compute_anomaly_map(img, rec, "combined", weights=(0.2, 0.0)), 0.2 * a, atol=1e-6)
    with pytest.raises(ValueError, match="keys"):
        compute_anomaly_map(img, rec, "combined", weights={"mse": 1.0})


def test_gaussian_smooth_matches_monai_and_sigma_zero_is_identity():
    m = torch.rand(2, 1, 16, 16)
    sm = gaussian_smooth(m, 1.5)
    for b in range(2):
        assert torch.allclose(sm[b], GaussianSmooth(sigma=1.5)(m[b]), atol=1e-6)
    assert torch.equal(gaussian_smooth(m, 0.0), m)
    assert sm.std() < m.std()


def test_foreground_masking():
    rec = _brain(seed=4)
    img = _with_lesion(rec) + 0.1
    fg = torch.zeros(1, 1, 32, 32, dtype=torch.bool)
    fg[..., :16, :] = True  # top half only; broadcast over the batch
    m = compute_anomaly_map(img, rec, "abs", foreground=fg)
    full = compute_anomaly_map(img, rec, "abs")
    assert torch.all(m[..., 16:, :] == 0)
    assert torch.equal(m[..., :16, :], full[..., :16, :])
    m01 = compute_anomaly_map(img, rec, "abs", foreground=fg.float().numpy())
    assert torch.equal(m01, m)
    with pytest.raises(ValueError, match="broadcast"):
        compute_anomaly_map(img, rec, "abs", foreground=torch.ones(1, 1, 8, 8))


def test_foreground_mask_is_applied_after_smoothing():
    rec = _brain(seed=5)
    img = _with_lesion(rec)
    fg = rec > 0.3
    m = compute_anomaly_map(img, rec, "combined", weights=(0.3, 0.7), smooth_sigma=1.0)
    masked = compute_anomaly_map(img, rec, "combined", weights=(0.3, 0.7), smooth_sigma=1.0, foreground=fg)
    assert torch.equal(masked, mask_outside(m, fg))  # the mask is applied after smoothing
    assert float(masked[~fg].abs().max()) == 0.0 and float(masked[fg].max()) > 0.1
    with pytest.raises(ValueError, match="broadcast"):
        mask_outside(m, torch.ones(3, 1, 5, 5))


def test_bad_shapes():
    with pytest.raises(ValueError, match="differ"):
        compute_anomaly_map(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 9))
    with pytest.raises(ValueError, match="batched"):
        compute_anomaly_map(torch.zeros(1, 8, 8), torch.zeros(1, 8, 8))
    with pytest.raises(ValueError, match="method"):
        compute_anomaly_map(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8), method="mse")


def test_relative_squared_map_ignores_contrast_but_not_structure():
    """Its mean is the unexplained share of the image's variance: the same for a low- and a high-contrast copy."""
    from monai_anomaly.scoring.maps import compute_anomaly_map

    torch.manual_seed(0)
    x = torch.rand(1, 1, 16, 16)
    rec = x.clone()
    rec[..., 4:8, 4:8] = x.mean()  # the model misses a patch
    low = compute_anomaly_map(0.2 * x, 0.2 * rec, method="squared_rel").mean()
    high = compute_anomaly_map(x, rec, method="squared_rel").mean()
    assert float(low) == pytest.approx(float(high), rel=1e-4)
    plain_low = compute_anomaly_map(0.2 * x, 0.2 * rec, method="squared").mean()
    assert float(plain_low) < 0.1 * float(compute_anomaly_map(x, rec, method="squared").mean())
    m = compute_anomaly_map(x, rec, method="squared_rel")
    assert float(m[..., 4:8, 4:8].mean()) > 0 and float(m[..., 10:, 10:].abs().max()) == 0.0


def test_erode_mask_removes_the_rim_in_2d_and_3d_and_treats_outside_the_image_as_background():
    from monai_anomaly.scoring.maps import erode_mask

    m = torch.zeros(1, 1, 10, 10)
    m[..., 2:8, 2:8] = 1
    e = erode_mask(m, 2)
    assert e.sum() == 4 and e[0, 0, 4:6, 4:6].min() == 1
    assert torch.equal(erode_mask(m, 0), m)
    full = torch.ones(1, 1, 6, 6)
    assert erode_mask(full, 1)[0, 0].sum() == 16  # the image border is eroded too
    v = torch.zeros(1, 1, 7, 7, 7, dtype=torch.bool)
    v[..., 1:6, 1:6, 1:6] = True
    assert erode_mask(v, 1).sum() == 27


def _brainlike(seed: int, texture: float) -> tuple[torch.Tensor, torch.Tensor]:
    """A smooth disc of 'tissue' on a zero background, with fine texture of amplitude ``texture``; its foreground."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    fg = (((yy - 32) ** 2 + (xx - 32) ** 2) < 26**2).float()[None, None]
    smooth = gaussian_smooth(torch.rand(1, 1, 64, 64, generator=g), 4.0)
    smooth = 0.5 + (smooth - smooth.mean()) / smooth.std() * 0.08
    img = (smooth + texture * (torch.rand(1, 1, 64, 64, generator=g) - 0.5)) * fg
    return img.clamp(0, 1), fg


def test_complexity_normalisation_removes_the_texture_ranking_and_keeps_the_lesion_first():
    """A blurring autoencoder leaves an image's fine texture in its residual: the raw score ranks a sharper normal
    above a smooth image with a lesion; divided by each image's detail energy, the lesion ranks first."""
    smooth, fg = _brainlike(0, 0.05)
    sharp, _ = _brainlike(1, 0.60)  # a sharper scanner: twelve times the texture amplitude
    lesion, _ = _brainlike(2, 0.05)
    healthy_part = lesion.clone()
    lesion[..., 28:36, 28:36] += 0.15  # a bright lesion the network has never seen
    images = torch.cat([smooth, sharp, lesion])
    recon = gaussian_smooth(torch.cat([smooth, sharp, healthy_part]), 1.5)  # what a healthy AE gives back: blurred
    masks = fg.expand(3, 1, 64, 64)
    raw = compute_anomaly_map(images, recon, method="squared", foreground=erode_mask(masks, 3))
    top = lambda m: m.flatten(1).topk(40, dim=1).values.mean(1)  # noqa: E731
    assert top(raw)[1] > top(raw)[2]  # the raw residual puts the sharp normal first
    norm = normalise_map(raw, images, masks, "complexity")
    assert top(norm)[2] > 1.5 * top(norm)[1] and top(norm)[2] > 10 * top(norm)[0]
    assert torch.equal(norm > 0, raw > 0)  # same places: only each slice's scale changed
    assert torch.equal(normalise_map(raw, images, masks, "none"), raw)


def test_detail_energy_is_over_the_foreground_and_per_sample():
    img, fg = _brainlike(3, 0.2)
    whole = image_detail_energy(img)
    inside = image_detail_energy(img, fg)
    assert inside.shape == (1,) and float(inside) > float(whole)  # the zero background has no detail
    empty = image_detail_energy(img, torch.zeros_like(fg))
    assert torch.allclose(empty, whole)  # no foreground: the whole image
    vol = torch.rand(2, 1, 16, 16, 8, generator=torch.Generator().manual_seed(0))
    assert image_detail_energy(vol).shape == (2,)  # 3D too
    flat = image_detail_energy(torch.zeros(1, 1, 16, 16))
    assert float(flat) == pytest.approx(1e-6)  # floored, never a division by zero
    with pytest.raises(ValueError, match="map normalisation"):
        normalise_map(img, img, fg, "bogus")
