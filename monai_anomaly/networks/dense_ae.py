"""Autoencoder with a small dense latent vector between a strided-convolution encoder and a mirrored decoder.

This is the plain autoencoder of the anomaly-detection benchmarks (AE4AD / MedIAnomaly, Cai et al., MICCAI 2024):
four 4x4 stride-2 convolutions with batch norm and ReLU, a two-layer MLP to a ``latent_size`` vector (16 by
default) and back, and a mirrored decoder. The tight vector bottleneck is what makes it an anomaly detector: it
cannot copy an unseen structure (a lesion) through, while a convolutional bottleneck with thousands of values can.

The decoder can up-sample with transposed convolutions (``up_mode="deconv"``, as published) or with
nearest-neighbour resize followed by a 3x3 convolution (``up_mode="resize"``, the default), which has no
checkerboard artefacts: 4x4 stride-2 transposed convolutions leave a periodic dot grid in the reconstruction, and so
in every anomaly map.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn as nn
from monai.networks.blocks import Convolution, UpSample
from monai.networks.layers.factories import Act, Norm

__all__ = ["UP_MODES", "DenseAutoEncoder"]

UP_MODES = ("resize", "deconv")


class DenseAutoEncoder(nn.Module):
    """Convolutional autoencoder with a dense (vector) latent, 2D or 3D.

    Args:
        spatial_dims: 2 for slices, 3 for volumes.
        in_channels: input channels.
        out_channels: output channels (normally ``in_channels``).
        in_shape: spatial input shape, e.g. ``(64, 64)``; each side must be divisible by ``2 ** len(channels)``.
        channels: encoder widths, one stride-2 block each (the decoder mirrors them).
        latent_size: length of the latent vector.
        hidden_size: width of the MLP layer between the flattened features and the latent vector (0: a single linear
            layer each way).
        up_mode: ``"resize"`` (nearest up-sampling + 3x3 convolution, no checkerboard) or ``"deconv"`` (4x4 stride-2
            transposed convolution, as published).
        norm: normalisation of the hidden layers (MONAI factory name), batch norm as published.
        act: activation of the hidden layers.
        final_act: ``None`` (linear output, any intensity range), ``"sigmoid"`` or ``"tanh"``.

    Raises:
        ValueError: bad ``spatial_dims``, ``up_mode`` or ``final_act``; an ``in_shape`` of the wrong length or not
            divisible by ``2 ** len(channels)``; non-positive sizes.

    Example:
        >>> import torch
        >>> net = DenseAutoEncoder(2, 1, 1, in_shape=(32, 32), channels=(4, 8), latent_size=8, hidden_size=32)
        >>> net(torch.rand(3, 1, 32, 32)).shape
        torch.Size([3, 1, 32, 32])
        >>> net.encode_forward(torch.rand(3, 1, 32, 32)).shape
        torch.Size([3, 8])
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        in_shape: Sequence[int],
        channels: Sequence[int] = (16, 32, 64, 64),
        latent_size: int = 16,
        hidden_size: int = 2048,
        up_mode: str = "resize",
        norm: tuple | str = Norm.BATCH,
        act: tuple | str = Act.RELU,
        final_act: str | None = None,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        if up_mode not in UP_MODES:
            raise ValueError(f"up_mode must be one of {UP_MODES}, got {up_mode!r}")
        if final_act not in (None, "none", "sigmoid", "tanh"):
            raise ValueError(f"final_act must be None, 'sigmoid' or 'tanh', got {final_act!r}")
        if in_shape is None or len(in_shape) != spatial_dims:
            raise ValueError(f"in_shape needs {spatial_dims} values (no channel dimension), got {in_shape!r}")
        if len(channels) == 0 or any(int(c) < 1 for c in channels):
            raise ValueError(f"channels must be a non-empty list of positive widths, got {channels!r}")
        if int(latent_size) < 1 or int(hidden_size) < 0 or in_channels < 1 or out_channels < 1:
            raise ValueError("latent_size, in_channels and out_channels must be >= 1 and hidden_size >= 0")
        factor = 2 ** len(channels)
        shape = tuple(int(s) for s in in_shape)
        if any(s % factor or s < factor for s in shape):
            raise ValueError(
                f"in_shape {shape} must be divisible by 2 ** len(channels) = {factor} (one stride-2 block per "
                "entry of channels), so that the reconstruction has the input's size"
            )
        self.spatial_dims = spatial_dims
        self.in_shape = shape
        self.latent_size = int(latent_size)
        self.up_mode = up_mode
        self.final_shape = tuple(s // factor for s in shape)
        chans = [int(c) for c in channels]

        enc: list[nn.Module] = []
        c_in = in_channels
        for c in chans:
            enc.append(
                Convolution(spatial_dims, c_in, c, strides=2, kernel_size=4, padding=1, act=act, norm=norm, bias=False)
            )
            c_in = c
        self.encoder = nn.Sequential(*enc)

        flat = chans[-1] * int(np.prod(self.final_shape))
        bn1d = nn.BatchNorm1d if _is_batch(norm) else nn.Identity
        if hidden_size:
            h = int(hidden_size)
            self.to_latent = nn.Sequential(nn.Linear(flat, h), bn1d(h), nn.ReLU(True), nn.Linear(h, self.latent_size))
            self.from_latent = nn.Sequential(nn.Linear(self.latent_size, h), bn1d(h), nn.ReLU(True), nn.Linear(h, flat))
        else:
            self.to_latent = nn.Linear(flat, self.latent_size)
            self.from_latent = nn.Linear(self.latent_size, flat)

        dec: list[nn.Module] = []
        widths = chans[::-1] + [chans[0]]
        for i in range(len(chans)):
            c_in, c_out = widths[i], widths[i + 1]
            last = i == len(chans) - 1
            if up_mode == "deconv":
                dec.append(
                    Convolution(
                        spatial_dims,
                        c_in,
                        out_channels if last else c_out,
                        strides=2,
                        kernel_size=4,
                        padding=1,
                        output_padding=0,
                        is_transposed=True,
                        act=None if last else act,
                        norm=None if last else norm,
                        bias=last,
                        conv_only=last,
                    )
                )
            else:
                dec.append(
                    nn.Sequential(
                        UpSample(
                            spatial_dims, scale_factor=2, mode="nontrainable", interp_mode="nearest", align_corners=None
                        ),
                        Convolution(spatial_dims, c_in, c_out, kernel_size=3, act=act, norm=norm, bias=False),
                    )
                )
        self.decoder = nn.Sequential(*dec)
        # resize mode: a 3x3 convolution to the output channels, no norm and no activation (intensities must match)
        self.head = (
            Convolution(spatial_dims, chans[0], out_channels, kernel_size=3, conv_only=True, bias=True)
            if up_mode == "resize"
            else nn.Identity()
        )
        self.final_act_name = None if final_act == "none" else final_act
        self.final_activation = {None: nn.Identity(), "sigmoid": nn.Sigmoid(), "tanh": nn.Tanh()}[self.final_act_name]
        self._channels = chans

    def encode_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The latent vector ``(B, latent_size)``."""
        if tuple(x.shape[2:]) != self.in_shape:
            raise ValueError(
                f"DenseAutoEncoder was built for inputs of spatial shape {self.in_shape}, got {tuple(x.shape[2:])}: "
                "resize the input (the bundles' preprocessing does) or build the network with that in_shape"
            )
        return self.to_latent(self.encoder(x).flatten(1))

    def decode_forward(self, z: torch.Tensor) -> torch.Tensor:
        """The reconstruction from a latent vector."""
        h = self.from_latent(z).view(z.shape[0], self._channels[-1], *self.final_shape)
        return self.final_activation(self.head(self.decoder(h)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruct ``x``."""
        return self.decode_forward(self.encode_forward(x))


def _is_batch(norm: tuple | str | None) -> bool:
    name = norm[0] if isinstance(norm, (tuple, list)) and norm else norm
    return isinstance(name, str) and name.lower() == "batch"
