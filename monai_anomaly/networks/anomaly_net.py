"""Inference network of reconstruction methods: ``forward`` gives the anomaly map of the input."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn

from monai_anomaly.networks.classifier import SliceClassifier
from monai_anomaly.scoring.maps import MAP_METHODS, compute_anomaly_map
from monai_anomaly.utils.checkpoints import load_checkpoint
from monai_anomaly.utils.errors import BadInputError

__all__ = ["ReconstructionAnomalyNet"]


class ReconstructionAnomalyNet(nn.Module):
    """Wrap a trained autoencoder / VAE so that ``forward(x)`` returns the anomaly map ``(B, 1, H, W)``.

    The wrapped model's output (a reconstruction, or a VAE tuple whose first element is the reconstruction) is turned
    into a map by :func:`monai_anomaly.scoring.maps.compute_anomaly_map`. Put the model in eval mode for inference (a
    :class:`~monai_anomaly.networks.autoencoder.ConvVAE` then reconstructs from the posterior mean, deterministically).

    The model is stored as the ``model`` submodule, so this network's state dict is the autoencoder's with a
    ``model.`` prefix; loading a checkpoint of the bare autoencoder (keys without the prefix) works too: the missing
    prefix is added on load. That is what lets a bundle's ``network_def`` be this wrapper while ``models/model.pt``
    holds the trained autoencoder (``monai.bundle ckpt_export``, MONAI Label).

    Export: with ``map_method`` ``"abs"`` or ``"squared"`` the forward pass is plain tensor code and
    ``torch.jit.trace`` (``ckpt_export --use_trace True``) gives a model valid for any batch and image size; the
    ``"ssim"`` / ``"combined"`` maps loop over the batch in Python, so a traced model keeps the traced batch size
    (export with batch size 1, or use those maps outside the exported model).

    Args:
        model: the reconstruction network.
        map_method: ``"abs"``, ``"squared"``, ``"ssim"`` or ``"combined"``.
        smooth_sigma: Gaussian smoothing of the map, in pixels (0: none).
        weights: ``"combined"`` weights (``{"abs": .., "ssim": ..}``).
        win_size: SSIM window size.
        data_range: SSIM data range (``None``: per sample).

    Example:
        >>> import torch
        >>> from monai_anomaly.networks.autoencoder import ConvAutoEncoder
        >>> ae = ConvAutoEncoder(2, 1, 1, channels=(4, 8), strides=(2, 2))
        >>> net = ReconstructionAnomalyNet(ae, map_method="abs").eval()
        >>> net(torch.rand(2, 1, 32, 32)).shape
        torch.Size([2, 1, 32, 32])
        >>> _ = net.load_state_dict(ae.state_dict())  # a bare autoencoder checkpoint loads too
    """

    def __init__(
        self,
        model: nn.Module,
        map_method: str = "abs",
        smooth_sigma: float = 0.0,
        weights: Mapping[str, float] | Sequence[float] | None = None,
        win_size: int = 7,
        data_range: float | None = None,
    ) -> None:
        super().__init__()
        if map_method not in MAP_METHODS:
            raise ValueError(f"map_method must be one of {MAP_METHODS}, got {map_method!r}")
        if smooth_sigma < 0:
            raise ValueError(f"smooth_sigma must be >= 0, got {smooth_sigma}")
        self.model = model
        self.map_method = map_method
        self.smooth_sigma = float(smooth_sigma)
        self.weights = weights
        self.win_size = int(win_size)
        self.data_range = data_range
        self.register_load_state_dict_pre_hook(_add_model_prefix)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """The model's reconstruction of ``x`` (the first element of a VAE's output tuple)."""
        out = self.model(x)
        if isinstance(out, (tuple, list)):
            out = out[0]
        return out

    def anomaly_map(self, x: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
        """The configured anomaly map of ``x`` given its reconstruction."""
        return compute_anomaly_map(
            x,
            reconstruction,
            method=self.map_method,
            weights=self.weights,
            smooth_sigma=self.smooth_sigma,
            win_size=self.win_size,
            data_range=self.data_range,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Anomaly map ``(B, 1, *spatial)`` of the ``(B, C, *spatial)`` input.

        A model that makes its own map (the supervised :class:`~monai_anomaly.networks.classifier.SliceClassifier`:
        ``p(abnormal)`` times its Grad-CAM) is asked for it instead of a reconstruction.
        """
        if isinstance(self.model, SliceClassifier):
            return self.model.anomaly_map(x)
        return self.anomaly_map(x, self.reconstruct(x))

    @classmethod
    def from_checkpoint(
        cls, model: nn.Module, path: str | os.PathLike, key: str | None = None, map_location: Any = "cpu", **kwargs: Any
    ) -> ReconstructionAnomalyNet:
        """Build the wrapper around ``model`` and load trained weights from a checkpoint file.

        Args:
            model: an untrained instance of the reconstruction network (same architecture).
            path: a ``torch.save`` file: a bare state dict, or a ``CheckpointSaver`` dict holding it under ``key``.
            key: the key of the network in a nested checkpoint (e.g. ``"network"``); ``None`` tries ``"network"``,
                ``"model"`` and ``"net"`` and falls back to the whole file.
            map_location: ``torch.load`` map location.
            kwargs: the other arguments of the constructor (``map_method``...).

        Returns:
            the wrapper with the trained weights, in eval mode.
        """
        state = load_checkpoint(path, map_location=map_location)
        if key is not None:
            if key not in state:
                raise BadInputError(
                    path, f"is not a monai_anomaly model: the checkpoint has no {key!r} entry (keys: {sorted(state)})"
                )
            state = state[key]
        else:
            for k in ("network", "model", "net"):
                if k in state and isinstance(state[k], Mapping):
                    state = state[k]
                    break
        net = cls(model, **kwargs)
        net.load_state_dict(state)
        return net.eval()


def _add_model_prefix(
    module: nn.Module,
    state_dict: dict[str, Any],
    prefix: str,
    local_metadata: Any,
    strict: bool,
    missing_keys: list,
    unexpected_keys: list,
    error_msgs: list,
) -> None:
    """Load-state-dict pre-hook: a bare model's keys (no ``model.`` prefix) get the prefix."""
    own = [k for k in state_dict if k.startswith(prefix)]
    if not own or any(k.startswith(prefix + "model.") for k in own):
        return
    for k in own:
        state_dict[prefix + "model." + k[len(prefix) :]] = state_dict.pop(k)
