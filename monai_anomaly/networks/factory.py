"""Build a method's reconstruction network from a bundle's settings (one place for train.json and inference.json)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

__all__ = ["MODEL_TYPES", "reconstruction_network"]

MODEL_TYPES = ("dense", "spatial", "vae", "unet", "healthy_gan", "cyclegan", "anoddpm", "gan_refined", "resnet18")


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
    diffusion: Mapping[str, Any] | None = None,
) -> torch.nn.Module:
    """The network whose ``forward(x)`` is the healthy reconstruction of ``x``.

    ``model_type``: ``"dense"`` (:class:`~monai_anomaly.networks.dense_ae.DenseAutoEncoder`), ``"spatial"``
    (:class:`~monai_anomaly.networks.autoencoder.ConvAutoEncoder`; ``latent`` picks its bottleneck), ``"vae"``
    (:class:`~monai_anomaly.networks.autoencoder.ConvVAE`), ``"unet"`` (MONAI ``BasicUNet``, the denoising AE; six
    ``channels``) or ``"healthy_gan"`` (:class:`~monai_anomaly.networks.gan.HealthyReconstruction` of a
    :class:`~monai_anomaly.networks.gan.HealthyTranslationGenerator`; six ``channels``, ``gan_mask`` for the
    AnomalyPro mask) or ``"cyclegan"`` (the CycleGAN generator to normal,
    :class:`~monai_anomaly.networks.cyclegan.ResNetGenerator`: stem width ``channels[0]``, ``len(channels) - 1``
    downsamplings, ``res_blocks`` residual blocks) or ``"anoddpm"`` (the AnoDDPM-style baseline,
    :class:`~monai_anomaly.networks.diffusion.DiffusionReconstruction` of a MONAI ``DiffusionModelUNet`` with
    ``channels`` and ``num_res_units`` residual blocks per level) or ``"gan_refined"`` (the diffusion refiner,
    :class:`~monai_anomaly.networks.diffusion.RefinedReconstruction`: the coarse network described by
    ``diffusion["coarse"]`` (a trained model's settings) chained with the denoising UNet). ``diffusion`` holds the
    diffusion settings (:data:`~monai_anomaly.networks.diffusion.DIFFUSION_DEFAULTS`: ``timesteps``, ``schedule``,
    ``t0``, ``steps``, ``seed``, ``condition``; ``coarse`` for the refiner). ``"resnet18"`` is the supervised
    reference, :class:`~monai_anomaly.networks.classifier.SliceClassifier`: its ``forward`` gives class logits, and
    the inference wrapper asks it for its own map.

    Example:
        >>> net = reconstruction_network("healthy_gan", 32, channels=(8, 8, 16, 32, 64, 8))
        >>> net(torch.zeros(1, 1, 32, 32)).shape
        torch.Size([1, 1, 32, 32])
    """
    shape = (image_size,) * spatial_dims
    if model_type == "resnet18":  # the supervised reference: a classifier that makes its own map (not a reconstruction)
        from monai_anomaly.networks.classifier import SliceClassifier

        return SliceClassifier(spatial_dims, 1)
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
    if model_type in ("anoddpm", "gan_refined"):
        from monai_anomaly.networks.diffusion import (
            DIFFUSION_DEFAULTS,
            DiffusionReconstruction,
            RefinedReconstruction,
            diffusion_unet,
        )

        d = {**DIFFUSION_DEFAULTS, **dict(diffusion or {})}
        kw = {k: d[k] for k in ("timesteps", "schedule", "t0", "steps", "seed", "noise")}
        cond = model_type == "gan_refined" and bool(d["condition"])
        unet = diffusion_unet(spatial_dims, 2 if cond else 1, channels, num_res_blocks=max(1, int(num_res_units)))
        if model_type == "anoddpm":
            return DiffusionReconstruction(unet, **kw)
        coarse = dict(d.get("coarse") or {})
        if not coarse.get("model_type"):
            raise ValueError(
                "model_type 'gan_refined' needs the coarse model's settings (diffusion['coarse']): train it with "
                "coarse_ckpt set to a trained healthy_gan / cyclegan model.pt"
            )
        keys = ("channels", "strides", "latent", "latent_size", "hidden_size", "up_mode", "num_res_units", "gan_mask",
                "res_blocks")  # fmt: skip
        stage1 = reconstruction_network(
            coarse["model_type"], int(coarse.get("image_size", image_size)), spatial_dims=spatial_dims,
            **{k: coarse[k] for k in keys if k in coarse},
        )  # fmt: skip
        return RefinedReconstruction(stage1, unet, condition=cond, **kw)
    if model_type == "spatial":
        from monai_anomaly.networks.autoencoder import ConvAutoEncoder

        return ConvAutoEncoder(
            spatial_dims, 1, 1, channels=channels, strides=strides, latent=latent, latent_size=latent_size,
            in_shape=shape, num_res_units=num_res_units,
        )  # fmt: skip
    raise ValueError(f"model_type must be one of {MODEL_TYPES}, got {model_type!r}")
