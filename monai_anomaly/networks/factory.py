"""Build a method's reconstruction network from a bundle's settings (one place for train.json and inference.json)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["MODEL_TYPES", "reconstruction_network"]

MODEL_TYPES = ("dense", "spatial", "vae", "unet", "healthy_gan", "cyclegan")


def reconstruction_network(
    model_type: str = "dense",
    image_size: int = 64,
    channels: Sequence[int] = (16, 32, 64, 64),
    strides: Sequence[int] = (2, 2, 2, 2),
    latent: str = "dense",
    latent_size: int = 16,
    hidden_size: int = 2048,
    up_mode: str = "resize",
    num_res_units: int = 0,
    gan_mask: bool = False,
    res_blocks: int = 9,
    spatial_dims: int = 2,
) -> torch.nn.Module:
    """The network whose ``forward(x)`` is the healthy reconstruction of ``x``.

    ``model_type``: ``"dense"`` (:class:`~monai_anomaly.networks.dense_ae.DenseAutoEncoder`), ``"spatial"``
    (:class:`~monai_anomaly.networks.autoencoder.ConvAutoEncoder`; ``latent`` picks its bottleneck), ``"vae"``
    (:class:`~monai_anomaly.networks.autoencoder.ConvVAE`), ``"unet"`` (MONAI ``BasicUNet``, the denoising AE; six
    ``channels``) or ``"healthy_gan"`` (:class:`~monai_anomaly.networks.gan.HealthyReconstruction` of a
    :class:`~monai_anomaly.networks.gan.HealthyTranslationGenerator`; six ``channels``, ``gan_mask`` for the
    AnomalyPro mask) or ``"cyclegan"`` (the CycleGAN generator to normal,
    :class:`~monai_anomaly.networks.cyclegan.ResNetGenerator`: stem width ``channels[0]``, ``len(channels) - 1``
    downsamplings, ``res_blocks`` residual blocks).

    Example:
        >>> net = reconstruction_network("healthy_gan", 32, channels=(8, 8, 16, 32, 64, 8))
        >>> net(torch.zeros(1, 1, 32, 32)).shape
        torch.Size([1, 1, 32, 32])
    """
    shape = (image_size,) * spatial_dims
    if model_type == "dense":
        from monai_anomaly.networks.dense_ae import DenseAutoEncoder

        return DenseAutoEncoder(
            spatial_dims, 1, 1, in_shape=shape, channels=channels, latent_size=latent_size, hidden_size=hidden_size,
            up_mode=up_mode,
        )  # fmt: skip
    if model_type == "unet":
        from monai.networks.nets import BasicUNet

        return BasicUNet(spatial_dims, 1, 1, features=tuple(channels), norm=("group", {"num_groups": 8}))
    if model_type == "vae":
        from monai_anomaly.networks.autoencoder import ConvVAE

        return ConvVAE(
            spatial_dims, 1, 1, in_shape=shape, channels=channels, strides=strides, latent_size=latent_size,
            num_res_units=num_res_units,
        )  # fmt: skip
    if model_type == "healthy_gan":
        from monai_anomaly.networks.gan import HealthyReconstruction, HealthyTranslationGenerator

        return HealthyReconstruction(HealthyTranslationGenerator(spatial_dims, 1, features=channels, mask=gan_mask))
    if model_type == "cyclegan":
        from monai_anomaly.networks.cyclegan import ResNetGenerator

        return ResNetGenerator(
            spatial_dims, 1, 1, features=channels[0], n_down=len(channels) - 1, n_res_blocks=res_blocks
        )
    if model_type == "spatial":
        from monai_anomaly.networks.autoencoder import ConvAutoEncoder

        return ConvAutoEncoder(
            spatial_dims, 1, 1, channels=channels, strides=strides, latent=latent, latent_size=latent_size,
            in_shape=shape, num_res_units=num_res_units,
        )  # fmt: skip
    raise ValueError(f"model_type must be one of {MODEL_TYPES}, got {model_type!r}")
