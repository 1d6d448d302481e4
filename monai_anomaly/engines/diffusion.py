"""Ignite trainer of the diffusion methods (AnoDDPM-style baseline and the refiner): DDPM noise prediction."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch.optim.optimizer import Optimizer
from torch.utils.data import DataLoader

from monai_anomaly.engines.multi import MultiNetworkTrainer
from monai_anomaly.utils.enums import AnomalyKeys

__all__ = ["DiffusionTrainer"]


class DiffusionTrainer(MultiNetworkTrainer):
    """Train a denoising UNet with the DDPM objective on the known-healthy images of each batch.

    Args:
        device, max_epochs, train_data_loader: as MONAI's trainers (dictionary batches with ``image``).
        objective: a module whose ``forward(x)`` is the training loss on clean images
            (:class:`~monai_anomaly.networks.diffusion.DDPMObjective`, possibly inside ``DistributedDataParallel``).
        optimizer: the UNet's optimizer.
        amp: run the UNet under bfloat16 autocast (``True``: on CUDA, and on a CPU with native bfloat16; see
            :func:`~monai_anomaly.engines.multi.training_amp`), or not.
        kwargs: the rest of :class:`~monai_anomaly.engines.multi.MultiNetworkTrainer` (``train_handlers``...).

    Example:
        >>> from monai_anomaly.networks.diffusion import DDPMObjective, DiffusionReconstruction, diffusion_unet
        >>> net = DiffusionReconstruction(diffusion_unet(channels=(8, 16), num_head_channels=8))
        >>> opt = torch.optim.Adam(net.unet.parameters(), 1e-3)
        >>> t = DiffusionTrainer("cpu", 1, [{"image": torch.rand(2, 1, 32, 32)}], DDPMObjective(net), opt)
        >>> t.run()
        >>> sorted(t.state.output)
        ['loss']
    """

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader: Iterable | DataLoader,
        objective: torch.nn.Module,
        optimizer: Optimizer,
        amp: bool = False,
        image_key: str = AnomalyKeys.IMAGE,
        train_handlers: Sequence | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            device,
            max_epochs,
            train_data_loader,
            networks={"denoiser": objective},
            optimizers={"denoiser": optimizer},
            amp={"denoiser": torch.bfloat16} if amp else None,
            train_handlers=train_handlers,
            **kwargs,
        )
        self.image_key = image_key

    def train_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        with self.autocast("denoiser"):
            loss = self.networks["denoiser"](batch[self.image_key])
        loss = loss.float()
        self.step("denoiser", loss)
        return {"loss": loss}
