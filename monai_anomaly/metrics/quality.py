"""Reconstruction quality (SSIM, MS-SSIM, PSNR) and generative quality (Frechet distance, Inception Score).

Pure code on tensors (no Ignite): :class:`monai_anomaly.handlers.quality.GenerativeQualityHandler` wires it into an
evaluator. SSIM, MS-SSIM, PSNR and the Frechet distance are MONAI's metrics; this module only picks settings that fit
the image size, handles the corner cases (identical images, singular covariances) and adds the Inception Score and a
feature extractor for MONAI ResNet classifiers.

FID and IS need a feature network. Nothing is downloaded here (no Inception weights): the network is a classifier the
user or the project trained, e.g. the ``supervised_resnet18`` bundle's ``models/model.pt``, read by
:func:`load_feature_network`. Its numbers are comparable between runs that use the same feature network, not with
the Inception-based FID / IS of papers.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.metrics import FIDMetric, MultiScaleSSIMMetric, PSNRMetric, SSIMMetric
from monai.metrics.fid import compute_frechet_distance
from torch import nn

from monai_anomaly.utils.checkpoints import load_checkpoint
from monai_anomaly.utils.errors import BadInputError

__all__ = [
    "MS_SSIM_WEIGHTS",
    "ClassifierFeatures",
    "frechet_distance",
    "inception_score",
    "load_feature_network",
    "reconstruction_quality",
    "reconstruction_quality_per_sample",
    "summarize_quality",
]

logger = logging.getLogger("monai_anomaly")

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang et al. 2003, MONAI's default (5 scales)
_KERNEL = 11  # SSIM / MS-SSIM Gaussian window (MONAI's default)


# ---------------------------------------------------------------------------------------- reconstruction quality
def _batch(x: Any, name: str) -> torch.Tensor:
    """A float ``(N, C, *spatial)`` tensor from a tensor / array or a sequence of ``(C, *spatial)`` samples."""
    if isinstance(x, (list, tuple)):
        if not x:
            raise ValueError(f"{name} is empty")
        x = torch.stack([torch.as_tensor(np.asarray(i) if not isinstance(i, torch.Tensor) else i) for i in x])
    t = torch.as_tensor(x) if not isinstance(x, torch.Tensor) else x
    t = t.detach().float()
    if t.ndim not in (4, 5):
        raise ValueError(f"{name} must be (N, C, H, W) or (N, C, H, W, D), got shape {tuple(t.shape)}")
    return t.as_tensor() if hasattr(t, "as_tensor") else t


def _ms_ssim_setting(spatial: Sequence[int]) -> tuple[int, tuple[float, ...]]:
    """The most scales (<= 5) MONAI's MS-SSIM can use at this size (it checks ``size // (scales - 1) ** 2 > 10``;
    the coarsest scale must also be at least 11 px),
    and their weights: MONAI's defaults, or for fewer scales the first ``scales`` of them renormalised to sum to 1."""
    for scales in range(len(MS_SSIM_WEIGHTS), 0, -1):
        # MONAI's own check, and the coarsest scale (halved scales - 1 times) must still hold the window
        if all(s // max(1, scales - 1) ** 2 > _KERNEL - 1 and s // 2 ** (scales - 1) >= _KERNEL for s in spatial):
            if scales == len(MS_SSIM_WEIGHTS):
                return scales, MS_SSIM_WEIGHTS
            w = MS_SSIM_WEIGHTS[:scales]
            return scales, tuple(float(v) / sum(w) for v in w)
    return 0, ()


def reconstruction_quality_per_sample(images: Any, reconstructions: Any, data_range: float) -> dict[str, Any]:
    """Per-sample SSIM, MS-SSIM and PSNR of reconstructions against their images (MONAI's metrics).

    See :func:`reconstruction_quality` for the settings; this is the same without the mean, for callers that
    accumulate batches.

    Args:
        images: the real images, ``(N, C, H, W)`` or ``(N, C, H, W, D)`` (or a sequence of channel-first samples).
        reconstructions: the reconstructions, same shape.
        data_range: the intensity range (max - min) of the images, e.g. 1 for [0, 1] and 2 for [-1, 1].

    Returns:
        ``{"ssim", "ms_ssim", "psnr"}``: 1-D float64 tensors of length N (``ms_ssim`` is ``None`` when the image is
        too small for even one scale), and the settings ``ssim_win_size``, ``ms_ssim_scales``, ``ms_ssim_weights``.

    Raises:
        ValueError: shapes differ, the rank is not 4 or 5, or ``data_range`` is not a positive number.
    """
    x, y = _batch(images, "images"), _batch(reconstructions, "reconstructions")
    if x.shape != y.shape:
        raise ValueError(f"images {tuple(x.shape)} and reconstructions {tuple(y.shape)} differ in shape")
    if not (isinstance(data_range, (int, float)) and math.isfinite(data_range) and data_range > 0):
        raise ValueError(f"data_range must be a positive number, got {data_range!r}")
    data_range = float(data_range)
    spatial_dims = x.ndim - 2
    spatial = tuple(x.shape[2:])
    win = min(_KERNEL, *(s if s % 2 else s - 1 for s in spatial))  # an odd window that fits the image
    if win < 3:
        raise ValueError(f"images of spatial size {spatial} are too small for SSIM (at least 3 px a side)")
    ssim = SSIMMetric(spatial_dims, data_range=data_range, win_size=win, reduction="none")(y, x)
    scales, weights = _ms_ssim_setting(spatial)
    ms = None
    if scales:
        metric = MultiScaleSSIMMetric(
            spatial_dims, data_range=data_range, kernel_size=_KERNEL, weights=weights, reduction="none"
        )
        ms = metric(y, x).reshape(-1).double()
    psnr = PSNRMetric(max_val=data_range, reduction="none")(y.double(), x.double()).reshape(-1)  # inf if identical
    return {
        "ssim": ssim.reshape(-1).double(),
        "ms_ssim": ms,
        "psnr": psnr,
        "ssim_win_size": win,
        "ms_ssim_scales": scales,
        "ms_ssim_weights": list(weights),
    }


def reconstruction_quality(images: Any, reconstructions: Any, data_range: float) -> dict[str, Any]:
    """Mean SSIM, MS-SSIM and PSNR of reconstructions against their images (MONAI's ``SSIMMetric``,
    ``MultiScaleSSIMMetric`` and ``PSNRMetric``; 2D or 3D from the tensor rank).

    SSIM uses MONAI's 11-pixel Gaussian window (smaller when the image is). MS-SSIM uses MONAI's five default scales
    when the image is large enough (at least 176 px a side); on smaller images it uses as many scales as fit, with
    the first default weights renormalised to sum to 1, and says so (``ms_ssim_scales`` < 5 and ``ms_ssim_note``).
    PSNR is ``inf`` for an image reconstructed exactly, so its mean is too when any is.

    Args:
        images: the real images, ``(N, C, H, W)`` or ``(N, C, H, W, D)`` (or a sequence of channel-first samples).
        reconstructions: the reconstructions, same shape.
        data_range: the intensity range (max - min) of the images, e.g. 1 for [0, 1] and 2 for [-1, 1].

    Returns:
        ``{"n", "ssim", "ms_ssim", "psnr", "data_range", "ssim_win_size", "ms_ssim_scales", "ms_ssim_weights"}``
        and ``ms_ssim_note`` when fewer than 5 scales were used (``ms_ssim`` is ``None`` when none fit).

    Raises:
        ValueError: shapes differ, the rank is not 4 or 5, or ``data_range`` is not a positive number.

    Example:
        >>> x = torch.rand(4, 1, 32, 32)
        >>> q = reconstruction_quality(x, x, data_range=1.0)
        >>> round(q["ssim"], 4), q["psnr"], q["ms_ssim_scales"]
        (1.0, inf, 2)
    """
    per = reconstruction_quality_per_sample(images, reconstructions, data_range)
    return summarize_quality(per, data_range)


def summarize_quality(per_sample: Mapping[str, Any], data_range: float) -> dict[str, Any]:
    """The means of :func:`reconstruction_quality_per_sample`'s values (concatenated over batches by the caller)."""
    n = int(per_sample["ssim"].numel())
    out: dict[str, Any] = {"n": n, "data_range": float(data_range)}
    for key in ("ssim", "ms_ssim", "psnr"):
        v = per_sample.get(key)
        out[key] = float(v.mean()) if v is not None and v.numel() else None
    out["ssim_win_size"] = int(per_sample["ssim_win_size"])
    out["ms_ssim_scales"] = int(per_sample["ms_ssim_scales"])
    out["ms_ssim_weights"] = [float(w) for w in per_sample["ms_ssim_weights"]]
    scales = out["ms_ssim_scales"]
    if scales < len(MS_SSIM_WEIGHTS):
        out["ms_ssim_note"] = f"image too small for MONAI's {len(MS_SSIM_WEIGHTS)}-scale MS-SSIM (11-px window); " + (
            f"{scales} scale(s) used, weights renormalised" if scales else "no scale fits: MS-SSIM skipped"
        )
    return out


# ------------------------------------------------------------------------------------------ generative quality
def frechet_distance(real_features: Any, fake_features: Any, epsilon: float = 1e-6) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (MONAI's ``FIDMetric``): FID when the
    features are Inception pool features, a "FID-like" distance with any other network's features.

    With fewer samples than feature dimensions the covariances are singular; when their product has no usable
    square root, ``epsilon`` is added to both diagonals (as in the reference implementation). Tiny negative results of
    rounding are clamped to 0.

    Args:
        real_features: ``(N, D)`` features of real images (N >= 2).
        fake_features: ``(M, D)`` features of generated / reconstructed images (M >= 2).
        epsilon: diagonal offset used only when the plain computation fails.

    Returns:
        the distance (>= 0).

    Raises:
        ValueError: not 2-D, different feature sizes, or fewer than 2 samples in a set.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> a = torch.randn(2000, 2, generator=g)
        >>> round(frechet_distance(a, a + 3.0), 2)  # a mean shift of 3 in each of 2 dimensions: 9 + 9
        18.0
    """
    x = torch.as_tensor(np.asarray(real_features) if not isinstance(real_features, torch.Tensor) else real_features)
    y = torch.as_tensor(np.asarray(fake_features) if not isinstance(fake_features, torch.Tensor) else fake_features)
    x, y = x.detach().double().cpu(), y.detach().double().cpu()
    if x.ndim != 2 or y.ndim != 2:
        raise ValueError(f"features must be (N, D), got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"feature sizes differ: {x.shape[1]} and {y.shape[1]}")
    if min(x.shape[0], y.shape[0]) < 2:
        raise ValueError(f"need at least 2 samples per set for a covariance, got {x.shape[0]} and {y.shape[0]}")
    if x.shape[1] == 1:  # MONAI's covariance squeezes a 1x1 matrix to a scalar: the 1-D closed form
        vx, vy = x[:, 0].var(), y[:, 0].var()
        return max(0.0, float((x.mean() - y.mean()) ** 2 + vx + vy - 2 * torch.sqrt(vx * vy)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy's "matrix is singular" warning: handled below
        try:
            d = float(FIDMetric()(y, x))
        except ValueError:  # a large imaginary part in sqrtm: regularise
            d = math.nan
        if not math.isfinite(d):
            eye = torch.eye(x.shape[1], dtype=torch.float64) * epsilon
            d = float(compute_frechet_distance(y.mean(0), torch.cov(y.T) + eye, x.mean(0), torch.cov(x.T) + eye))
    return max(0.0, d)


def inception_score(probabilities: Any, splits: int = 1, eps: float = 1e-12) -> tuple[float, float]:
    """Inception Score ``exp(E_x KL(p(y|x) || p(y)))`` of class probabilities (any classifier's softmax output).

    It is 1 when every sample gets the same prediction and the number of classes C when predictions are confident
    and spread evenly over the classes; so for a 2-class classifier it lies in [1, 2]. Probabilities are clamped to
    ``eps`` before the logarithm.

    Args:
        probabilities: ``(N, C)`` class probabilities (rows summing to 1).
        splits: compute the score on this many equal consecutive chunks (the usual 10 for Inception) and report the
            mean and standard deviation over them.
        eps: clamp for ``log(0)``.

    Returns:
        ``(mean, std)`` over the splits (std 0 for one split).

    Raises:
        ValueError: not ``(N, C)``, negative values, or ``splits`` not in ``[1, N]``.

    Example:
        >>> inception_score(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))[0]  # confident, both classes: C = 2
        2.0
        >>> inception_score(torch.tensor([[0.7, 0.3], [0.7, 0.3]]))[0]  # the same prediction for every sample
        1.0
    """
    p = torch.as_tensor(np.asarray(probabilities) if not isinstance(probabilities, torch.Tensor) else probabilities)
    p = p.detach().double().cpu()
    if p.ndim != 2 or p.shape[0] < 1 or p.shape[1] < 1:
        raise ValueError(f"probabilities must be (N, C), got shape {tuple(p.shape)}")
    if not torch.isfinite(p).all() or (p < 0).any():
        raise ValueError("probabilities must be finite and non-negative")
    if not 1 <= int(splits) <= p.shape[0]:
        raise ValueError(f"splits must be in [1, {p.shape[0]}], got {splits}")
    scores = []
    for chunk in torch.tensor_split(p, int(splits)):
        pc = chunk.clamp_min(eps)
        py = chunk.mean(0, keepdim=True).clamp_min(eps)
        kl = (chunk * (pc.log() - py.log())).sum(1).mean()
        scores.append(float(torch.exp(kl)))
    return float(np.mean(scores)), float(np.std(scores))


# -------------------------------------------------------------------------------------------- feature network
def _head(model: nn.Module) -> nn.Linear:
    """The final Linear layer whose input is the penultimate feature vector."""
    for name in ("fc", "classifier"):
        head = getattr(model, name, None)
        if isinstance(head, nn.Sequential) and len(head) and isinstance(head[-1], nn.Linear):
            head = head[-1]
        if isinstance(head, nn.Linear):
            return head
    raise ValueError(
        f"{type(model).__name__} has no Linear classification head named 'fc' or 'classifier' (a Linear, or a "
        "Sequential ending in one): give a classifier such as monai.networks.nets.resnet18(..., num_classes=2) "
        "built with feed_forward=True"
    )


class ClassifierFeatures:
    """Penultimate features and class probabilities of a classifier network, for FID and the Inception Score.

    The features are the input of the network's final Linear layer (``fc`` of a MONAI ResNet, or ``classifier``, also
    the last Linear of a Sequential ``classifier``), read with a forward pre-hook during one forward pass; the
    probabilities are the softmax of the logits (a single logit becomes ``[1 - sigmoid, sigmoid]``). The network is
    put in eval mode; inputs are moved to its device and used as they are (no resizing).

    Args:
        model: the classifier.

    Raises:
        ValueError: the model has no such head.

    Example:
        >>> from monai.networks.nets import resnet18
        >>> extract = ClassifierFeatures(resnet18(spatial_dims=2, n_input_channels=1, num_classes=2))
        >>> feats, probs = extract(torch.rand(3, 1, 32, 32))
        >>> tuple(feats.shape), tuple(probs.shape)
        ((3, 512), (3, 2))
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.head = _head(model)
        self.model.eval()

    @property
    def device(self) -> torch.device:
        p = next(self.model.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(features (B, D), probabilities (B, C))`` of a batch, on the CPU in float32."""
        captured: list[torch.Tensor] = []
        handle = self.head.register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
        try:
            x = images.as_tensor() if hasattr(images, "as_tensor") else images
            logits = self.model(x.to(self.device, dtype=torch.float32))
        finally:
            handle.remove()
        if not captured:
            raise ValueError(f"{type(self.model).__name__}: its head was not called in forward")
        logits = logits.float()
        if logits.ndim == 1 or logits.shape[-1] == 1:
            p1 = torch.sigmoid(logits.reshape(-1, 1))
            probs = torch.cat([1 - p1, p1], dim=1)
        else:
            probs = torch.softmax(logits, dim=1)
        feats = captured[-1].reshape(captured[-1].shape[0], -1).float()
        return feats.cpu(), probs.cpu()


def _strip_prefix(state: Mapping[str, Any], wanted: Sequence[str]) -> dict[str, Any] | None:
    """The entries of ``state`` under the prefix that makes every ``wanted`` key present (``""``, ``model.``, ...)."""
    anchor = wanted[0]
    prefixes = sorted({k[: -len(anchor)] for k in state if isinstance(k, str) and k.endswith(anchor)}, key=len)
    for p in prefixes:
        if all(p + k in state for k in wanted):
            return {k[len(p) :]: v for k, v in state.items() if k.startswith(p)}
    return None


def load_feature_network(
    path: str | os.PathLike, map_location: Any = "cpu", return_settings: bool = False
) -> nn.Module | tuple[nn.Module, dict[str, Any]]:
    """A 1-channel 2D MONAI ``resnet18`` classifier with the weights of a checkpoint file (never pretrained weights).

    The file is a MONAI ``CheckpointSaver`` dict ``{"model": state_dict, ...}`` (e.g. the ``supervised_resnet18``
    bundle's ``models/model.pt``) or a bare state dict; keys may carry a wrapper prefix (``model.``, ``module.``),
    which is stripped. The number of classes is read from the ``fc`` weights (2 for the project's classifier). It is
    read with :func:`~monai_anomaly.utils.checkpoints.load_checkpoint` (plain tensors only).

    Args:
        path: the checkpoint file.
        map_location: where to load the weights.
        return_settings: also return the checkpoint's ``settings`` dict (e.g. its ``intensity_range``), ``{}`` if none.

    Returns:
        the network in eval mode (and the settings when asked).

    Raises:
        BadInputError: the file cannot be read or does not hold the weights of a 1-channel 2D MONAI resnet18.

    Example:
        >>> net = load_feature_network("runs/supervised_resnet18/models/model.pt")  # doctest: +SKIP
        >>> feats, probs = ClassifierFeatures(net)(images)  # doctest: +SKIP
    """
    from monai.networks.nets import resnet18

    ckpt = load_checkpoint(path, map_location=map_location)
    if not isinstance(ckpt, Mapping):
        raise BadInputError(path, f"not a model checkpoint (holds a {type(ckpt).__name__}, not a dict of weights)")
    settings = ckpt.get("settings") if isinstance(ckpt.get("settings"), Mapping) else {}
    state = ckpt.get("model") if isinstance(ckpt.get("model"), Mapping) else ckpt
    if not all(isinstance(v, torch.Tensor) for v in state.values()) or not state:
        raise BadInputError(path, "holds no state dict of network weights (expected {'model': state_dict} or one)")
    probe = resnet18(spatial_dims=2, n_input_channels=1, num_classes=2)
    wanted = [k for k in probe.state_dict() if not k.endswith("num_batches_tracked")]
    found = _strip_prefix(state, wanted)
    if found is None:
        raise BadInputError(
            path,
            "not the weights of a 2D MONAI resnet18 classifier (conv1 ... layer4, fc); give the supervised_resnet18 "
            "bundle's models/model.pt or another 1-channel monai.networks.nets.resnet18 checkpoint",
        )
    conv1, fc = found["conv1.weight"], found["fc.weight"]
    if conv1.ndim != 4 or conv1.shape[1] != 1:
        raise BadInputError(
            path, f"the classifier takes {conv1.shape[1]}-channel {conv1.ndim - 2}D input; a 1-channel 2D one is needed"
        )
    net = resnet18(spatial_dims=2, n_input_channels=1, num_classes=int(fc.shape[0]))
    weights = net.state_dict()  # BatchNorm's num_batches_tracked may be absent from older files
    weights.update({k: found[k] for k in weights if k in found})
    try:
        net.load_state_dict(weights, strict=True)
    except RuntimeError as e:
        raise BadInputError(path, f"weights do not fit a MONAI resnet18: {str(e).splitlines()[0][:200]}") from None
    net.to(map_location if isinstance(map_location, (str, torch.device)) else "cpu").eval()
    logger.info("feature network: MONAI resnet18 (%d classes) from %s", int(fc.shape[0]), path)
    return (net, dict(settings)) if return_settings else net
