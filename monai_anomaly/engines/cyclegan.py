"""CycleGAN trainer (Zhu et al. 2017) for anomaly detection, on :class:`MultiNetworkTrainer`.

Two generators, ``to_normal`` (domain A -> normal domain B; its output is the healthy image scored at inference) and
``to_a`` (B -> A), and two PatchGAN discriminators. Per iteration, one generator step (least-squares adversarial
terms of both directions + ``lambda_cycle`` x cycle L1 + ``lambda_identity`` x identity L1) and one step of each
discriminator (real vs a replay-buffer image, least squares, halved).

Modes:

- ``identity``: both domains are the normals of the batch (the generators learn to reproduce healthy anatomy; score =
  reconstruction error), the setting of the OCT / brain-MRI CycleGAN seeds trained on normals only;
- ``two_domain``: A is the unannotated or abnormal images of the batch (``role`` not ``normal``), B the known
  normals; ``to_normal`` translates diseased images to healthy ones, and the map is ``|x - to_normal(x)|``.

``engine.state.output`` holds ``gen_adv_loss``, ``cycle_loss``, ``identity_loss``, ``disc_a_loss``, ``disc_b_loss``
and ``loss`` (the generators' total).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from monai.utils import IgniteInfo, min_version, optional_import
from torch.optim.optimizer import Optimizer
from torch.utils.data import DataLoader

from monai_anomaly.engines.gan import known_healthy_flags
from monai_anomaly.engines.multi import MultiNetworkTrainer
from monai_anomaly.networks.cyclegan import ImageReplayBuffer
from monai_anomaly.utils.enums import AnomalyKeys

Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")

__all__ = ["CycleGANTrainer", "lsgan_loss"]


def lsgan_loss(pred: Any, target: float) -> torch.Tensor:
    """Least-squares GAN loss of a discriminator output (the last map of a PatchDiscriminator's list) against 0 or 1."""
    out = pred[-1] if isinstance(pred, (list, tuple)) else pred
    return F.mse_loss(out, torch.full_like(out, float(target)))


class CycleGANTrainer(MultiNetworkTrainer):
    """Train a CycleGAN.

    Args:
        device, max_epochs, train_data_loader: as MONAI's trainers (dictionary batches with ``image``; ``role`` for
            ``two_domain``).
        to_normal, to_a: the generators A -> normal and normal -> A.
        disc_a, disc_b: the discriminators of domain A and of the normal domain.
        gen_optimizer: one optimizer over both generators' parameters; disc_a_optimizer, disc_b_optimizer: one each.
        mode: ``"identity"`` or ``"two_domain"``.
        lambda_cycle: cycle-consistency weight (10).
        lambda_identity: identity weight (5, as ``0.5 * lambda_cycle`` in the paper).
        buffer_size: replay-buffer length (50); the buffers are in :meth:`checkpoint_dict`.
        seed: seed of the buffers' random choices.
        perceptual: optional ``loss(reconstruction, image)`` added to the cycle term, e.g.
            :class:`~monai_anomaly.losses.perceptual.FilePerceptualLoss` from a weight file the user gives (nothing is
            downloaded); reported as ``perceptual_loss``.
        lambda_perceptual: its weight.
        kwargs: the rest of :class:`~monai_anomaly.engines.multi.MultiNetworkTrainer`.
    """

    LOSS_NAMES = ("loss", "gen_adv_loss", "cycle_loss", "identity_loss", "disc_a_loss", "disc_b_loss")

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader: Iterable | DataLoader,
        to_normal: torch.nn.Module,
        to_a: torch.nn.Module,
        disc_a: torch.nn.Module,
        disc_b: torch.nn.Module,
        gen_optimizer: Optimizer,
        disc_a_optimizer: Optimizer,
        disc_b_optimizer: Optimizer,
        mode: str = "identity",
        lambda_cycle: float = 10.0,
        lambda_identity: float = 5.0,
        buffer_size: int = 50,
        seed: int | None = None,
        perceptual: torch.nn.Module | None = None,
        lambda_perceptual: float = 1.0,
        image_key: str = AnomalyKeys.IMAGE,
        train_handlers: Sequence | None = None,
        **kwargs: Any,
    ) -> None:
        if mode not in ("identity", "two_domain"):
            raise ValueError(f"mode must be 'identity' or 'two_domain', got {mode!r}")
        generators = torch.nn.ModuleDict({"to_normal": to_normal, "to_a": to_a})
        super().__init__(
            device,
            max_epochs,
            train_data_loader,
            networks={"generators": generators, "disc_a": disc_a, "disc_b": disc_b},
            optimizers={"generators": gen_optimizer, "disc_a": disc_a_optimizer, "disc_b": disc_b_optimizer},
            train_handlers=train_handlers,
            **kwargs,
        )
        self.mode = mode
        self.perceptual, self.lambda_perceptual = perceptual, float(lambda_perceptual)
        if perceptual is not None:
            self.perceptual.to(self.state.device)
            self.LOSS_NAMES = (*self.LOSS_NAMES, "perceptual_loss")
        self.lambda_cycle, self.lambda_identity = float(lambda_cycle), float(lambda_identity)
        self.image_key = image_key
        self.buffer_a = ImageReplayBuffer(buffer_size, seed=seed)
        self.buffer_b = ImageReplayBuffer(buffer_size, seed=None if seed is None else seed + 1)
        self._last_domain: dict[str, torch.Tensor] = {}
        self._steps_this_epoch = 0
        self.add_event_handler(Events.EPOCH_STARTED, self._reset_steps)
        self.add_event_handler(Events.EPOCH_COMPLETED, self._check_steps)

    def _reset_steps(self, engine: Any = None) -> None:
        self._steps_this_epoch = 0

    def _check_steps(self, engine: Any = None) -> None:
        """Stop a run that learns nothing: an epoch in which no batch (nor any earlier one) held both domains."""
        if self._steps_this_epoch == 0:
            raise RuntimeError(
                f"CycleGAN ({self.mode}): epoch {self.state.epoch} made no optimiser step: no batch held images of "
                "both domains (domain A: mixed or abnormal images, domain B: known normals); the training set needs "
                "both (see monai_anomaly.data.splits.two_domain_splits)"
            )

    def _domains(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor] | None:
        x = batch[self.image_key]
        if self.mode == "identity":
            return x, x
        normal = known_healthy_flags(batch, x.shape[0], x.device)
        # a shuffled batch of unpaired images may hold one domain only (batch 4, half of each: 1 batch in 8):
        # the other domain's images of the last batch that had them stand in (detached copies, no graph)
        a = x[~normal] if (~normal).any() else self._last_domain.get("a")
        b = x[normal] if normal.any() else self._last_domain.get("b")
        if a is None or b is None:
            return None
        self._last_domain = {"a": a.detach(), "b": b.detach()}
        return a, b

    def train_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        g = self.networks["generators"]
        g_ab, g_ba = g["to_normal"], g["to_a"]
        d_a, d_b = self.networks["disc_a"], self.networks["disc_b"]
        domains = self._domains(batch)
        if domains is None:  # two_domain, and no image of one domain seen yet: nothing to learn from this batch
            zero = torch.zeros((), device=batch[self.image_key].device)
            return dict.fromkeys(self.LOSS_NAMES, zero)
        real_a, real_b = domains
        self._steps_this_epoch += 1
        # -- generators
        self.set_requires_grad(d_a, False)
        self.set_requires_grad(d_b, False)
        with self.autocast("generators"):
            fake_b, fake_a = g_ab(real_a), g_ba(real_b)
            # the discriminators only pass gradients through here: their bare modules, not a DDP forward
            adv = lsgan_loss(self.bare("disc_b")(fake_b), 1.0) + lsgan_loss(self.bare("disc_a")(fake_a), 1.0)
            rec_a, rec_b = g_ba(fake_b), g_ab(fake_a)
            cycle = F.l1_loss(rec_a, real_a) + F.l1_loss(rec_b, real_b)
            if real_a is real_b:
                # identity mode: G_ab(real_b) is G_ab(real_a) = fake_b (and G_ba(real_a) = fake_a), the same function
                # of the same input, so the identity term reuses them: 4 generator passes instead of 6, same gradients
                same_b, same_a = fake_b, fake_a
            else:
                same_b, same_a = g_ab(real_b), g_ba(real_a)
            ident = F.l1_loss(same_b, real_b) + F.l1_loss(same_a, real_a)
            total = adv + self.lambda_cycle * cycle + self.lambda_identity * ident
            if self.perceptual is not None:
                perc = self.perceptual(rec_a.float(), real_a.float()) + self.perceptual(rec_b.float(), real_b.float())
                total = total + self.lambda_perceptual * perc
        self.step("generators", total.float())
        self.set_requires_grad(d_a, True)
        self.set_requires_grad(d_b, True)
        # -- discriminators, on real images and images from the replay buffers
        with self.autocast("disc_a"):
            pool_a = self.buffer_a.push_and_pop(fake_a.detach())
            loss_da = 0.5 * (lsgan_loss(d_a(real_a), 1.0) + lsgan_loss(d_a(pool_a), 0.0))
        self.step("disc_a", loss_da.float())
        with self.autocast("disc_b"):
            pool_b = self.buffer_b.push_and_pop(fake_b.detach())
            loss_db = 0.5 * (lsgan_loss(d_b(real_b), 1.0) + lsgan_loss(d_b(pool_b), 0.0))
        self.step("disc_b", loss_db.float())
        return {
            "loss": total.detach(),
            "gen_adv_loss": adv.detach(),
            "cycle_loss": cycle.detach(),
            "identity_loss": ident.detach(),
            "disc_a_loss": loss_da.detach(),
            "disc_b_loss": loss_db.detach(),
            **({"perceptual_loss": perc.detach()} if self.perceptual is not None else {}),
        }

    def checkpoint_dict(self, **extra: Any) -> dict[str, Any]:
        """As :meth:`MultiNetworkTrainer.checkpoint_dict`, with the two replay buffers."""
        return super().checkpoint_dict(buffer_a=self.buffer_a, buffer_b=self.buffer_b, **extra)
