"""Perceptual loss from a network the user gives: nothing is downloaded.

MONAI's ``PerceptualLoss`` fetches ImageNet / RadImageNet / MedicalNet weights from the internet, which this project
never does. :class:`FilePerceptualLoss` takes the weights from a file the user names instead: a 1-channel 2D MONAI
``resnet18`` classifier, e.g. the ``supervised_resnet18`` bundle's ``models/model.pt`` trained on the user's own
images, read with ``weights_only=True``
(:func:`~monai_anomaly.metrics.quality.load_feature_network`). The distance is the L1 between channel-normalised
feature maps of the chosen residual stages (as LPIPS normalises its features), averaged over the stages.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from monai_anomaly.metrics.quality import load_feature_network
from monai_anomaly.utils.errors import BadInputError

__all__ = ["FilePerceptualLoss", "PerceptualMap"]

_STAGES = ("layer1", "layer2", "layer3", "layer4")


def _frozen_resnet(
    weights: str | None, layers: Sequence[str], input_range: Sequence[float]
) -> tuple[nn.Module, float, float]:
    """The 1-channel MONAI ``resnet18`` of ``weights`` (the architecture alone for ``None``), frozen, and the linear
    map ``x * scale + shift`` from ``input_range`` onto the range it was trained on (its checkpoint's
    ``intensity_range``; ``(0, 1)`` when absent). Checks the layer names and the range first."""
    from monai.networks.nets import resnet18

    bad = [name for name in layers if name not in _STAGES]
    if bad or not layers:
        raise BadInputError(str(weights), f"perceptual layers must be among {list(_STAGES)}, got {list(layers)}")
    lo, hi = (float(v) for v in input_range)
    if hi <= lo:
        raise BadInputError(str(weights), f"input_range must increase, got {list(input_range)}")
    if weights:
        net, settings = load_feature_network(weights, return_settings=True)
    else:
        net, settings = resnet18(spatial_dims=2, n_input_channels=1, num_classes=2), {}
    for p in net.parameters():
        p.requires_grad_(False)
    tlo, thi = (float(v) for v in (settings.get("intensity_range") or (0.0, 1.0)))
    scale = (thi - tlo) / (hi - lo)
    return net.eval(), scale, tlo - lo * scale


class FilePerceptualLoss(nn.Module):
    """``forward(x, y)``: feature-space distance of two image batches through a frozen classifier read from a file.

    Args:
        weights: checkpoint of a 1-channel 2D MONAI ``resnet18`` (``{"model": state_dict}`` or a state dict).
        layers: the residual stages compared (``layer1`` .. ``layer4``).
        input_range: the intensity range of the images given to :meth:`forward`; they are mapped linearly onto the
            classifier's own ``intensity_range`` (read from its checkpoint's settings; ``(0, 1)`` when absent).

    Raises:
        BadInputError: the file is missing or not such a network, or a layer name is unknown.

    Example:
        >>> loss = FilePerceptualLoss("runs/supervised_resnet18/models/model.pt", input_range=(-1, 1))  # doctest: +SKIP
        >>> loss(reconstruction, image).backward()  # doctest: +SKIP
    """

    def __init__(
        self,
        weights: str,
        layers: Sequence[str] = ("layer1", "layer2", "layer3"),
        input_range: Sequence[float] = (0.0, 1.0),
    ) -> None:
        super().__init__()
        self.net, self.scale, self.shift = _frozen_resnet(weights, layers, input_range)
        self.layers = tuple(layers)

    def train(self, mode: bool = True) -> FilePerceptualLoss:
        super().train(mode)
        self.net.eval()  # frozen: BatchNorm keeps the statistics it was trained with
        return self

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The chosen stages' feature maps, each normalised to unit length along its channels."""
        n = self.net
        h = n.act(n.bn1(n.conv1(x * self.scale + self.shift)))
        if not n.no_max_pool:
            h = n.maxpool(h)
        out = []
        for name in _STAGES[: max(_STAGES.index(s) for s in self.layers) + 1]:
            h = getattr(n, name)(h)
            if name in self.layers:
                out.append(h / h.norm(dim=1, keepdim=True).clamp_min(1e-6))
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"the perceptual loss takes 1-channel 2D batches (B, 1, H, W), got {tuple(x.shape)}")
        fx, fy = self.features(x), self.features(y)
        return torch.stack([(a - b).abs().sum(1).mean() for a, b in zip(fx, fy)]).mean()


class PerceptualMap(nn.Module):
    """``forward(x, y)``: a per-pixel perceptual distance map ``(B, 1, H, W)`` of two image batches, through the
    residual stages of a frozen 1-channel 2D MONAI ``resnet18`` (the map method ``"perceptual"``).

    Each chosen stage's feature maps are normalised to unit length along their channels (as LPIPS does), their L1
    difference is summed over the channels, resized (bilinear) to the image's size, and the stages are averaged: the
    spatial form of :class:`FilePerceptualLoss`'s distance, as the OCT CycleGAN's perceptual score compares an image
    with its translation in a network's feature space instead of pixel by pixel.

    The weights come from a file the user names at training (``weights``: a checkpoint
    :func:`~monai_anomaly.metrics.quality.load_feature_network` reads, never a download). The stages are submodules
    and the intensity mapping is kept in buffers, so they are saved in the anomaly model's ``model.pt``: inference,
    MONAI Label and an exported model rebuild the architecture with ``weights=None`` and load them from there.

    Args:
        weights: the classifier checkpoint, or ``None`` for the architecture alone (weights loaded afterwards).
        layers: the residual stages compared (``layer1`` .. ``layer4``).
        input_range: the intensity range of the images given to :meth:`forward`, mapped linearly onto the
            classifier's own ``intensity_range`` (from its checkpoint's settings; ``(0, 1)`` when absent).

    Example:
        >>> m = PerceptualMap(None, input_range=(-1, 1))
        >>> x = torch.rand(2, 1, 32, 32)
        >>> tuple(m(x, x).shape), float(m(x, x).abs().max())
        ((2, 1, 32, 32), 0.0)
    """

    def __init__(
        self,
        weights: str | None = None,
        layers: Sequence[str] = ("layer1", "layer2", "layer3"),
        input_range: Sequence[float] = (0.0, 1.0),
    ) -> None:
        super().__init__()
        net, scale, shift = _frozen_resnet(weights, layers, input_range)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.act, nn.Identity() if net.no_max_pool else net.maxpool)
        deepest = max(_STAGES.index(s) for s in layers)
        self.stages = nn.ModuleDict({name: getattr(net, name) for name in _STAGES[: deepest + 1]})
        self.layers = tuple(layers)
        self.register_buffer("scale", torch.tensor(scale))
        self.register_buffer("shift", torch.tensor(shift))
        self.eval()

    def train(self, mode: bool = True) -> PerceptualMap:
        super().train(False)  # frozen: BatchNorm keeps the statistics it was trained with
        return self

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"the perceptual map takes 1-channel 2D batches (B, 1, H, W), got {tuple(x.shape)}")
        hx, hy = self.stem(x * self.scale + self.shift), self.stem(y * self.scale + self.shift)
        maps = []
        for name, stage in self.stages.items():
            hx, hy = stage(hx), stage(hy)
            if name in self.layers:
                fx = hx / hx.norm(dim=1, keepdim=True).clamp_min(1e-6)
                fy = hy / hy.norm(dim=1, keepdim=True).clamp_min(1e-6)
                d = (fx - fy).abs().sum(1, keepdim=True)
                maps.append(torch.nn.functional.interpolate(d, size=x.shape[2:], mode="bilinear", align_corners=False))
        return torch.stack(maps).mean(0)
