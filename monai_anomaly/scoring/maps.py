"""Anomaly maps from an image and its reconstruction: residuals, 1 - SSIM, their mix, smoothing and masking.

All functions take batched, channel-first tensors ``(B, C, H, W)`` or ``(B, C, H, W, D)`` (numpy arrays are accepted
and converted) and return a float torch tensor ``(B, 1, ...)`` of the same spatial size: channels are averaged.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.metrics.regression import compute_ssim_and_cs
from monai.networks.layers import GaussianFilter

__all__ = [
    "MAP_CALIBRATIONS",
    "MAP_NORMALISATIONS",
    "image_detail_energy",
    "normalise_map",
    "resolve_map_normalisation",
    "erode_mask",
    "variance_normalised_map",
    "MAP_METHODS",
    "compute_anomaly_map",
    "mask_outside",
    "gaussian_smooth",
    "relative_squared_map",
    "residual_map",
    "ssim_map",
]

MAP_METHODS = ("abs", "squared", "squared_rel", "ssim", "combined", "variance_normalised", "perceptual")
MAP_CALIBRATIONS = ("none", "normative")
"""``"normative"``: the map is the per-pixel z-score against the maps of normal validation images
(:meth:`~monai_anomaly.networks.anomaly_net.AnomalyMapNet.fit_normative`)."""

MAP_NORMALISATIONS = ("none", "complexity")
"""``"complexity"``: each slice's map is divided by the slice's own fine-detail energy
(:func:`image_detail_energy`), so a sharper or more textured image does not score higher for that alone
(:func:`normalise_map`)."""

ArrayLike = torch.Tensor | np.ndarray


def _as_tensor(x: ArrayLike, name: str) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    t = t.as_tensor() if hasattr(t, "as_tensor") else t  # MetaTensor -> plain tensor
    if t.ndim not in (4, 5):
        raise ValueError(
            f"{name} must be batched and channel first, (B, C, H, W) or (B, C, H, W, D); got shape {tuple(t.shape)}"
        )
    return t.float() if not torch.is_floating_point(t) or t.dtype == torch.float16 else t


def _pair(image: ArrayLike, reconstruction: ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
    img = _as_tensor(image, "image")
    rec = _as_tensor(reconstruction, "reconstruction").to(device=img.device, dtype=img.dtype)
    if img.shape != rec.shape:
        raise ValueError(f"image and reconstruction shapes differ: {tuple(img.shape)} vs {tuple(rec.shape)}")
    return img, rec


def residual_map(image: ArrayLike, reconstruction: ArrayLike, kind: str = "abs") -> torch.Tensor:
    """Pixel-wise reconstruction residual, averaged over channels.

    Args:
        image: ``(B, C, H, W[, D])`` input.
        reconstruction: the network's reconstruction, same shape.
        kind: ``"abs"`` for ``|x - x_hat|`` or ``"squared"`` for ``(x - x_hat) ** 2``.

    Returns:
        ``(B, 1, H, W[, D])`` float tensor.

    Raises:
        ValueError: unknown ``kind`` or mismatched shapes.
    """
    img, rec = _pair(image, reconstruction)
    diff = img - rec
    if kind == "abs":
        r = diff.abs()
    elif kind == "squared":
        r = diff * diff
    else:
        raise ValueError(f"kind must be 'abs' or 'squared', got {kind!r}")
    return r.mean(dim=1, keepdim=True)


def relative_squared_map(image: ArrayLike, reconstruction: ArrayLike, eps: float = 1e-6) -> torch.Tensor:
    """Squared residual divided by each image's own intensity variance: its mean is the fraction of the image's
    variance the reconstruction leaves unexplained (``1 - R^2``).

    A plain squared error grows with an image's contrast and texture, so on data where one class is smoother or
    darker (another scanner, sequence or hospital) the plain error ranks images by texture rather than by
    anomaly. Dividing by the variance of the (single) image makes the score invariant to its contrast: an image
    scores high when the model explains little of its own structure.

    Args:
        image: ``(B, C, H, W[, D])`` input.
        reconstruction: same shape.
        eps: floor of the variance (a constant image).

    Returns:
        ``(B, 1, H, W[, D])`` float tensor.

    Example:
        >>> import torch
        >>> x = torch.rand(2, 1, 16, 16)
        >>> a = relative_squared_map(x, x * 0 + x.mean()).flatten(1).mean(1)  # predicting the mean: all unexplained
        >>> b = relative_squared_map(3 * x, 3 * (x * 0 + x.mean())).flatten(1).mean(1)  # contrast does not matter
        >>> bool(torch.allclose(a, torch.ones(2), atol=0.05)), bool(torch.allclose(a, b, atol=1e-4))
        (True, True)
    """
    img, rec = _pair(image, reconstruction)
    sq = ((img - rec) ** 2).mean(dim=1, keepdim=True)
    var = img.flatten(1).var(dim=1, unbiased=False).clamp_min(eps)
    return sq / var.view(-1, *([1] * (sq.ndim - 1)))


VARIANCE_FLOOR = 1e-6
"""The smallest predicted variance (AE-U's loss and map): ``exp(log_variance)`` is clamped to it."""


def variance_normalised_map(image: ArrayLike, mean: ArrayLike, log_variance: ArrayLike) -> torch.Tensor:
    """AE-U's map (Mao et al., MICCAI 2020): the squared residual over the predicted per-pixel variance,
    ``(x - mu)^2 / sigma^2``, averaged over channels.

    The network predicts where it cannot reconstruct normal anatomy well (edges, texture) and divides those pixels'
    error by a large variance, so an error ranks high only where the model was confident about normal appearance.

    Args:
        image: ``(B, C, H, W[, D])`` input.
        mean: the predicted mean (the reconstruction), same shape.
        log_variance: the predicted ``log sigma^2``, same shape; the variance is floored at :data:`VARIANCE_FLOOR`.

    Returns:
        ``(B, 1, H, W[, D])`` float tensor.

    Example:
        >>> import torch
        >>> x, mu = torch.ones(1, 1, 2, 2), torch.zeros(1, 1, 2, 2)
        >>> variance_normalised_map(x, mu, torch.log(torch.tensor([[[[1.0, 4.0], [0.25, 1.0]]]]))).flatten().tolist()
        [1.0, 0.25, 4.0, 1.0]
    """
    img, rec = _pair(image, mean)
    lv = _as_tensor(log_variance, "log_variance").to(device=img.device, dtype=img.dtype)
    if lv.shape != img.shape:
        raise ValueError(f"log_variance and image shapes differ: {tuple(lv.shape)} vs {tuple(img.shape)}")
    return ((img - rec) ** 2 / lv.exp().clamp_min(VARIANCE_FLOOR)).mean(dim=1, keepdim=True)


def ssim_map(
    image: ArrayLike,
    reconstruction: ArrayLike,
    win_size: int = 7,
    data_range: float | None = None,
    sigma: float = 1.5,
) -> torch.Tensor:
    """Local dissimilarity ``1 - SSIM`` with a Gaussian window, same spatial size as the input.

    Uses MONAI's :func:`monai.metrics.regression.compute_ssim_and_cs` (the machinery behind ``SSIMMetric``) on a
    reflect-padded input, so that the full-resolution SSIM map is returned instead of the valid-convolution one.

    Args:
        image: ``(B, C, H, W[, D])`` input.
        reconstruction: same shape.
        win_size: odd Gaussian window size.
        data_range: intensity range for the SSIM constants; ``None`` takes, per sample, ``max - min`` over the image
            and its reconstruction together (1.0 when that is 0).
        sigma: Gaussian window standard deviation.

    Returns:
        ``(B, 1, H, W[, D])`` float tensor; about 0 where image and reconstruction agree, up to 2 where they are
        anti-correlated.
    """
    if win_size < 1 or win_size % 2 == 0:
        raise ValueError(f"win_size must be a positive odd integer, got {win_size}")
    img, rec = _pair(image, reconstruction)
    spatial_dims = img.ndim - 2
    pad = win_size // 2
    small = min(img.shape[2:]) <= pad
    mode = "replicate" if small else "reflect"
    out = []
    for b in range(img.shape[0]):
        x, y = img[b : b + 1].float(), rec[b : b + 1].float()
        if data_range is None:
            lo = torch.minimum(x.min(), y.min())
            hi = torch.maximum(x.max(), y.max())
            dr = float(hi - lo) or 1.0
        else:
            dr = float(data_range)
        x, y = x / dr, y / dr  # SSIM is scale invariant; unit range keeps float32 variances accurate
        if pad:
            x = F.pad(x, [pad] * (2 * spatial_dims), mode=mode)
            y = F.pad(y, [pad] * (2 * spatial_dims), mode=mode)
        ssim, _ = compute_ssim_and_cs(
            y_pred=y,
            y=x,
            spatial_dims=spatial_dims,
            kernel_size=[win_size] * spatial_dims,
            kernel_sigma=[sigma] * spatial_dims,
            data_range=1.0,
        )
        out.append(1.0 - ssim.mean(dim=1, keepdim=True))
    return torch.cat(out, dim=0).to(img.dtype)


def gaussian_smooth(m: ArrayLike, sigma: float | Sequence[float]) -> torch.Tensor:
    """Gaussian smoothing of a batched map with MONAI's :class:`~monai.networks.layers.GaussianFilter`.

    Args:
        m: ``(B, C, H, W[, D])`` map.
        sigma: standard deviation in pixels (one value, or one per spatial dimension); 0 returns the map unchanged.

    Returns:
        the smoothed map, same shape, float.
    """
    t = _as_tensor(m, "map")
    sig = list(sigma) if isinstance(sigma, Sequence) else [float(sigma)] * (t.ndim - 2)
    if all(s == 0 for s in sig):
        return t
    if any(s < 0 for s in sig):
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    with torch.no_grad():
        return GaussianFilter(t.ndim - 2, sig).to(t.device)(t.float()).to(t.dtype)


def _weights(weights: Mapping[str, float] | Sequence[float] | None) -> tuple[float, float]:
    if weights is None:
        return 0.5, 0.5
    if isinstance(weights, Mapping):
        unknown = set(weights) - {"abs", "ssim"}
        if unknown:
            raise ValueError(f"combined weights take keys 'abs' and 'ssim', got {sorted(unknown)}")
        return float(weights.get("abs", 0.0)), float(weights.get("ssim", 0.0))
    w = [float(v) for v in weights]
    if len(w) != 2:
        raise ValueError(f"combined weights need two values (abs, ssim), got {weights}")
    return w[0], w[1]


def compute_anomaly_map(
    image: ArrayLike,
    reconstruction: ArrayLike,
    method: str = "abs",
    weights: Mapping[str, float] | Sequence[float] | None = None,
    smooth_sigma: float = 0.0,
    foreground: ArrayLike | None = None,
    win_size: int = 7,
    data_range: float | None = None,
    log_variance: ArrayLike | None = None,
    distance: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Anomaly map of a reconstruction-based method.

    Args:
        image: ``(B, C, H, W[, D])`` input.
        reconstruction: same shape.
        method: ``"abs"``, ``"squared"``, ``"squared_rel"`` (squared residual over the image's variance, see
            :func:`relative_squared_map`), ``"ssim"`` (``1 - SSIM``) or ``"combined"`` (``w_abs * abs + w_ssim *
            ssim``) or ``"variance_normalised"`` (AE-U: ``(x - mu)^2 / sigma^2``, needs ``log_variance``).
        weights: for ``"combined"``: ``{"abs": w1, "ssim": w2}`` or ``(w1, w2)``; default 0.5 / 0.5.
        smooth_sigma: Gaussian smoothing sigma in pixels applied to the map (0: none).
        foreground: bool or 0/1 mask broadcastable to ``(B, 1, ...)``; the map is 0 outside it (applied after
            smoothing).
        win_size: SSIM window size.
        data_range: SSIM data range (see :func:`ssim_map`).
        log_variance: the predicted per-pixel ``log sigma^2`` of a network that predicts one (AE-U).
        distance: for ``"perceptual"``, the feature-space distance ``distance(image, reconstruction) -> (B, 1, H, W)``
            (:class:`~monai_anomaly.losses.perceptual.PerceptualMap`, from a network the user gives).

    Returns:
        ``(B, 1, H, W[, D])`` float tensor.
    """
    if method == "perceptual":
        if distance is None:
            raise ValueError(
                "map_method 'perceptual' needs a feature network: train with --perceptual_score_weights FILE "
                "(a 1-channel MONAI resnet18 checkpoint, e.g. the supervised_resnet18 bundle's model.pt)"
            )
        m = distance(torch.as_tensor(image).float(), torch.as_tensor(reconstruction).float())
    elif method == "variance_normalised":
        if log_variance is None:
            raise ValueError(
                "map_method 'variance_normalised' needs a network that predicts a per-pixel log-variance "
                "(model_type 'aeu'); this network predicts only a reconstruction"
            )
        m = variance_normalised_map(image, reconstruction, log_variance)
    elif method == "abs" or method == "squared":
        m = residual_map(image, reconstruction, kind=method)
    elif method == "squared_rel":
        m = relative_squared_map(image, reconstruction)
    elif method == "ssim":
        m = ssim_map(image, reconstruction, win_size=win_size, data_range=data_range)
    elif method == "combined":
        w_abs, w_ssim = _weights(weights)
        m = w_abs * residual_map(image, reconstruction, "abs") + w_ssim * ssim_map(
            image, reconstruction, win_size=win_size, data_range=data_range
        )
    else:
        raise ValueError(f"method must be one of {MAP_METHODS}, got {method!r}")
    if smooth_sigma:
        m = gaussian_smooth(m, smooth_sigma)
    if foreground is not None:
        m = mask_outside(m, foreground)
    return m


def erode_mask(foreground: torch.Tensor, pixels: int) -> torch.Tensor:
    """A ``(B, 1, *spatial)`` foreground mask eroded by ``pixels`` (a square / cubic structuring element), as a
    float 0/1 mask; ``pixels <= 0`` returns the mask unchanged. Pixels outside the image count as background, so the
    image border is eroded too.

    Example:
        >>> m = torch.zeros(1, 1, 7, 7); m[..., 1:6, 1:6] = 1
        >>> erode_mask(m, 1)[0, 0].sum().item(), erode_mask(m, 2)[0, 0, 3, 3].item()
        (9.0, 1.0)
    """
    if pixels <= 0:
        return foreground
    fg = foreground.as_tensor() if hasattr(foreground, "as_tensor") else foreground
    fg = (fg > 0.5).float() if fg.dtype != torch.bool else fg.float()
    pool = torch.nn.functional.max_pool2d if fg.ndim == 4 else torch.nn.functional.max_pool3d
    k = 2 * int(pixels) + 1
    pad = [int(pixels)] * (2 * (fg.ndim - 2))
    padded = torch.nn.functional.pad(1.0 - fg, pad, value=1.0)  # outside the image is background
    return 1.0 - pool(padded, k, stride=1)


def mask_outside(anomaly_map: torch.Tensor, foreground: ArrayLike) -> torch.Tensor:
    """``anomaly_map`` with 0 outside ``foreground`` (a bool or 0/1 mask broadcastable to the map's shape).

    Example:
        >>> mask_outside(torch.ones(1, 1, 2, 2), torch.tensor([[[[1, 0], [0, 1]]]])).flatten().tolist()
        [1.0, 0.0, 0.0, 1.0]
    """
    m = anomaly_map
    fg = foreground if isinstance(foreground, torch.Tensor) else torch.as_tensor(np.asarray(foreground))
    fg = fg.as_tensor() if hasattr(fg, "as_tensor") else fg
    fg = fg.to(m.device)
    fg = fg.bool() if fg.dtype == torch.bool else fg > 0.5
    shape = m.shape
    try:
        m = torch.where(fg, m, torch.zeros((), dtype=m.dtype, device=m.device))
    except RuntimeError as e:
        raise ValueError(
            f"foreground of shape {tuple(fg.shape)} does not broadcast to the map shape {tuple(m.shape)}"
        ) from e
    if m.shape != shape:
        raise ValueError(f"foreground of shape {tuple(fg.shape)} changes the map shape to {tuple(m.shape)}")
    return m


def image_detail_energy(
    image: torch.Tensor, foreground: torch.Tensor | None = None, sigma: float = 1.5, floor: float = 1e-6
) -> torch.Tensor:
    """Each sample's fine-detail energy: the mean over its foreground of ``(x - G_sigma * x)^2``, channels averaged.

    ``G_sigma`` is a Gaussian blur (MONAI's :class:`~monai.networks.layers.GaussianFilter`, the image reflected at its
    border). This is what a reconstruction network cannot code and leaves in its residual, and it grows with texture,
    sharpness and noise: an input-complexity term in the sense of Serra et al., ICLR 2020.

    Args:
        image: ``(B, C, *spatial)`` normalised images, at the training size.
        foreground: ``(B, 1, *spatial)`` 0/1 or bool mask (``None``: the whole image); a sample with no foreground
            uses its whole image.
        sigma: the blur, in pixels at the training size.
        floor: the smallest energy returned (a flat image).

    Returns:
        ``(B,)`` float tensor.

    Example:
        >>> flat = torch.zeros(1, 1, 16, 16)
        >>> noisy = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(0))
        >>> bool(image_detail_energy(noisy) > 100 * image_detail_energy(flat))
        True
    """
    img = image.as_tensor() if hasattr(image, "as_tensor") else image
    img = img.float()
    r = int(math.ceil(3 * sigma))
    pad = [r] * (2 * (img.ndim - 2))
    if min(img.shape[2:]) > r:
        padded = torch.nn.functional.pad(img, pad, mode="reflect")
    else:
        padded = torch.nn.functional.pad(img, pad, mode="replicate")
    blurred = gaussian_smooth(padded, sigma)
    crop = (slice(None), slice(None), *[slice(r, r + n) for n in img.shape[2:]])
    detail = ((img - blurred[crop]) ** 2).mean(dim=1, keepdim=True).flatten(1)
    if foreground is None:
        energy = detail.mean(1)
    else:
        fg = foreground.as_tensor() if hasattr(foreground, "as_tensor") else torch.as_tensor(foreground)
        w = (fg > 0.5).float() if fg.dtype != torch.bool else fg.float()
        w = w.to(detail.device).expand(img.shape[0], 1, *img.shape[2:]).flatten(1)
        n = w.sum(1)
        whole = detail.mean(1)
        energy = torch.where(n > 0, (detail * w).sum(1) / n.clamp_min(1.0), whole)
    return energy.clamp_min(floor)


def normalise_map(
    anomaly_map: torch.Tensor, image: torch.Tensor, foreground: torch.Tensor | None, method: str = "none"
) -> torch.Tensor:
    """The map of each slice divided by a per-slice scale (``"none"``: unchanged).

    ``"complexity"``: divided by :func:`image_detail_energy` of the input over its (uneroded) foreground. A
    reconstruction's residual grows with the image's own texture and sharpness; where normal images are sharper than
    abnormal ones (another scanner, another source), the raw residual ranks the normals first. The ratio scores what
    the network failed to reconstruct beyond the detail any image of that sharpness leaves behind. The map keeps its
    shape, so the heatmap shows the same places; its unit becomes "times the image's detail energy".

    Args:
        anomaly_map: ``(B, 1, *spatial)``.
        image: the network's input ``(B, C, *spatial)``.
        foreground: the slice's foreground mask before any erosion (``None``: the whole image).
        method: one of :data:`MAP_NORMALISATIONS`.

    Example:
        >>> img = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(0)).repeat(2, 1, 1, 1)
        >>> img[1] = img[1] * 2  # twice the contrast: four times the residual and the detail energy
        >>> m = 0.1 * img**2
        >>> out = normalise_map(m, img, None, "complexity")
        >>> float(m[1].max() / m[0].max()), bool(torch.allclose(out[1], out[0], rtol=1e-4))
        (4.0, True)
    """
    if method not in MAP_NORMALISATIONS:
        raise ValueError(f"map normalisation must be one of {MAP_NORMALISATIONS}, got {method!r}")
    if method == "none":
        return anomaly_map
    energy = image_detail_energy(image, foreground).to(anomaly_map.device, anomaly_map.dtype)
    return anomaly_map / energy.view(-1, *([1] * (anomaly_map.ndim - 1)))


def resolve_map_normalisation(items: Sequence[Mapping[str, Any] | str], mode: str = "auto", key: str = "image") -> str:
    """The map normalisation a model is trained and saved with: ``mode`` unless ``"auto"``; ``"auto"`` gives
    ``"complexity"`` for a training set of 2D image files (PNG / JPEG) and ``"none"`` for volumes.

    Why not for volumes: a 2D image is one acquisition, so its detail energy measures that acquisition's sharpness
    (the confound :func:`normalise_map` removes); the slices of a volume share one acquisition and their detail
    energy varies with anatomy instead (the smooth slices at the vertex have a fraction of a mid-brain slice's), so
    dividing slice by slice lifts the near-empty slices: on the demo's T1 volumes the slice AUROC fell from 0.805 to
    0.683 (docs/experiments.md, Part F).

    Example:
        >>> resolve_map_normalisation(["a.png", "b.jpg"]), resolve_map_normalisation([{"image": "v.nii.gz"}])
        ('complexity', 'none')
        >>> resolve_map_normalisation(["v.nii.gz"], "complexity")
        'complexity'
    """
    if mode not in (*MAP_NORMALISATIONS, "auto"):
        raise ValueError(f"map_normalisation must be one of {(*MAP_NORMALISATIONS, 'auto')}, got {mode!r}")
    if mode != "auto":
        return mode
    paths = [str(i[key]) if isinstance(i, Mapping) else str(i) for i in items]
    if paths and all(p.lower().endswith((".png", ".jpg", ".jpeg")) for p in paths):
        return "complexity"
    return "none"
