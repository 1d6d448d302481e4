"""Losses of the GAN methods: WGAN-GP (critic and generator terms, gradient penalty) and AnomalyPro's focus loss."""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["gradient_penalty", "wgan_critic_loss", "wgan_generator_loss", "focus_loss"]


def gradient_penalty(
    critic: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    weight: float = 10.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """WGAN-GP (Gulrajani et al. 2017): ``weight * E[(||grad_x critic(x_hat)||_2 - 1)^2]`` at random points
    ``x_hat`` on the lines between real and fake samples (one point per sample, per-sample norms).

    Example:
        >>> lin = torch.nn.Linear(4, 1, bias=False)
        >>> _ = torch.nn.init.constant_(lin.weight, 0.5)  # gradient norm 1 everywhere: no penalty
        >>> float(gradient_penalty(lin, torch.rand(8, 4), torch.rand(8, 4)))
        0.0
    """
    if real.shape != fake.shape:
        raise ValueError(f"real and fake must have the same shape, got {tuple(real.shape)} and {tuple(fake.shape)}")
    shape = (real.shape[0],) + (1,) * (real.ndim - 1)
    alpha = torch.rand(shape, device=real.device, dtype=real.dtype, generator=generator)
    x_hat = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    out = critic(x_hat)
    (grad,) = torch.autograd.grad(out.sum(), x_hat, create_graph=True)
    norms = grad.flatten(1).norm(2, dim=1)
    return weight * ((norms - 1.0) ** 2).mean()


def wgan_critic_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """The critic's Wasserstein loss ``E[critic(fake)] - E[critic(real)]`` (add the gradient penalty)."""
    return fake_scores.mean() - real_scores.mean()


def wgan_generator_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """The generator's adversarial loss ``-E[critic(fake)]``."""
    return -fake_scores.mean()


def focus_loss(mask: torch.Tensor) -> torch.Tensor:
    """Push a blending mask in ``[0, 1]`` to 0 or 1 (AnomalyPro): the mean of ``a * (1 - a)``, 0 for a binary mask and
    0.25 for a mask of 0.5 everywhere.

    Example:
        >>> float(focus_loss(torch.tensor([0.0, 1.0, 0.5, 0.5])))
        0.125
    """
    return (mask * (1.0 - mask)).mean()
