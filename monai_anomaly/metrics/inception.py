"""The Inception-v3 of FID and the Inception Score, for numbers that can be compared with papers.

FID and IS in the literature use one particular network: the TensorFlow Inception-v3 graph of 2015-12-05
(``classify_image_graph_def.pb``, 1008 classes), as ported to PyTorch by torch-fidelity and pytorch-fid. This module
rebuilds that network (:class:`InceptionV3FID`) with the same state-dict key names, so the weight file those packages
use loads into it unchanged (``strict=True``):

* torch-fidelity's ``weights-inception-2015-12-05-6726825d.pth`` (a bare state dict of float32 tensors, without
  BatchNorm's ``num_batches_tracked``), or
* pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` (the same keys).

Nothing is downloaded: the user gives the file (e.g. ``--feature-network weights-inception-2015-12-05-6726825d.pth``)
and :func:`load_inception_weights` reads it with
:func:`~monai_anomaly.utils.checkpoints.load_checkpoint` (plain tensors only). :func:`is_inception_weights` tells such a
file from a MONAI ResNet checkpoint, and :class:`InceptionFeatures` has the call contract of
:class:`monai_anomaly.metrics.quality.ClassifierFeatures`: ``(2048 pool features, 1008 class probabilities)``.

The forward pass follows torch-fidelity's ``FeatureExtractorInceptionV3``: TensorFlow-1.x bilinear resize to 299 x 299
(``align_corners=False`` in TF1's sense: source = destination * in/out, no half-pixel offset, so *not* PyTorch's
``F.interpolate``), ``(x - 128) / 128``, BatchNorm eps 1e-3, average pools that ignore padding, a max pool in
``Mixed_7c``'s pool branch; FID uses the 2048 pooled features and IS the softmax of ``fc`` *without* its bias
(torch-fidelity's ``logits_unbiased``).

Remaining differences from torch-fidelity's numbers:

* torch-fidelity reads 8-bit RGB images; here float images in a known intensity range are mapped to [0, 255], clamped
  and (by default) rounded to integers, and 1-channel images are repeated to 3 channels. The features equal
  torch-fidelity's for the same 8-bit images up to float rounding of the convolutions.
* the statistics are computed by :mod:`monai_anomaly.metrics.quality`: its Frechet distance (MONAI's, float64) adds a
  tiny diagonal offset only when the covariance product has no usable square root, and its Inception Score takes
  float32 probabilities in consecutive splits, whereas torch-fidelity works from the float64 logits and shuffles the
  samples (seed 2020) before its 10 splits. These change the last digits, not the comparison with papers.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from monai_anomaly.utils.checkpoints import load_checkpoint
from monai_anomaly.utils.errors import BadInputError

__all__ = [
    "INCEPTION_WEIGHTS_FILE",
    "InceptionFeatures",
    "InceptionV3FID",
    "is_inception_weights",
    "load_inception_weights",
    "resize_bilinear_tf1",
]

logger = logging.getLogger("monai_anomaly")

#: the name of torch-fidelity's weight file (the user downloads it; nothing here fetches it)
INCEPTION_WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"
INPUT_SIZE = 299
NUM_FEATURES = 2048
NUM_CLASSES = 1008


# -------------------------------------------------------------------------------------------- resize
def resize_bilinear_tf1(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of ``(B, C, H, W)`` as TensorFlow 1.x's ``resize_bilinear(align_corners=False)`` does it.

    Output pixel ``i`` samples the input at ``i * in / out`` (no half-pixel centres, unlike ``F.interpolate``), the
    neighbour beyond the last row / column is clamped to it, and the two linear interpolations run along x first and
    then along y, in float32 coordinates, as torch-fidelity's ``interpolate_bilinear_2d_like_tensorflow1x``.

    Example:
        >>> resize_bilinear_tf1(torch.arange(4.0).reshape(1, 1, 1, 4), (1, 8))[0, 0, 0].tolist()
        [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.0]
    """
    if x.ndim != 4 or not torch.is_floating_point(x):
        raise ValueError(f"expected a floating-point (B, C, H, W) tensor, got {x.dtype} of shape {tuple(x.shape)}")

    def taps(n_in: int, n_out: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        scale = torch.tensor(n_in / n_out, dtype=torch.float32)
        pos = torch.arange(n_out, dtype=x.dtype, device=x.device) * scale.to(x.device)
        lo = pos.long()  # positions are >= 0: truncation is floor
        hi = (lo + 1).clamp_max(n_in - 1)
        return lo, hi, pos - lo.to(pos.dtype)

    y_lo, y_hi, wy = taps(x.shape[2], int(size[0]))
    x_lo, x_hi, wx = taps(x.shape[3], int(size[1]))
    rows_lo, rows_hi = x.index_select(2, y_lo), x.index_select(2, y_hi)
    wx = wx.view(1, 1, 1, -1)
    top = rows_lo.index_select(3, x_lo) + (rows_lo.index_select(3, x_hi) - rows_lo.index_select(3, x_lo)) * wx
    bottom = rows_hi.index_select(3, x_lo) + (rows_hi.index_select(3, x_hi) - rows_hi.index_select(3, x_lo)) * wx
    return top + (bottom - top) * wy.view(1, 1, -1, 1)


# -------------------------------------------------------------------------------------------- network
class _ConvBN(nn.Sequential):
    """Convolution without bias, BatchNorm (eps 1e-3, TensorFlow's), ReLU; keys ``conv.*`` and ``bn.*``."""

    def __init__(self, c_in: int, c_out: int, kernel: int | tuple[int, int], stride: int = 1, padding: Any = 0):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=1e-3)
        self.relu = nn.ReLU(inplace=True)


def _avg3(x: torch.Tensor) -> torch.Tensor:
    """3x3 stride-1 average pool whose border windows average only the real pixels (TensorFlow's SAME padding)."""
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class _Block35(nn.Module):
    """``Mixed_5b/5c/5d`` (35 x 35): 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool-1x1."""

    def __init__(self, c_in: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = _ConvBN(c_in, 64, 1)
        self.branch5x5_1 = _ConvBN(c_in, 48, 1)
        self.branch5x5_2 = _ConvBN(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = _ConvBN(c_in, 64, 1)
        self.branch3x3dbl_2 = _ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _ConvBN(96, 96, 3, padding=1)
        self.branch_pool = _ConvBN(c_in, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [
                self.branch1x1(x),
                self.branch5x5_2(self.branch5x5_1(x)),
                self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                self.branch_pool(_avg3(x)),
            ],
            dim=1,
        )


class _Reduce35(nn.Module):
    """``Mixed_6a``: 35 -> 17 with a stride-2 3x3 | 1x1-3x3-3x3/2 | maxpool/2."""

    def __init__(self, c_in: int) -> None:
        super().__init__()
        self.branch3x3 = _ConvBN(c_in, 384, 3, stride=2)
        self.branch3x3dbl_1 = _ConvBN(c_in, 64, 1)
        self.branch3x3dbl_2 = _ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _ConvBN(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [
                self.branch3x3(x),
                self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                F.max_pool2d(x, kernel_size=3, stride=2),
            ],
            dim=1,
        )


class _Block17(nn.Module):
    """``Mixed_6b..6e`` (17 x 17): factorised 7x7 convolutions (1x7 and 7x1) with ``c7`` inner channels."""

    def __init__(self, c_in: int, c7: int) -> None:
        super().__init__()
        row, col = dict(kernel=(1, 7), padding=(0, 3)), dict(kernel=(7, 1), padding=(3, 0))
        self.branch1x1 = _ConvBN(c_in, 192, 1)
        self.branch7x7_1 = _ConvBN(c_in, c7, 1)
        self.branch7x7_2 = _ConvBN(c7, c7, **row)
        self.branch7x7_3 = _ConvBN(c7, 192, **col)
        self.branch7x7dbl_1 = _ConvBN(c_in, c7, 1)
        self.branch7x7dbl_2 = _ConvBN(c7, c7, **col)
        self.branch7x7dbl_3 = _ConvBN(c7, c7, **row)
        self.branch7x7dbl_4 = _ConvBN(c7, c7, **col)
        self.branch7x7dbl_5 = _ConvBN(c7, 192, **row)
        self.branch_pool = _ConvBN(c_in, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dbl = x
        for i in range(1, 6):
            dbl = getattr(self, f"branch7x7dbl_{i}")(dbl)
        return torch.cat(
            [
                self.branch1x1(x),
                self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x))),
                dbl,
                self.branch_pool(_avg3(x)),
            ],
            dim=1,
        )


class _Reduce17(nn.Module):
    """``Mixed_7a``: 17 -> 8 with 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | maxpool/2."""

    def __init__(self, c_in: int) -> None:
        super().__init__()
        self.branch3x3_1 = _ConvBN(c_in, 192, 1)
        self.branch3x3_2 = _ConvBN(192, 320, 3, stride=2)
        self.branch7x7x3_1 = _ConvBN(c_in, 192, 1)
        self.branch7x7x3_2 = _ConvBN(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = _ConvBN(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = _ConvBN(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x
        for i in range(1, 5):
            b = getattr(self, f"branch7x7x3_{i}")(b)
        return torch.cat(
            [self.branch3x3_2(self.branch3x3_1(x)), b, F.max_pool2d(x, kernel_size=3, stride=2)],
            dim=1,
        )


class _Block8(nn.Module):
    """``Mixed_7b`` / ``Mixed_7c`` (8 x 8): split 1x3 / 3x1 heads. The TensorFlow graph pools the last block's pool
    branch with a *max* pool (``max_pool=True``), the one before with an average pool."""

    def __init__(self, c_in: int, max_pool: bool) -> None:
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = _ConvBN(c_in, 320, 1)
        self.branch3x3_1 = _ConvBN(c_in, 384, 1)
        self.branch3x3_2a = _ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = _ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = _ConvBN(c_in, 448, 1)
        self.branch3x3dbl_2 = _ConvBN(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = _ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = _ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = _ConvBN(c_in, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch3x3_1(x)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1) if self.max_pool else _avg3(x)
        return torch.cat(
            [
                self.branch1x1(x),
                self.branch3x3_2a(a),
                self.branch3x3_2b(a),
                self.branch3x3dbl_3a(d),
                self.branch3x3dbl_3b(d),
                self.branch_pool(pooled),
            ],
            dim=1,
        )


class InceptionV3FID(nn.Module):
    """The FID / IS Inception-v3 (TensorFlow 2015-12-05 graph) with torch-fidelity's state-dict key names.

    ``forward`` takes float RGB images with values in [0, 255], shape ``(B, 3, H, W)`` of any size; they are resized to
    299 x 299 with :func:`resize_bilinear_tf1` and normalised to ``(x - 128) / 128``. It returns
    ``(features (B, 2048), logits_unbiased (B, 1008))``: the global-average-pooled ``Mixed_7c`` output (FID's
    features) and ``fc`` applied without its bias (the logits torch-fidelity's Inception Score uses).

    A new instance has random weights; use :func:`load_inception_weights` for the real ones. The network is put in
    eval mode and needs no gradients.

    Example:
        >>> net = InceptionV3FID()
        >>> feats, logits = net(torch.rand(1, 3, 64, 64) * 255)
        >>> tuple(feats.shape), tuple(logits.shape)
        ((1, 2048), (1, 1008))
    """

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = _ConvBN(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = _ConvBN(32, 32, 3)
        self.Conv2d_2b_3x3 = _ConvBN(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = _ConvBN(64, 80, 1)
        self.Conv2d_4a_3x3 = _ConvBN(80, 192, 3)
        self.Mixed_5b = _Block35(192, pool_features=32)
        self.Mixed_5c = _Block35(256, pool_features=64)
        self.Mixed_5d = _Block35(288, pool_features=64)
        self.Mixed_6a = _Reduce35(288)
        self.Mixed_6b = _Block17(768, c7=128)
        self.Mixed_6c = _Block17(768, c7=160)
        self.Mixed_6d = _Block17(768, c7=160)
        self.Mixed_6e = _Block17(768, c7=192)
        self.Mixed_7a = _Reduce17(768)
        self.Mixed_7b = _Block8(1280, max_pool=False)
        self.Mixed_7c = _Block8(2048, max_pool=True)
        self.fc = nn.Linear(NUM_FEATURES, NUM_CLASSES)
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected RGB images (B, 3, H, W) with values in [0, 255], got shape {tuple(x.shape)}")
        x = resize_bilinear_tf1(x.float(), (INPUT_SIZE, INPUT_SIZE))
        x = (x - 128.0) / 128.0
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)  # 73 x 73
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)  # 35 x 35
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)
        feats = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return feats, feats @ self.fc.weight.t()


# -------------------------------------------------------------------------------------------- weights
@functools.lru_cache(maxsize=1)
def _expected_shapes() -> dict[str, tuple[int, ...]]:
    """Key -> shape of every weight the file must hold (BatchNorm's ``num_batches_tracked`` is optional)."""
    with torch.device("meta"):
        net = InceptionV3FID()
    return {k: tuple(v.shape) for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}


def _unwrap(obj: Any) -> Any:
    """The state dict inside a ``{"state_dict": ...}`` / ``{"model": ...}`` checkpoint, or ``obj`` itself."""
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), Mapping):
                return obj[key]
    return obj


def _match(state: Mapping[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """``(weights without a wrapper prefix, "")`` when ``state`` holds the network's weights, else ``(None, why)``."""
    expected = _expected_shapes()
    anchor = "Mixed_7c.branch3x3dbl_3b.conv.weight"
    prefixes = sorted({k[: -len(anchor)] for k in state if isinstance(k, str) and k.endswith(anchor)}, key=len)
    if not prefixes:
        return None, f"not the FID Inception-v3 weights (no {anchor} key)"
    why = ""
    for p in prefixes:
        found = {k[len(p) :]: v for k, v in state.items() if isinstance(k, str) and k.startswith(p)}
        missing = [k for k in expected if k not in found]
        if missing:
            why = f"not the FID Inception-v3 weights ({len(missing)} keys missing, e.g. {missing[0]})"
            continue
        wrong = [k for k, s in expected.items() if not isinstance(found[k], torch.Tensor) or tuple(found[k].shape) != s]
        if wrong:
            k = wrong[0]
            got = tuple(found[k].shape) if isinstance(found[k], torch.Tensor) else type(found[k]).__name__
            why = f"not the FID Inception-v3 weights ({k} is {got}, expected {expected[k]})"
            if k == "fc.weight":
                why += "; an ImageNet Inception-v3 (1000 classes, e.g. torchvision's) is a different network"
            continue
        return found, ""
    return None, why


def is_inception_weights(state_or_path: Mapping[str, Any] | str | os.PathLike) -> bool:
    """Whether a state dict, checkpoint dict or file holds the FID Inception-v3 weights (every key of
    :class:`InceptionV3FID` with its shape, e.g. ``fc.weight`` of shape (1008, 2048), under an optional prefix).

    A file that cannot be read gives ``False`` (the caller's other loader then reports the problem).

    Example:
        >>> is_inception_weights(InceptionV3FID().state_dict())
        True
        >>> is_inception_weights({"fc.weight": torch.zeros(2, 512)})
        False
    """
    obj: Any = state_or_path
    if isinstance(state_or_path, (str, os.PathLike)):
        try:
            obj = load_checkpoint(state_or_path, map_location="cpu")
        except BadInputError:
            return False
    state = _unwrap(obj)
    return isinstance(state, Mapping) and _match(state)[0] is not None


def load_inception_weights(path: str | os.PathLike, map_location: Any = "cpu") -> InceptionV3FID:
    """:class:`InceptionV3FID` with the weights of torch-fidelity's ``weights-inception-2015-12-05-6726825d.pth``.

    The file is read with :func:`~monai_anomaly.utils.checkpoints.load_checkpoint` (plain tensors only). It may be a
    bare state dict (torch-fidelity's and pytorch-fid's files are) or ``{"state_dict": ...}`` / ``{"model": ...}``;
    a wrapper prefix such as ``module.`` or ``model.`` is stripped. Missing ``num_batches_tracked`` buffers are
    filled in; everything else must fit exactly (``strict=True``).

    Args:
        path: the weight file.
        map_location: where to load the weights and put the network.

    Returns:
        the network in eval mode.

    Raises:
        BadInputError: the file cannot be read or does not hold these weights (the message names the file).

    Example:
        >>> net = load_inception_weights("weights-inception-2015-12-05-6726825d.pth")  # doctest: +SKIP
    """
    ckpt = load_checkpoint(path, map_location=map_location)
    if not isinstance(ckpt, Mapping):
        raise BadInputError(path, f"not a weight file (holds a {type(ckpt).__name__}, not a dict of weights)")
    state = _unwrap(ckpt)
    found, why = _match(state)
    if found is None:
        raise BadInputError(path, f"{why}; give torch-fidelity's {INCEPTION_WEIGHTS_FILE}")
    net = InceptionV3FID()
    weights = net.state_dict()
    extra = sorted(set(found) - set(weights))
    if extra:
        raise BadInputError(path, f"not the FID Inception-v3 weights (unexpected key {extra[0]})")
    weights.update(found)
    try:
        net.load_state_dict(weights, strict=True)
    except RuntimeError as e:
        raise BadInputError(path, f"weights do not fit the FID Inception-v3: {str(e).splitlines()[0][:200]}") from None
    net.to(map_location if isinstance(map_location, (str, torch.device)) else "cpu").eval()
    logger.info("feature network: FID Inception-v3 (2048 features, 1008 classes) from %s", path)
    return net


# -------------------------------------------------------------------------------------------- extractor
class InceptionFeatures:
    """FID features and IS class probabilities of the project's images, with the call contract of
    :class:`~monai_anomaly.metrics.quality.ClassifierFeatures`.

    Images ``(B, 1, H, W)`` or ``(B, 3, H, W)`` with intensities in ``intensity_range`` are mapped to [0, 255],
    clamped, rounded to integers (as 8-bit image files are, unless ``quantize=False``) and gray is repeated to RGB;
    :class:`InceptionV3FID` then resizes them to 299 x 299.

    Args:
        model: the network (from :func:`load_inception_weights`) or the path of the weight file.
        intensity_range: ``(lo, hi)``: the intensities that become 0 and 255.
        quantize: round to integers as torch-fidelity's 8-bit input is.

    Returns (when called):
        ``(features (B, 2048), probabilities (B, 1008))`` on the CPU in float32; the probabilities are the softmax of
        the unbiased logits, as in torch-fidelity's Inception Score.

    Example:
        >>> extract = InceptionFeatures(InceptionV3FID(), intensity_range=(0.0, 1.0))
        >>> feats, probs = extract(torch.rand(2, 1, 64, 64))
        >>> tuple(feats.shape), tuple(probs.shape)
        ((2, 2048), (2, 1008))
    """

    def __init__(
        self,
        model: InceptionV3FID | str | os.PathLike,
        intensity_range: tuple[float, float] = (0.0, 1.0),
        quantize: bool = True,
    ) -> None:
        self.model = load_inception_weights(model) if isinstance(model, (str, os.PathLike)) else model
        lo, hi = (float(v) for v in intensity_range)
        if not hi > lo:
            raise ValueError(f"intensity_range must be (lo, hi) with hi > lo, got {intensity_range}")
        self.intensity_range = (lo, hi)
        self.quantize = bool(quantize)
        self.model.eval()

    @property
    def device(self) -> torch.device:
        p = next(self.model.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    def to_rgb255(self, images: torch.Tensor) -> torch.Tensor:
        """The images as float RGB in [0, 255] (on their own device)."""
        x = images.as_tensor() if hasattr(images, "as_tensor") else images
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"expected 2D images (B, 1 or 3, H, W), got shape {tuple(x.shape)}")
        lo, hi = self.intensity_range
        x = ((x.float() - lo) * (255.0 / (hi - lo))).clamp(0.0, 255.0)
        if self.quantize:
            x = x.round()
        return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(features (B, 2048), probabilities (B, 1008))`` of a batch, on the CPU in float32."""
        x = self.to_rgb255(images.to(self.device) if isinstance(images, torch.Tensor) else images)
        feats, logits = self.model(x)
        probs = torch.softmax(logits.double(), dim=1).float()
        return feats.float().cpu(), probs.cpu()
