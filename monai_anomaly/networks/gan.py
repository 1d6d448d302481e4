"""Networks of the healthy-translation GAN (Brainomaly, WACV 2024; MedAI AnomalyPro): a generator that adds a map to
its input and a WGAN-GP critic, built from MONAI networks.

The generator is MONAI's :class:`~monai.networks.nets.BasicUNet` predicting an additive map ``m``; the healthy image is
``tanh(x + m)`` for inputs scaled to ``[-1, 1]``: the network learns a change to its input rather than a whole image
(a zero map gives ``tanh(x)``, close to the input except near the ends of the range). The AnomalyPro variant adds a
second output channel, a mask ``a`` in ``[0, 1]`` that blends the generated content with the input:
``healthy = a * tanh(x + m) + (1 - a) * x``. The anomaly map is
``|x - healthy|``. The critic is MONAI's :class:`~monai.networks.nets.Critic` without normalisation or dropout (the
gradient penalty of WGAN-GP is defined per sample, which batch statistics would break).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.nets import BasicUNet, Critic

__all__ = ["HealthyTranslationGenerator", "HealthyReconstruction", "wgan_critic"]


class HealthyTranslationGenerator(torch.nn.Module):
    """``x -> healthy`` by an additive map: ``healthy = tanh(x + m)`` (and, with ``mask=True``, blended with the
    input by a predicted mask).

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels (1 for grey MRI / CT / X-ray).
        features: the six feature sizes of :class:`~monai.networks.nets.BasicUNet`.
        mask: also predict a blending mask (the AnomalyPro variant).
        upsample: ``BasicUNet`` upsampling; ``"nontrainable"`` (interpolation + convolution) avoids checkerboard
            artefacts in the maps, ``"deconv"`` is the transposed convolution.

    Example:
        >>> g = HealthyTranslationGenerator(2, features=(8, 8, 16, 32, 64, 8))
        >>> out = g(torch.zeros(1, 1, 32, 32))
        >>> sorted(out), out["healthy"].shape
        (['healthy', 'map'], torch.Size([1, 1, 32, 32]))
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        features: Sequence[int] = (32, 32, 64, 128, 256, 32),
        mask: bool = False,
        upsample: str = "nontrainable",
    ) -> None:
        super().__init__()
        self.mask = bool(mask)
        self.in_channels = int(in_channels)
        out = in_channels + (1 if mask else 0)
        self.unet = BasicUNet(spatial_dims, in_channels, out, features=tuple(features), upsample=upsample)
        last = self.unet.final_conv
        torch.nn.init.zeros_(last.weight)  # start from m = 0: healthy = tanh(x), near the input; mask 0.5
        if last.bias is not None:
            torch.nn.init.zeros_(last.bias)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"healthy", "map"}`` (and ``"mask"`` with ``mask=True``) for an input in ``[-1, 1]``."""
        y = self.unet(x)
        m = y[:, : self.in_channels]
        healthy = torch.tanh(x + m)
        out = {"map": m}
        if self.mask:
            a = torch.sigmoid(y[:, self.in_channels :])
            healthy = a * healthy + (1.0 - a) * x
            out["mask"] = a
        out["healthy"] = healthy
        return out


class HealthyReconstruction(torch.nn.Module):
    """The generator as a reconstruction network: ``forward(x)`` is the healthy translation of ``x``, so the
    evaluator, inference and the MONAI Label app compute the anomaly map from (image, healthy) as for an autoencoder.

    Example:
        >>> net = HealthyReconstruction(HealthyTranslationGenerator(2, features=(8, 8, 16, 32, 64, 8)))
        >>> net(torch.zeros(1, 1, 32, 32)).shape
        torch.Size([1, 1, 32, 32])
    """

    def __init__(self, generator: HealthyTranslationGenerator) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.generator(x)["healthy"]


def wgan_critic(
    in_shape: Sequence[int], channels: Sequence[int] = (32, 64, 128, 256, 512), kernel_size: int = 3
) -> Critic:
    """A WGAN-GP critic: MONAI's :class:`~monai.networks.nets.Critic` with stride-2 convolutions, LeakyReLU, and no
    normalisation or dropout. ``in_shape`` is ``(channels, H, W[, D])``; the output is ``(B, 1)``.

    Example:
        >>> wgan_critic((1, 32, 32), channels=(8, 16))(torch.zeros(3, 1, 32, 32)).shape
        torch.Size([3, 1])
    """
    return Critic(
        in_shape=tuple(in_shape),
        channels=tuple(channels),
        strides=(2,) * len(channels),
        kernel_size=kernel_size,
        num_res_units=0,
        act=("LeakyReLU", {"negative_slope": 0.2}),
        norm=None,
        dropout=None,
    )
