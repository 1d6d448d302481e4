"""Loss of the supervised reference classifier."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn.modules.loss import _Loss

__all__ = ["SliceCrossEntropy"]


class SliceCrossEntropy(_Loss):
    """Cross-entropy of class logits ``(B, C)`` against slice labels of any integer or float dtype and shape ``(B,)``
    or ``(B, 1)`` (what the slice datasets collate). Labels outside ``[0, C)`` (e.g. -1, unannotated) are an error:
    the supervised reference trains on labelled slices only.

    Example:
        >>> loss = SliceCrossEntropy()
        >>> float(loss(torch.tensor([[10.0, -10.0], [-10.0, 10.0]]), torch.tensor([0.0, 1.0]))) < 1e-6
        True
    """

    def forward(self, logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        target = torch.as_tensor(label, device=logits.device).reshape(-1).long()
        if target.numel() != logits.shape[0]:
            raise ValueError(f"got {target.numel()} labels for {logits.shape[0]} logits")
        if bool(((target < 0) | (target >= logits.shape[1])).any()):
            raise ValueError(f"labels must be in [0, {logits.shape[1]}) to train a classifier, got {target.tolist()}")
        return F.cross_entropy(logits.float(), target, reduction=self.reduction)
