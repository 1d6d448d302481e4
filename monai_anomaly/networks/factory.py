"""The methods as specs: each ``model_type`` names how its network is built from the saved settings.

A method is: a :class:`MethodSpec` here (its network, built from
:class:`~monai_anomaly.utils.settings.AnomalyModelSettings`), its loss and training engine (named by the spec's
``variant``, the config file that wires them into the bundle), and whether it can be the refiner's stage 1. Every
bundle's ``model_def`` is ``build_model(@model_settings)``, a registry lookup.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from monai_anomaly.utils.settings import AnomalyModelSettings, ModelSettings

__all__ = ["METHODS", "MODEL_TYPES", "MethodSpec", "build_model", "reconstruction_network"]


@dataclass(frozen=True)
class MethodSpec:
    """One method: how its network is built, where its loss and engine step are wired, what it can be used for.

    Args:
        model_type: the saved ``model_type``.
        build: ``(settings, spatial_dims) -> network`` whose ``forward(x)`` is the healthy reconstruction (or which
            has ``anomaly_outputs(x)``: a method with its own map).
        variant: the config file (under ``bundles/``) that holds its loss and training engine.
        stage1: it can be the diffusion refiner's coarse stage.
    """

    model_type: str
    build: Callable[[AnomalyModelSettings, int], torch.nn.Module]
    variant: str
    stage1: bool = False


def _shape(s: AnomalyModelSettings, spatial_dims: int) -> tuple[int, ...]:
    return (int(s.image_size),) * spatial_dims


def _dense(s: AnomalyModelSettings, nd: int) -> torch.nn.Module:
    from monai_anomaly.networks.dense_ae import DenseAutoEncoder

    return DenseAutoEncoder(
        nd, 1, 1, in_shape=_shape(s, nd), channels=s.channels, latent_size=s.latent_size, hidden_size=s.hidden_size,
        up_mode=s.up_mode,
    )  # fmt: skip


def _aeu(s: AnomalyModelSettings, nd: int) -> torch.nn.Module:
    """AE-U (Mao et al., MICCAI 2020): the dense AE with two output channels, the mean and ``log sigma^2``."""
    from monai_anomaly.networks.dense_ae import DenseAutoEncoder

    return DenseAutoEncoder(
        nd, 1, 2, in_shape=_shape(s, nd), channels=s.channels, latent_size=s.latent_size, hidden_size=s.hidden_size,
        up_mode=s.up_mode,
    )  # fmt: skip


def _spatial(s: AnomalyModelSettings, nd: int) -> torch.nn.Module:
    from monai_anomaly.networks.autoencoder import ConvAutoEncoder

    return ConvAutoEncoder(
        nd, 1, 1, channels=s.channels, strides=s.strides, latent=s.latent, latent_size=s.latent_size,
        in_shape=_shape(s, nd), num_res_units=s.num_res_units,
    )  # fmt: skip


def _vae(s: AnomalyModelSettings, nd: int) -> torch.nn.Module:
    from monai_anomaly.networks.autoencoder import ConvVAE

    return ConvVAE(
        nd, 1, 1, in_shape=_shape(s, nd), channels=s.channels, strides=s.strides, latent_size=s.latent_size,
        num_res_units=s.num_res_units,
    )  # fmt: skip


def _unet(s: AnomalyModelSettings, nd: int) -> torch.nn.Module:
    from monai.networks.nets import BasicUNet

    return BasicUNet(nd, 1, 1, features=tuple(s.channels), norm=("group", {"num_groups": 8}))


def _healthy_gan(s: AnomalyModelSettings, nd: int) -> torch.nn.Module:
    from monai_anomaly.networks.gan import HealthyReconstruction, HealthyTranslationGenerator

    return HealthyReconstruction(HealthyTranslationGenerator(nd, 1, features=s.channels, mask=s.gan_mask))


def _cyclegan(s: AnomalyModelSettings, nd: int) -> torch.nn.Module:
    from monai_anomaly.networks.cyclegan import ResNetGenerator

    return ResNetGenerator(nd, 1, 1, features=s.channels[0], n_down=len(s.channels) - 1, n_res_blocks=s.res_blocks)


def _resnet18(s: AnomalyModelSettings, nd: int) -> torch.nn.Module:
    from monai_anomaly.networks.classifier import SliceClassifier

    return SliceClassifier(nd, 1)


def _diffusion(s: AnomalyModelSettings, nd: int) -> torch.nn.Module:
    from monai_anomaly.networks.diffusion import (
        DIFFUSION_DEFAULTS,
        DiffusionReconstruction,
        RefinedReconstruction,
        diffusion_unet,
    )

    d = {**DIFFUSION_DEFAULTS, **dict(s.diffusion or {})}
    kw = {k: d[k] for k in ("timesteps", "schedule", "t0", "steps", "seed", "noise")}
    kw["image_shape"] = _shape(s, nd)
    cond = s.model_type == "gan_refined" and bool(d["condition"])
    unet = diffusion_unet(nd, 2 if cond else 1, s.channels, num_res_blocks=max(1, int(s.num_res_units)))
    if s.model_type == "anoddpm":
        return DiffusionReconstruction(unet, **kw)
    coarse = dict(d.get("coarse") or {})
    if not coarse.get("model_type"):
        raise ValueError(
            "model_type 'gan_refined' needs the coarse model's settings (diffusion['coarse']): train it with "
            "coarse_ckpt set to a trained healthy_gan / cyclegan model.pt"
        )
    spec = METHODS.get(str(coarse["model_type"]))
    if spec is None or not spec.stage1:
        stage1 = sorted(k for k, v in METHODS.items() if v.stage1)
        raise ValueError(f"the refiner's stage 1 must be one of {stage1}, got {coarse['model_type']!r}")
    first = AnomalyModelSettings.from_dict({"image_size": s.image_size, **coarse})
    return RefinedReconstruction(
        spec.build(first, nd), unet, condition=cond, refine=str((s.diffusion or {}).get("refine", "image")), **kw
    )


METHODS: dict[str, MethodSpec] = {
    spec.model_type: spec
    for spec in (
        MethodSpec("dense", _dense, "autoencoder_anomaly/method/variant.json"),
        MethodSpec("aeu", _aeu, "autoencoder_anomaly/configs/variants/aeu.json"),
        MethodSpec("spatial", _spatial, "autoencoder_anomaly/method/variant.json"),
        MethodSpec("vae", _vae, "autoencoder_anomaly/method/variant.json"),
        MethodSpec("unet", _unet, "autoencoder_anomaly/configs/variants/dae.json"),
        MethodSpec("healthy_gan", _healthy_gan, "healthy_gan_anomaly/method/variant.json", stage1=True),
        MethodSpec("cyclegan", _cyclegan, "cyclegan_anomaly/method/variant.json", stage1=True),
        MethodSpec("anoddpm", _diffusion, "anoddpm_anomaly/method/variant.json"),
        MethodSpec("gan_refined", _diffusion, "diffusion_refined_anomaly/method/variant.json"),
        MethodSpec("resnet18", _resnet18, "supervised_resnet18/method/variant.json"),
    )
}
"""The registry of methods, by ``model_type``."""

MODEL_TYPES = tuple(METHODS)


def build_model(
    settings: AnomalyModelSettings | ModelSettings | Mapping[str, Any], spatial_dims: int = 2
) -> torch.nn.Module:
    """The network of ``settings["model_type"]``, built from the settings (a registry lookup).

    Args:
        settings: :class:`~monai_anomaly.utils.settings.AnomalyModelSettings`, the ``model_settings`` of a bundle
            (:class:`~monai_anomaly.utils.settings.ModelSettings`) or a saved settings dict.
        spatial_dims: 2 for slices.

    Raises:
        ValueError: an unknown ``model_type``.

    Example:
        >>> net = build_model({"model_type": "healthy_gan", "image_size": 32, "channels": [8, 8, 16, 32, 64, 8]})
        >>> net(torch.zeros(1, 1, 32, 32)).shape
        torch.Size([1, 1, 32, 32])
    """
    s = settings if isinstance(settings, AnomalyModelSettings) else AnomalyModelSettings.from_dict(settings)
    spec = METHODS.get(s.model_type)
    if spec is None:
        raise ValueError(f"model_type must be one of {MODEL_TYPES}, got {s.model_type!r}")
    return spec.build(s, spatial_dims)


def reconstruction_network(
    model_type: str = "dense", image_size: int = 64, spatial_dims: int = 2, **settings: Any
) -> torch.nn.Module:
    """:func:`build_model` with the settings as keyword arguments (``channels``, ``latent_size``, ``diffusion``...).

    Example:
        >>> reconstruction_network("vae", 32, channels=(4, 8), strides=(2, 2))(torch.zeros(1, 1, 32, 32))[0].shape
        torch.Size([1, 1, 32, 32])
    """
    unknown = sorted(set(settings) - set(AnomalyModelSettings.names()))
    if unknown:
        raise TypeError(f"unknown setting(s) {unknown}; the settings are {AnomalyModelSettings.names()}")
    values: dict[str, Any] = {"model_type": model_type, "image_size": image_size}
    for k, v in settings.items():
        values[k] = list(v) if isinstance(v, Sequence) and not isinstance(v, str) else v
    return build_model(values, spatial_dims)
