"""Reconstruction loss for autoencoders and VAEs: L1 / L2 / SSIM / L1+SSIM, plus a weighted KL term for VAEs, and
AE-U's heteroscedastic loss for networks that predict a mean and a log-variance per pixel."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.losses import SSIMLoss

__all__ = ["RECONSTRUCTION_LOSS_KINDS", "ReconstructionLoss", "heteroscedastic_nll", "kl_divergence"]

RECONSTRUCTION_LOSS_KINDS = ("l1", "l2", "ssim", "l1+ssim", "nll")
_REDUCTIONS = ("mean", "sum", "none")


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Per-sample KL divergence ``KL(N(mu, exp(logvar)) || N(0, I))``, summed over the latent dimensions.

    Args:
        mu: ``(B, ...)`` posterior means.
        logvar: ``(B, ...)`` posterior log-variances.

    Returns:
        ``(B,)`` tensor.
    """
    kl = -0.5 * (1.0 + logvar - mu.pow(2) - logvar.exp())
    return kl.flatten(1).sum(dim=1)


def heteroscedastic_nll(
    mean: torch.Tensor, log_variance: torch.Tensor, target: torch.Tensor, variance_floor: float = 1e-6
) -> torch.Tensor:
    """AE-U's per-pixel loss (Mao et al., MICCAI 2020): ``(x - mu)^2 / sigma^2 + log sigma^2``.

    It is twice PyTorch's :func:`~torch.nn.functional.gaussian_nll_loss` (``full=False``), which it calls, with the
    variance ``exp(log_variance)`` floored at ``variance_floor`` as there.

    Args:
        mean: the predicted mean ``mu``.
        log_variance: the predicted ``log sigma^2``, same shape.
        target: the image ``x``, same shape.
        variance_floor: the smallest variance.

    Returns:
        the per-pixel loss, same shape.

    Example:
        >>> import torch
        >>> float(heteroscedastic_nll(torch.zeros(1), torch.log(torch.tensor([4.0])), torch.tensor([2.0])))
        2.386294364929199
    """
    var = log_variance.exp()
    return 2.0 * F.gaussian_nll_loss(mean, target, var, full=False, eps=variance_floor, reduction="none")


class ReconstructionLoss(nn.Module):
    """One loss for reconstruction-based anomaly detectors, for plain autoencoders and VAEs alike.

    The prediction is either a reconstruction tensor or a VAE tuple ``(recon, mu, logvar, z)`` (as returned by
    :class:`~monai_anomaly.networks.autoencoder.ConvVAE` and MONAI's ``VarAutoEncoder``). Per sample the
    reconstruction term is

    - ``"l1"``: mean ``|recon - target|``;
    - ``"l2"``: mean ``(recon - target) ** 2``;
    - ``"ssim"``: ``1 - SSIM(recon, target)`` (MONAI's :class:`~monai.losses.SSIMLoss`);
    - ``"l1+ssim"``: ``(1 - ssim_weight) * l1 + ssim_weight * (1 - SSIM)``;
    - ``"nll"``: AE-U's :func:`heteroscedastic_nll`, mean ``(x - mu)^2 / sigma^2 + log sigma^2``, for a network with
      twice the input's channels (mean, then log-variance: ``model_type`` ``"aeu"``).

    For a VAE tuple ``kl_weight * KL`` is added, KL summed over the latent dimensions. The per-sample losses are then
    reduced over the batch (``"mean"``, ``"sum"`` or ``"none"`` for a ``(B,)`` tensor). :meth:`compute_terms` also
    returns the separate terms (the trainer logs them).

    Args:
        kind: one of :data:`RECONSTRUCTION_LOSS_KINDS`.
        ssim_weight: weight of the SSIM term for ``"l1+ssim"``, in ``[0, 1]``.
        kl_weight: weight of the KL term (VAE predictions only), ``>= 0``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` over the batch.
        spatial_dims: spatial dimensions of the images (SSIM only).
        data_range: intensity range of the images for the SSIM constants (1.0 for ``[0, 1]`` images).
        win_size: SSIM Gaussian window size.

    Example:
        >>> import torch
        >>> loss = ReconstructionLoss("l1")
        >>> float(loss(torch.zeros(2, 1, 8, 8), torch.ones(2, 1, 8, 8)))
        1.0
        >>> mu, logvar = torch.zeros(2, 4), torch.zeros(2, 4)
        >>> float(ReconstructionLoss("l2", kl_weight=1.0)((torch.zeros(2, 1, 8, 8), mu, logvar, mu),
        ...                                                torch.zeros(2, 1, 8, 8)))
        0.0
    """

    def __init__(
        self,
        kind: str = "l1",
        ssim_weight: float = 0.5,
        kl_weight: float = 1e-3,
        reduction: str = "mean",
        spatial_dims: int = 2,
        data_range: float = 1.0,
        win_size: int | Sequence[int] = 7,
    ) -> None:
        super().__init__()
        if kind not in RECONSTRUCTION_LOSS_KINDS:
            raise ValueError(f"kind must be one of {RECONSTRUCTION_LOSS_KINDS}, got {kind!r}")
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
        if not 0.0 <= ssim_weight <= 1.0:
            raise ValueError(f"ssim_weight must be in [0, 1], got {ssim_weight}")
        if kl_weight < 0:
            raise ValueError(f"kl_weight must be >= 0, got {kl_weight}")
        self.kind = kind
        self.ssim_weight = float(ssim_weight)
        self.kl_weight = float(kl_weight)
        self.reduction = reduction
        self.ssim = (
            SSIMLoss(spatial_dims=spatial_dims, data_range=data_range, win_size=win_size, reduction="none")
            if "ssim" in kind
            else None
        )

    def _per_sample_recon(self, recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.kind == "nll":
            c = target.shape[1]
            if recon.shape[1] != 2 * c or recon.shape[2:] != target.shape[2:]:
                raise ValueError(
                    f"loss 'nll' needs a mean and a log-variance per channel (2 x {c} channels), got an output of "
                    f"shape {tuple(recon.shape)} for a target of shape {tuple(target.shape)}"
                )
            recon, target = recon.float(), target.float()
            return heteroscedastic_nll(recon[:, :c], recon[:, c:], target).flatten(1).mean(dim=1)
        if recon.shape != target.shape:
            raise ValueError(f"reconstruction and target shapes differ: {tuple(recon.shape)} vs {tuple(target.shape)}")
        recon, target = recon.float(), target.float()
        if self.kind == "l2":
            return F.mse_loss(recon, target, reduction="none").flatten(1).mean(dim=1)
        l1 = F.l1_loss(recon, target, reduction="none").flatten(1).mean(dim=1) if "l1" in self.kind else None
        if self.ssim is None:
            return l1
        ssim = self.ssim(recon, target).reshape(recon.shape[0], -1).mean(dim=1)
        if l1 is None:
            return ssim
        return (1.0 - self.ssim_weight) * l1 + self.ssim_weight * ssim

    def _reduce(self, v: torch.Tensor) -> torch.Tensor:
        if self.reduction == "mean":
            return v.mean()
        if self.reduction == "sum":
            return v.sum()
        return v

    def compute_terms(
        self, pred: torch.Tensor | Sequence[torch.Tensor], target: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """The total loss and its parts, each reduced as configured.

        Args:
            pred: reconstruction tensor, or a VAE tuple ``(recon, mu, logvar, z)``.
            target: the image to reconstruct.

        Returns:
            ``{"loss": total, "recon_loss": reconstruction term, "kl_loss": KL term (0 for a plain tensor)}``; the
            KL term is unweighted, ``loss = recon_loss + kl_weight * kl_loss``.
        """
        if isinstance(pred, (tuple, list)):
            if len(pred) < 3:
                raise ValueError(f"a VAE prediction is (recon, mu, logvar[, z]), got a sequence of {len(pred)}")
            recon, mu, logvar = pred[0], pred[1], pred[2]
            kl = kl_divergence(mu.float(), logvar.float())
        else:
            recon, kl = pred, None
        rec = self._per_sample_recon(recon, target)
        if kl is None:
            kl = torch.zeros_like(rec)
        total = rec + self.kl_weight * kl
        return {"loss": self._reduce(total), "recon_loss": self._reduce(rec), "kl_loss": self._reduce(kl)}

    def forward(self, pred: torch.Tensor | Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        """The total loss (see :meth:`compute_terms`)."""
        return self.compute_terms(pred, target)["loss"]
