"""A tiny ``SupervisedTrainer`` shared by the handler tests (checkpoint saving, loading and resume)."""

from __future__ import annotations

import torch
from monai.engines import SupervisedTrainer

__all__ = ["SIZE", "tiny_trainer"]

SIZE = 16


def tiny_trainer(net: torch.nn.Module, max_epochs: int = 1) -> tuple[SupervisedTrainer, torch.optim.Optimizer]:
    """A one-iteration-per-epoch L1 trainer of ``net`` on random ``SIZE`` x ``SIZE`` images.

    Args:
        net: the network to train (one input and one output channel).
        max_epochs: the trainer's epochs.

    Returns:
        ``(trainer, optimizer)``.
    """
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    data = [{"image": torch.rand(2, 1, SIZE, SIZE), "label": torch.rand(2, 1, SIZE, SIZE)}]
    return SupervisedTrainer("cpu", max_epochs, data, net, opt, torch.nn.L1Loss()), opt
