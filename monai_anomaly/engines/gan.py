"""Trainer of the healthy-translation GAN (Brainomaly, WACV 2024; MedAI AnomalyPro) on :class:`MultiNetworkTrainer`.

Each batch holds known-healthy images (role ``normal``) and images of the unannotated mixed set (role ``mixed``,
labels hidden); trained on normals alone, every image plays both parts. Per iteration:

- critic (WGAN-GP): real = known-healthy images, fake = ``G(mixed)``;
  ``loss_c = E[C(fake)] - E[C(real)] + 10 * GP``;
- generator, every ``n_critic``-th iteration: ``loss_g = -E[C(G(mixed))] + lambda_id * |G(healthy) - healthy|_1``
  (+ ``lambda_focus * focus(mask)`` for the AnomalyPro mask variant).

``engine.state.output`` holds ``critic_loss``, ``gradient_penalty``, ``wasserstein`` (the critic's estimate of the
distance, ``E[C(real)] - E[C(fake)]``), ``gen_adv_loss``, ``identity_loss``, ``focus_loss`` and ``loss`` (the
generator's total, carried between its steps).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch.optim.optimizer import Optimizer
from torch.utils.data import DataLoader

from monai_anomaly.engines.multi import MultiNetworkTrainer
from monai_anomaly.losses.gan import focus_loss, gradient_penalty, wgan_critic_loss, wgan_generator_loss
from monai_anomaly.utils.enums import AnomalyKeys, Role

logger = logging.getLogger(__name__)

NO_MIXED_SET_WARNING = (
    "the healthy-translation GAN is training on known-healthy images only (no image has role 'mixed'): with nothing "
    "to translate it drifts from or towards the identity, and on the shared data it scored below the autoencoder "
    "this way (docs/experiments.md, Part C). Give it an unannotated mixed set (Brainomaly layout train/neg_mixed + "
    "train/pos, or a manifest with a role column), or use the autoencoder_anomaly bundle."
)

__all__ = ["HealthyGANTrainer", "known_healthy_flags"]


def known_healthy_flags(batch: Mapping[str, Any], n: int, device: torch.device) -> torch.Tensor:
    """``(n,)`` bool: which samples of a batch are known healthy (role ``normal``). A batch without roles is all
    known-healthy (training on normals alone)."""
    roles = batch.get(AnomalyKeys.ROLE)
    if roles is None:
        return torch.ones(n, dtype=torch.bool, device=device)
    if isinstance(roles, str):
        roles = [roles] * n
    return torch.tensor([str(r) == Role.NORMAL.value for r in roles], dtype=torch.bool, device=device)


class HealthyGANTrainer(MultiNetworkTrainer):
    """Train a :class:`~monai_anomaly.networks.gan.HealthyTranslationGenerator` against a WGAN-GP critic.

    Args:
        device, max_epochs, train_data_loader: as MONAI's trainers (dictionary batches with ``image`` and, for a
            mixed set, ``role``).
        generator, critic: the two networks.
        gen_optimizer, critic_optimizer: their optimizers (Brainomaly: Adam(1e-4, betas=(0.5, 0.999))).
        n_critic: critic steps per generator step (default 2).
        lambda_gp: gradient-penalty weight (10).
        lambda_id: weight of the identity L1 on known-healthy images (1).
        lambda_focus: weight of the focus loss on the blending mask (AnomalyPro variant; 1).
        lambda_rec: weight of the reconstruction L1 ``|G(x) - x|_1`` on *every* image of the batch, mixed ones
            included (MedAI AnomalyPro's fourth generator term: it keeps the output close to the input, so the
            generator changes only what it must; 0, Brainomaly's objective, leaves it out). Logged as
            ``reconstruction_loss``.
        seed: seed of the gradient-penalty interpolation (``None``: the global generator).
        kwargs: the rest of :class:`~monai_anomaly.engines.multi.MultiNetworkTrainer` (``schedulers``, ``amp``,
            ``train_handlers``, ``epoch_length``...).
    """

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader: Iterable | DataLoader,
        generator: torch.nn.Module,
        critic: torch.nn.Module,
        gen_optimizer: Optimizer,
        critic_optimizer: Optimizer,
        n_critic: int = 2,
        lambda_gp: float = 10.0,
        lambda_id: float = 1.0,
        lambda_focus: float = 1.0,
        lambda_rec: float = 0.0,
        seed: int | None = None,
        image_key: str = AnomalyKeys.IMAGE,
        train_handlers: Sequence | None = None,
        **kwargs: Any,
    ) -> None:
        if n_critic < 1:
            raise ValueError(f"n_critic must be >= 1, got {n_critic}")
        super().__init__(
            device,
            max_epochs,
            train_data_loader,
            networks={"generator": generator, "critic": critic},
            optimizers={"generator": gen_optimizer, "critic": critic_optimizer},
            train_handlers=train_handlers,
            **kwargs,
        )
        self.n_critic = int(n_critic)
        self.lambda_gp, self.lambda_id, self.lambda_focus = float(lambda_gp), float(lambda_id), float(lambda_focus)
        if lambda_rec < 0:
            raise ValueError(f"lambda_rec must be >= 0, got {lambda_rec}")
        self.lambda_rec = float(lambda_rec)
        self.image_key = image_key
        self._gp_gen = None if seed is None else torch.Generator(device=torch.device(device)).manual_seed(seed)
        self._last_gen: dict[str, torch.Tensor] = {}
        self.mixed_seen = 0
        from ignite.engine import Events

        self.add_event_handler(Events.EPOCH_COMPLETED(once=1), self._warn_without_mixed_set)

    def _warn_without_mixed_set(self, engine: HealthyGANTrainer) -> None:
        if self.mixed_seen == 0:
            logger.warning(NO_MIXED_SET_WARNING)

    def train_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        g, c = self.networks["generator"], self.networks["critic"]
        x = batch[self.image_key]
        healthy_flag = known_healthy_flags(batch, x.shape[0], x.device)
        self.mixed_seen += int((~healthy_flag).sum())
        real = x[healthy_flag] if healthy_flag.any() else x
        mixed = x[~healthy_flag] if (~healthy_flag).any() else x
        # -- critic
        self.set_requires_grad(c, True)
        with torch.no_grad(), self.autocast("generator"):
            fake = g(mixed)["healthy"].float()
        n = min(len(real), len(fake))
        with self.autocast("critic"):
            real_scores, fake_scores = c(real), c(fake)
        gp = gradient_penalty(c, real[:n], fake[:n], weight=self.lambda_gp, generator=self._gp_gen)
        c_loss = wgan_critic_loss(real_scores.float(), fake_scores.float()) + gp
        self.step("critic", c_loss)
        out = {
            "critic_loss": c_loss,
            "gradient_penalty": gp,
            "wasserstein": real_scores.float().mean() - fake_scores.float().mean(),
        }
        # -- generator, every n_critic-th iteration
        if (self.state.iteration - 1) % self.n_critic == 0:
            self.set_requires_grad(c, False)
            with self.autocast("generator"):
                gen_mixed = g(mixed)
                gen_real = g(real)
            with self.autocast("critic"):
                adv = wgan_generator_loss(self.bare("critic")(gen_mixed["healthy"]).float())
            ident = F.l1_loss(gen_real["healthy"].float(), real)
            total = adv + self.lambda_id * ident
            # reconstruction (AnomalyPro): every image, mixed and known-healthy alike, stays close to its input; a
            # batch without a mixed image has mixed = real, so the real images are not counted twice
            every_out = gen_real["healthy"] if mixed is real else torch.cat([gen_mixed["healthy"], gen_real["healthy"]])
            every_in = real if mixed is real else torch.cat([mixed, real])
            rec = F.l1_loss(every_out.float(), every_in)
            if self.lambda_rec > 0:
                total = total + self.lambda_rec * rec
            foc = torch.zeros((), device=x.device)
            if "mask" in gen_mixed:
                foc = focus_loss(torch.cat([gen_mixed["mask"], gen_real["mask"]]).float())
                total = total + self.lambda_focus * foc
            self.step("generator", total)
            self.set_requires_grad(c, True)
            self._last_gen = {
                "loss": total.detach(),
                "gen_adv_loss": adv.detach(),
                "identity_loss": ident.detach(),
                "focus_loss": foc.detach(),
                "reconstruction_loss": rec.detach(),
            }
        zero = torch.zeros((), device=x.device)
        names = ("loss", "gen_adv_loss", "identity_loss", "focus_loss", "reconstruction_loss")
        out.update(self._last_gen or dict.fromkeys(names, zero))
        return out
