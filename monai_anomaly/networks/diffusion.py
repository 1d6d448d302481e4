"""Diffusion reconstruction for anomaly detection: partial noising and deterministic DDIM denoising.

Two methods share these parts:

- the AnoDDPM-style baseline (:class:`DiffusionReconstruction`): the input itself is noised to a level ``t0`` and
  denoised back; the anomaly map is ``|x - denoised|``;
- the diffusion refiner (:class:`RefinedReconstruction`): a trained healthy-translation generator gives a coarse
  healthy image, which is noised to ``t0`` and denoised by a timestep-conditioned UNet (optionally conditioned on the
  coarse image as an extra input channel); the anomaly map is ``|x - refined|``.

The denoiser is MONAI's ``DiffusionModelUNet`` (timestep embedding, attention at the deeper levels) and the noise
schedule MONAI's ``DDPMScheduler`` (its ``alphas_cumprod``). Inference is deterministic: the noise comes from a
``torch.Generator`` seeded with ``seed`` on the CPU (the same on every device), and DDIM runs with eta 0, so the same
input always gets the same map. ``steps = 0`` is the single-step estimate of ``x0`` from ``x_t0`` (one network pass
per slice). MONAI's ``DDIMScheduler`` always walks the whole chain from ``num_train_timesteps``; starting at an
intermediate ``t0`` with any number of steps needs the DDIM update written out here (three lines, on MONAI's
``alphas_cumprod``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
from monai.networks.nets import DiffusionModelUNet
from monai.networks.schedulers import DDPMScheduler

from monai_anomaly.networks.simplex import fractal_simplex_noise

__all__ = [
    "DiffusionReconstruction",
    "REFINE_MODES",
    "RefinedReconstruction",
    "diffusion_unet",
    "ddim_timesteps",
    "DIFFUSION_DEFAULTS",
    "DDPMObjective",
    "refiner_settings",
    "load_coarse_weights",
]

DIFFUSION_DEFAULTS = {
    "timesteps": 1000,  # training chain length
    "schedule": "linear_beta",
    "t0": 250,  # noise level the input is taken to at inference
    "steps": 5,  # DDIM steps from t0 back to 0 (0: single-step x0 estimate)
    "seed": 0,  # seed of the inference noise
    "condition": True,  # refiner only: the coarse image as an extra input channel of the UNet
    "noise": "gaussian",  # "gaussian" or "simplex" (AnoDDPM's multi-octave simplex noise, in training and inference)
    # refiner only: "residual" (Brainomaly-Diff: learn the correction of the coarse image) or "image" (denoise the
    # noised coarse image to x0); a model saved before the option existed was trained in "image" mode
    "refine": "residual",
}
REFINE_MODES = ("image", "residual")


def diffusion_unet(
    spatial_dims: int = 2,
    in_channels: int = 1,
    channels: Sequence[int] = (32, 64, 64),
    attention_levels: Sequence[bool] | None = None,
    num_res_blocks: int = 1,
    num_head_channels: int = 32,
) -> DiffusionModelUNet:
    """MONAI's ``DiffusionModelUNet`` predicting the noise of a ``in_channels``-channel input (the noisy image, plus
    the coarse image when conditioned); attention at the deepest level unless ``attention_levels`` says otherwise."""
    channels = tuple(int(c) for c in channels)
    if attention_levels is None:
        attention_levels = tuple(i == len(channels) - 1 for i in range(len(channels)))
    groups = min(8, *channels)
    return DiffusionModelUNet(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=1,
        channels=channels,
        attention_levels=tuple(attention_levels),
        num_res_blocks=num_res_blocks,
        num_head_channels=min(num_head_channels, channels[-1]),
        norm_num_groups=groups,
    )


def ddim_timesteps(t0: int, steps: int) -> list[int]:
    """The timesteps DDIM visits from ``t0`` down (``steps`` of them, evenly spaced, the last one ending at 0).

    Example:
        >>> ddim_timesteps(250, 5)
        [250, 200, 150, 100, 50]
        >>> ddim_timesteps(250, 0)
        [250]
    """
    if t0 < 1:
        raise ValueError(f"t0 must be >= 1, got {t0}")
    if steps <= 0:
        return [int(t0)]
    steps = min(int(steps), int(t0))
    return [int(round(t0 * (steps - i) / steps)) for i in range(steps)]


class _Denoiser(nn.Module):
    """Noise ``start`` to ``t0`` with seeded noise, then denoise it with ``unet`` (DDIM, eta 0, or one step)."""

    def __init__(
        self,
        unet: nn.Module,
        timesteps: int = 1000,
        schedule: str = "linear_beta",
        t0: int = 250,
        steps: int = 5,
        seed: int = 0,
        clip: tuple[float, float] | None = (-1.0, 1.0),
        noise: str = "gaussian",
        image_shape: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if not 1 <= int(t0) < int(timesteps):
            raise ValueError(f"t0 must be in [1, {timesteps}), got {t0}")
        if noise not in ("gaussian", "simplex"):
            raise ValueError(f"noise must be 'gaussian' or 'simplex', got {noise!r}")
        self.noise = noise
        self.unet = unet
        self.scheduler = DDPMScheduler(num_train_timesteps=int(timesteps), schedule=schedule)
        self.register_buffer("alphas_cumprod", self.scheduler.alphas_cumprod.float().clone(), persistent=False)
        self.timesteps, self.t0, self.steps, self.seed = int(timesteps), int(t0), int(steps), int(seed)
        self.clip = clip
        # the inference noise of one sample at the training size, drawn once: a traced (exported) model keeps it as a
        # constant, so two calls of the export give the same map
        fixed = None if image_shape is None else self._sample_noise((1, *(int(v) for v in image_shape)))
        self.register_buffer("fixed_noise", fixed, persistent=False)

    def draw_noise(self, shape: Sequence[int], generator: torch.Generator | None = None) -> torch.Tensor:
        """Noise of ``shape`` on the CPU: standard Gaussian, or standardised fractal simplex noise (``noise``)."""
        if self.noise == "simplex":
            return fractal_simplex_noise(shape, generator)
        return torch.randn(tuple(shape), generator=generator, dtype=torch.float32)

    def _sample_noise(self, shape: Sequence[int]) -> torch.Tensor:
        """The seeded noise of one sample of ``shape`` ``(C, *spatial)``, ``(1, C, *spatial)``, drawn on the CPU."""
        return self.draw_noise((1, *shape), torch.Generator().manual_seed(self.seed))

    def noise_like(self, x: torch.Tensor) -> torch.Tensor:
        """Seeded noise of ``x``'s shape, the same for every sample of the batch.

        A slice's map therefore does not depend on which other slices share its batch (evaluation and inference batch
        slices differently) nor on the device (drawn on the CPU).
        """
        noise = self.fixed_noise
        if noise is None or tuple(noise.shape[1:]) != tuple(x.shape[1:]):
            noise = self._sample_noise(tuple(x.shape[1:]))
        return noise.to(x.device, x.dtype).expand_as(x)

    def _unet(self, x_t: torch.Tensor, t: int, cond: torch.Tensor | None) -> torch.Tensor:
        inp = x_t if cond is None else torch.cat([x_t, cond], dim=1)
        tt = torch.full((x_t.shape[0],), t, device=x_t.device, dtype=torch.long)
        return self.unet(inp, tt)

    def denoise(self, start: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        ac = self.alphas_cumprod.to(start.device)
        ts = ddim_timesteps(self.t0, self.steps)
        a0 = ac[ts[0]]
        x = a0.sqrt() * start + (1 - a0).sqrt() * self.noise_like(start)
        x0 = start
        for i, t in enumerate(ts):
            eps = self._unet(x, t, cond)
            a_t = ac[t]
            x0 = (x - (1 - a_t).sqrt() * eps) / a_t.sqrt()
            if self.clip is not None:
                x0 = x0.clamp(*self.clip)
            if self.steps <= 0 or i == len(ts) - 1:
                break
            a_prev = ac[ts[i + 1]]
            x = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps  # DDIM, eta 0
        return x0

    def training_pair(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(x_t, t, noise)`` for one DDPM training step on clean images ``x``."""
        t = torch.randint(0, self.timesteps, (x.shape[0],), generator=generator).to(x.device)
        noise = self.draw_noise(x.shape, generator).to(x.device, x.dtype)
        return self.scheduler.add_noise(x, noise, t), t, noise


class DiffusionReconstruction(_Denoiser):
    """AnoDDPM-style reconstruction: ``forward(x)`` noises ``x`` to ``t0`` and denoises it (deterministic).

    Args:
        unet: a noise-predicting UNet ``unet(x_t, t)`` (:func:`diffusion_unet`).
        timesteps: length of the training chain.
        schedule: MONAI ``DDPMScheduler`` beta schedule.
        t0: noise level at inference (larger: larger anomalies removed, more healthy detail lost).
        steps: DDIM steps from ``t0`` to 0; 0 for the single-step ``x0`` estimate.
        seed: seed of the inference noise.
        clip: clamp of the ``x0`` estimates (the image range); ``None`` for none.
        noise: ``"gaussian"`` or ``"simplex"`` (AnoDDPM's multi-octave simplex noise,
            :func:`~monai_anomaly.networks.simplex.fractal_simplex_noise`), used in training and at inference.

    Example:
        >>> net = DiffusionReconstruction(diffusion_unet(channels=(8, 16), num_head_channels=8), t0=100, steps=2)
        >>> x = torch.rand(1, 1, 32, 32) * 2 - 1
        >>> torch.equal(net.eval()(x), net(x))  # deterministic
        True
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.denoise(x)

    def training_loss(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """DDPM noise-prediction MSE on clean images ``x``."""
        x_t, t, noise = self.training_pair(x, generator)
        return nn.functional.mse_loss(self.unet(x_t, t), noise)


class RefinedReconstruction(_Denoiser):
    """Diffusion refiner on a coarse healthy reconstruction.

    ``coarse`` is stage 1 (e.g. the healthy-translation GAN's generator, frozen); the UNet is stage 2, trained with
    DDPM on healthy images. Two modes (``refine``):

    - ``"image"``: ``forward(x)`` = ``denoise(coarse(x))``: the coarse image is noised to ``t0`` and denoised straight
      to ``x0``. With ``condition`` the UNet also sees the coarse image as a second input channel (it learns
      ``p(x | coarse)``); without, it is an unconditional healthy prior started from the noised coarse image.
    - ``"residual"`` (Brainomaly-Diff: "diffusion-based residual correction instead of direct image synthesis"): the
      UNet learns the correction ``r = x_healthy - coarse`` on healthy images, conditioned on the coarse image; at
      inference ``r`` is sampled by deterministic DDIM from the seeded noise at ``t0`` (its clean start unknown, so
      0) and the refined image is ``coarse + r``. It is conditioned on the coarse image only: on a healthy training
      image ``r = x - coarse`` is a function of the input and the coarse image, so a UNet that also saw the input
      could learn to copy it back, lesion included.

    Example:
        >>> from monai_anomaly.networks.gan import HealthyReconstruction, HealthyTranslationGenerator
        >>> g = HealthyReconstruction(HealthyTranslationGenerator(2, 1, features=(8, 8, 16, 32, 64, 8)))
        >>> net = RefinedReconstruction(g, diffusion_unet(2, 2, channels=(8, 16), num_head_channels=8), t0=100, steps=2)
        >>> net.eval()(torch.zeros(2, 1, 32, 32)).shape
        torch.Size([2, 1, 32, 32])
    """

    def __init__(
        self, coarse: nn.Module, unet: nn.Module, condition: bool = True, refine: str = "image", **kwargs
    ) -> None:
        if refine not in REFINE_MODES:
            raise ValueError(f"refine must be one of {REFINE_MODES}, got {refine!r}")
        if refine == "residual":
            if not condition:
                raise ValueError("refine 'residual' learns the correction of the coarse image: it needs condition=True")
            kwargs.setdefault("clip", (-2.0, 2.0))  # a correction of images in [-1, 1] lies in [-2, 2]
        super().__init__(unet, **kwargs)
        self.coarse = coarse
        self.condition = bool(condition)
        self.refine = refine
        for p in self.coarse.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True) -> RefinedReconstruction:
        super().train(mode)
        self.coarse.eval()  # stage 1 stays frozen, in inference mode
        return self

    def coarse_image(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            out = self.coarse(x)
        return (out[0] if isinstance(out, (tuple, list)) else out).detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.coarse_image(x)
        if self.refine == "residual":
            return (c + self.denoise(torch.zeros_like(c), c)).clamp(-1.0, 1.0)
        return self.denoise(c, c if self.condition else None)

    def training_loss(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """DDPM noise-prediction MSE on healthy images ``x`` (``"image"``) or on their correction ``x - coarse(x)``
        (``"residual"``), conditioned on the coarse reconstruction."""
        c = self.coarse_image(x)
        x_t, t, noise = self.training_pair(x - c if self.refine == "residual" else x, generator)
        inp = torch.cat([x_t, c], dim=1) if self.condition else x_t
        return nn.functional.mse_loss(self.unet(inp, t), noise)


class DDPMObjective(nn.Module):
    """``forward(x)`` = the DDPM training loss of ``model`` (a :class:`DiffusionReconstruction` or
    :class:`RefinedReconstruction`) on clean images ``x``.

    The loss as a module's ``forward`` is what ``DistributedDataParallel`` needs to synchronise gradients; the
    trainer calls it, and ``multi_gpu_train.json`` wraps it.
    """

    def __init__(self, model: _Denoiser) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.training_loss(x)


_COARSE_KEYS = ("model_type", "image_size", "intensity_mode", "intensity_range", "channels", "strides", "latent",
                "latent_size", "hidden_size", "up_mode", "num_res_units", "gan_mask", "res_blocks")  # fmt: skip


def refiner_settings(options: dict, coarse_ckpt: str | None, trained: str | None = None) -> dict:
    """The refiner's ``diffusion`` settings: ``options`` plus ``coarse``, the network settings of the trained stage-1
    model in ``coarse_ckpt`` (its ``model.pt``), so the refined model rebuilds stage 1 without that file.

    Without ``coarse_ckpt``, the settings stored in ``trained`` (the refined model's own ``model.pt``, when it
    exists) are used: evaluating or resuming a trained refined model needs no stage-1 file.

    Raises:
        BadInputError: ``coarse_ckpt`` is not given (and ``trained`` holds no refiner settings), missing, or holds
            no model settings.
    """
    import os

    from monai_anomaly.utils.errors import BadInputError
    from monai_anomaly.utils.settings import load_model_settings

    if not coarse_ckpt and trained and os.path.isfile(trained):
        stored = load_model_settings(trained).get("diffusion") or {}
        if stored.get("coarse"):
            return dict(stored)
    if not coarse_ckpt:
        raise BadInputError(
            "coarse_ckpt",
            "the diffusion refiner needs a trained healthy_gan (or cyclegan) model.pt as its stage 1; "
            "pass --coarse_ckpt runs/gan/models/model.pt",
        )
    if not os.path.isfile(coarse_ckpt):
        raise BadInputError(coarse_ckpt, "coarse_ckpt not found")
    settings = load_model_settings(coarse_ckpt)
    if settings.get("model_type") not in ("healthy_gan", "cyclegan", "dense", "spatial", "vae", "unet"):
        raise BadInputError(coarse_ckpt, "no stage-1 model settings in this checkpoint (model_type missing)")
    return {**DIFFUSION_DEFAULTS, **dict(options), "coarse": {k: settings[k] for k in _COARSE_KEYS if k in settings}}


def load_coarse_weights(network: nn.Module, coarse_ckpt: str | None, image_size: int, intensity_range) -> nn.Module:
    """Load stage 1's trained weights from ``coarse_ckpt`` into ``network`` (a ``AnomalyMapNet`` around a
    :class:`RefinedReconstruction`), after checking it was trained at the same image size and intensity range.

    Without ``coarse_ckpt`` the network is returned as it is: evaluating or serving a trained refined model loads
    stage 1 with everything else from its own ``model.pt``."""
    if not coarse_ckpt:
        return network
    from monai_anomaly.utils.checkpoints import load_checkpoint
    from monai_anomaly.utils.errors import BadInputError
    from monai_anomaly.utils.settings import load_model_settings

    s = load_model_settings(coarse_ckpt)
    for key, ours in (("image_size", image_size), ("intensity_range", list(intensity_range))):
        theirs = s.get(key)
        if theirs is not None and [float(v) for v in torch.as_tensor(theirs).flatten()] != [
            float(v) for v in torch.as_tensor(ours).flatten()
        ]:
            raise BadInputError(coarse_ckpt, f"stage 1 was trained with {key}={theirs}, the refiner uses {ours}")
    state = load_checkpoint(coarse_ckpt, map_location="cpu").get("model", {})
    stage1 = {k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")} or dict(state)
    refined = network.model if hasattr(network, "model") else network
    dev = next(refined.unet.parameters()).device
    refined.coarse.load_state_dict(stage1)
    refined.coarse.to(dev)
    return network
