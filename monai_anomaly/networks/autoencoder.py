"""Convolutional autoencoder and variational autoencoder for reconstruction-based anomaly detection.

Both wrap MONAI's :class:`~monai.networks.nets.AutoEncoder` / :class:`~monai.networks.nets.VarAutoEncoder` (same
encoder / decoder blocks) and add what anomaly detection needs: a choice of latent (the convolutional bottleneck or
a dense ``latent_size`` vector), a final activation matched to the intensity range of the inputs, and argument checks
that fail in ``__init__`` instead of deep inside a training run.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from monai.networks.layers.convutils import calculate_out_shape, same_padding
from monai.networks.layers.factories import Act, Norm
from monai.networks.nets import AutoEncoder, VarAutoEncoder

__all__ = ["FINAL_ACTIVATIONS", "LATENT_TYPES", "ConvAutoEncoder", "ConvVAE"]

LATENT_TYPES = ("spatial", "dense")
FINAL_ACTIVATIONS = ("sigmoid", "tanh", None)


def _final_activation(final_act: str | None) -> nn.Module:
    if final_act is None or str(final_act).lower() == "none":
        return nn.Identity()
    name = str(final_act).lower()
    if name == "sigmoid":
        return nn.Sigmoid()
    if name == "tanh":
        return nn.Tanh()
    raise ValueError(f"final_act must be one of {FINAL_ACTIVATIONS}, got {final_act!r}")


def _is_instance_norm(norm: tuple | str | None) -> bool:
    name = norm[0] if isinstance(norm, (tuple, list)) and norm else norm
    return isinstance(name, str) and name.lower().startswith("instance")


def _check_common(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    channels: Sequence[int],
    strides: Sequence[int],
    in_shape: Sequence[int] | None,
    kernel_size: Sequence[int] | int,
    norm: tuple | str | None,
) -> np.ndarray | None:
    """Validate the arguments shared by both networks; returns the bottleneck spatial size when ``in_shape`` given."""
    if spatial_dims not in (1, 2, 3):
        raise ValueError(f"spatial_dims must be 1, 2 or 3, got {spatial_dims}")
    if in_channels < 1 or out_channels < 1:
        raise ValueError(f"in_channels and out_channels must be >= 1, got {in_channels} and {out_channels}")
    if len(channels) == 0:
        raise ValueError("channels must have at least one entry")
    if len(channels) != len(strides):
        raise ValueError(
            f"channels and strides must have the same length, got {len(channels)} channels {tuple(channels)} "
            f"and {len(strides)} strides {tuple(strides)}"
        )
    if any(int(c) < 1 for c in channels):
        raise ValueError(f"channels must be positive, got {tuple(channels)}")
    if any(int(s) < 1 for s in strides):
        raise ValueError(f"strides must be positive integers, got {tuple(strides)}")
    if in_shape is None:
        return None
    shape = [int(s) for s in in_shape]
    if len(shape) != spatial_dims:
        raise ValueError(
            f"in_shape is the spatial shape and needs {spatial_dims} values for spatial_dims={spatial_dims}, "
            f"got {tuple(in_shape)} (leave out the channel dimension)"
        )
    factor = int(np.prod([int(s) for s in strides]))
    if any(s % factor for s in shape):
        raise ValueError(
            f"in_shape {tuple(shape)} must be divisible by the product of the strides ({factor}) so that the "
            "reconstruction has the input's size"
        )
    final = np.asarray(shape, dtype=int)
    padding = same_padding(kernel_size)
    for s in strides:
        final = calculate_out_shape(final, kernel_size, s, padding)
    final = np.atleast_1d(np.asarray(final, dtype=int))
    if _is_instance_norm(norm) and int(np.prod(final)) == 1:
        raise ValueError(
            f"in_shape {tuple(shape)} with strides {tuple(strides)} gives a 1-pixel bottleneck, which instance "
            "normalisation cannot handle: use fewer or smaller strides, a larger input, or norm='batch'"
        )
    return final


class _OutputHeadMixin:
    """Give the decoder a plain convolution as its last layer.

    MONAI's ``AutoEncoder`` with residual units ends with a transposed convolution to ``out_channels`` followed by
    instance norm and an activation on that single channel, which removes each image's mean and contrast before the
    output: the reconstruction then cannot match the image's intensities (its L1 error stays high). Here the last
    up-sampling layer keeps its input width and a 1x1 convolution (no norm, no activation) maps it to
    ``out_channels``.
    """

    def _get_decode_layer(self, in_channels: int, out_channels: int, strides: int, is_last: bool) -> nn.Module:
        if not is_last or self.num_res_units == 0:  # with no residual units MONAI's last layer is conv-only already
            return super()._get_decode_layer(in_channels, out_channels, strides, is_last)
        body = super()._get_decode_layer(in_channels, in_channels, strides, False)
        head = Convolution(self.dimensions, in_channels, out_channels, kernel_size=1, conv_only=True)
        return nn.Sequential(body, head)


class ConvAutoEncoder(_OutputHeadMixin, AutoEncoder):
    """Convolutional autoencoder with a spatial (convolutional) or dense (linear ``latent_size``) bottleneck.

    The encoder and decoder are MONAI's :class:`~monai.networks.nets.AutoEncoder` blocks (strided convolutions with
    ``num_res_units`` residual units each, transposed convolutions back up). With ``latent="spatial"`` the
    bottleneck is the last encoder feature map (``channels[-1]`` maps of ``in_shape / prod(strides)`` pixels). With
    ``latent="dense"`` that feature map is flattened, projected to a ``latent_size`` vector and back by two linear
    layers (a tighter bottleneck, as in the classic brain-CT autoencoder), which needs ``in_shape``.

    Args:
        spatial_dims: number of spatial dimensions (2 for slices).
        in_channels: input channels (1 for grey images).
        out_channels: output channels (normally ``in_channels``).
        channels: encoder channels, top block first.
        strides: encoder strides, one per entry of ``channels``.
        latent: ``"spatial"`` or ``"dense"``.
        latent_size: length of the dense latent vector (``latent="dense"`` only).
        in_shape: spatial input shape, e.g. ``(64, 64)``; required for ``latent="dense"``, checked (divisibility by
            the product of strides) when given.
        num_res_units: residual units per block (0: plain convolutions).
        act: activation type and arguments (MONAI factory name).
        norm: normalisation type and arguments.
        dropout: dropout ratio.
        final_act: ``"sigmoid"`` (inputs in ``[0, 1]``), ``"tanh"`` (inputs in ``[-1, 1]``) or ``None`` (any range,
            e.g. z-scored).
        kernel_size: convolution kernel size.
        up_kernel_size: transposed-convolution kernel size.
        bias: use biases in the convolutions.

    Raises:
        ValueError: unknown ``latent`` / ``final_act``, ``channels`` and ``strides`` of different lengths,
            ``latent="dense"`` without ``in_shape``, an ``in_shape`` not divisible by the product of strides, a
            1-pixel bottleneck with instance normalisation.

    Example:
        >>> import torch
        >>> net = ConvAutoEncoder(2, 1, 1, channels=(4, 8, 16), strides=(2, 2, 2), latent="dense", latent_size=32,
        ...                       in_shape=(32, 32))
        >>> net(torch.rand(2, 1, 32, 32)).shape
        torch.Size([2, 1, 32, 32])
        >>> net.encode_forward(torch.rand(2, 1, 32, 32)).shape
        torch.Size([2, 32])
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        channels: Sequence[int] = (16, 32, 64, 128),
        strides: Sequence[int] = (2, 2, 2, 2),
        latent: str = "spatial",
        latent_size: int = 128,
        in_shape: Sequence[int] | None = None,
        num_res_units: int = 1,
        act: tuple | str | None = Act.PRELU,
        norm: tuple | str = Norm.INSTANCE,
        dropout: tuple | str | float | None = None,
        final_act: str | None = "sigmoid",
        kernel_size: Sequence[int] | int = 3,
        up_kernel_size: Sequence[int] | int = 3,
        bias: bool = True,
    ) -> None:
        if latent not in LATENT_TYPES:
            raise ValueError(f"latent must be one of {LATENT_TYPES}, got {latent!r}")
        if latent == "dense" and in_shape is None:
            raise ValueError("latent='dense' needs in_shape (the spatial input shape, e.g. (64, 64))")
        if latent == "dense" and int(latent_size) < 1:
            raise ValueError(f"latent_size must be >= 1, got {latent_size}")
        final_module = _final_activation(final_act)
        final_size = _check_common(
            spatial_dims, in_channels, out_channels, channels, strides, in_shape, kernel_size, norm
        )
        super().__init__(
            spatial_dims,
            in_channels,
            out_channels,
            channels,
            strides,
            kernel_size=kernel_size,
            up_kernel_size=up_kernel_size,
            num_res_units=num_res_units,
            act=act,
            norm=norm,
            dropout=dropout,
            bias=bias,
        )
        self.latent = latent
        self.latent_size = int(latent_size)
        self.in_shape = None if in_shape is None else tuple(int(s) for s in in_shape)
        self.final_act_name = final_act
        self.final_size = None if final_size is None else tuple(int(s) for s in final_size)
        self.final_activation = final_module
        if latent == "dense":
            linear_size = int(np.prod(self.final_size)) * self.encoded_channels
            self.to_latent = nn.Linear(linear_size, self.latent_size)
            self.from_latent = nn.Linear(self.latent_size, linear_size)

    def encode_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The latent code: ``(B, channels[-1], *bottleneck)`` (spatial) or ``(B, latent_size)`` (dense)."""
        z = self.intermediate(self.encode(x))
        if self.latent == "dense":
            z = self.to_latent(z.flatten(1))
        return z

    def decode_forward(self, z: torch.Tensor) -> torch.Tensor:
        """The reconstruction from a latent code of :meth:`encode_forward`, after the final activation."""
        if self.latent == "dense":
            z = F.relu(self.from_latent(z))
            z = z.view(z.shape[0], self.encoded_channels, *self.final_size)
        return self.final_activation(self.decode(z))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruct ``x`` (same shape as ``x`` when ``out_channels == in_channels``)."""
        return self.decode_forward(self.encode_forward(x))


class ConvVAE(_OutputHeadMixin, VarAutoEncoder):
    """Variational autoencoder on MONAI's :class:`~monai.networks.nets.VarAutoEncoder`.

    ``forward`` returns ``(reconstruction, mu, logvar, z)`` like MONAI's. In training mode ``z`` is sampled with the
    reparameterisation trick; in eval mode ``z = mu``, so the reconstruction (and hence the anomaly map) is
    deterministic (MONAI's own default in eval mode is ``mu + std``, which is deterministic but not the posterior
    mean; here ``use_mean_at_inference`` is always on).

    Args:
        spatial_dims: number of spatial dimensions (2 for slices).
        in_channels: input channels.
        out_channels: output channels (normally ``in_channels``).
        in_shape: spatial input shape, e.g. ``(64, 64)`` (no channel dimension).
        channels: encoder channels, top block first.
        strides: encoder strides, one per entry of ``channels``.
        latent_size: length of the latent vector.
        num_res_units: residual units per block.
        act: activation type and arguments.
        norm: normalisation type and arguments.
        dropout: dropout ratio.
        final_act: ``"sigmoid"``, ``"tanh"`` or ``None``.
        kernel_size: convolution kernel size.
        up_kernel_size: transposed-convolution kernel size.
        bias: use biases in the convolutions.

    Raises:
        ValueError: as :class:`ConvAutoEncoder` (lengths, divisibility, final activation), ``latent_size < 1``.

    Example:
        >>> import torch
        >>> vae = ConvVAE(2, 1, 1, in_shape=(32, 32), channels=(4, 8), strides=(2, 2), latent_size=16).eval()
        >>> recon, mu, logvar, z = vae(torch.rand(3, 1, 32, 32))
        >>> recon.shape, mu.shape, bool((z == mu).all())
        (torch.Size([3, 1, 32, 32]), torch.Size([3, 16]), True)
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        in_shape: Sequence[int],
        channels: Sequence[int] = (16, 32, 64, 128),
        strides: Sequence[int] = (2, 2, 2, 2),
        latent_size: int = 128,
        num_res_units: int = 1,
        act: tuple | str | None = Act.PRELU,
        norm: tuple | str = Norm.INSTANCE,
        dropout: tuple | str | float | None = None,
        final_act: str | None = "sigmoid",
        kernel_size: Sequence[int] | int = 3,
        up_kernel_size: Sequence[int] | int = 3,
        bias: bool = True,
    ) -> None:
        if in_shape is None:
            raise ValueError("ConvVAE needs in_shape (the spatial input shape, e.g. (64, 64))")
        if int(latent_size) < 1:
            raise ValueError(f"latent_size must be >= 1, got {latent_size}")
        final_module = _final_activation(final_act)
        _check_common(spatial_dims, in_channels, out_channels, channels, strides, in_shape, kernel_size, norm)
        super().__init__(
            spatial_dims,
            (int(in_channels), *(int(s) for s in in_shape)),
            out_channels,
            int(latent_size),
            channels,
            strides,
            kernel_size=kernel_size,
            up_kernel_size=up_kernel_size,
            num_res_units=num_res_units,
            act=act,
            norm=norm,
            dropout=dropout,
            bias=bias,
            use_sigmoid=False,
            use_mean_at_inference=True,
        )
        self.final_act_name = final_act
        self.final_activation = final_module

    def decode_forward(self, z: torch.Tensor, use_sigmoid: bool = False) -> torch.Tensor:
        """The reconstruction from a latent vector, after the configured final activation."""
        return self.final_activation(super().decode_forward(z, False))
