"""The anomaly model every door calls: ``predict(x)`` gives the anomaly map (and the reconstruction or logits).

Validation, ``evaluate``, ``infer``, ``monai.bundle run``, MONAI Label, ``ckpt_export`` and the reports all go through
:class:`AnomalyMapNet`, so a slice gets the same map whichever command scored it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn

from monai_anomaly.scoring.maps import MAP_METHODS, compute_anomaly_map, mask_outside
from monai_anomaly.utils.checkpoints import load_checkpoint
from monai_anomaly.utils.enums import AnomalyKeys
from monai_anomaly.utils.errors import BadInputError

__all__ = ["AnomalyMapNet", "split_prediction"]


def split_prediction(out: Any, channels: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(reconstruction, log_variance or None)`` of a reconstruction network's output for a ``channels``-channel input.

    A VAE's tuple gives its first element; a tensor with twice the input's channels is a mean and a per-pixel
    log-variance (AE-U, ``model_type`` ``"aeu"``: means first); any other tensor is the reconstruction.

    Example:
        >>> rec, lv = split_prediction(torch.zeros(2, 2, 4, 4), channels=1)
        >>> tuple(rec.shape), tuple(lv.shape), split_prediction(torch.zeros(2, 1, 4, 4), 1)[1]
        ((2, 1, 4, 4), (2, 1, 4, 4), None)
    """
    if isinstance(out, (tuple, list)):  # a VAE's (reconstruction, mu, logvar, z)
        return out[0], None
    if out.ndim >= 2 and out.shape[1] == 2 * channels:
        return out[:, :channels], out[:, channels:]
    return out, None


class AnomalyMapNet(nn.Module):
    """A method's network and its map function: ``predict(x)`` -> ``{anomaly_map, reconstruction | logits}``.

    The map function is the method's:

    - a network that makes its own map (it has ``anomaly_outputs(x)``, returning a dict with ``anomaly_map`` and,
      for the supervised :class:`~monai_anomaly.networks.classifier.SliceClassifier`, ``logits``: ``p(abnormal)``
      times Grad-CAM) is asked for it;
    - any other network is a healthy reconstruction (its output, the first element of a VAE's tuple, or the mean of a
      network that also predicts a per-pixel log-variance: :func:`split_prediction`) and the map is the residual
      :func:`~monai_anomaly.scoring.maps.compute_anomaly_map` of ``map_method`` (``"variance_normalised"`` uses the
      predicted variance).

    A ``foreground`` mask given to :meth:`predict` zeroes the map outside it (after smoothing), so validation,
    evaluation and inference score the same pixels. ``forward(x)`` is ``predict(x)["anomaly_map"]`` without a mask:
    plain tensor code for ``"abs"`` / ``"squared"`` / ``"squared_rel"`` maps, traceable for export
    (``ckpt_export --use_trace True``); the mask is applied after the exported model, by multiplication.

    The wrapped network is the ``model`` submodule, so this module's state dict is the network's with a ``model.``
    prefix; a bare network's state dict (no prefix) loads too.

    Args:
        model: the method's network.
        map_method: residual map of a reconstruction (:data:`~monai_anomaly.scoring.maps.MAP_METHODS`).
        smooth_sigma: Gaussian smoothing of the map, in pixels (0: none).
        weights: ``"combined"`` weights (``{"abs": .., "ssim": ..}``).
        win_size: SSIM window size.
        data_range: SSIM data range (``None``: per sample).

    Example:
        >>> import torch
        >>> from monai_anomaly.networks.autoencoder import ConvAutoEncoder
        >>> ae = ConvAutoEncoder(2, 1, 1, channels=(4, 8), strides=(2, 2))
        >>> net = AnomalyMapNet(ae, map_method="abs").eval()
        >>> out = net.predict(torch.rand(2, 1, 32, 32))
        >>> sorted(map(str, out)), tuple(net(torch.rand(2, 1, 32, 32)).shape)
        (['anomaly_map', 'reconstruction'], (2, 1, 32, 32))
        >>> _ = net.load_state_dict(ae.state_dict())  # a bare network's checkpoint loads too
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

    def predict(self, x: torch.Tensor, foreground: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The method's outputs for a ``(B, C, *spatial)`` batch.

        Args:
            x: the normalised input batch, at the size the network was trained on.
            foreground: optional mask broadcastable to ``(B, 1, *spatial)``; the map is 0 outside it.

        Returns:
            ``{"anomaly_map": (B, 1, *spatial), "reconstruction": ...}`` for reconstruction methods,
            ``{"anomaly_map": ..., "logits": (B, classes)}`` for a network with its own map.
        """
        own = getattr(self.model, "anomaly_outputs", None)
        if callable(own):
            out = dict(own(x))
            if foreground is not None:
                out[AnomalyKeys.ANOMALY_MAP] = mask_outside(out[AnomalyKeys.ANOMALY_MAP], foreground)
            return out
        recon, log_variance = split_prediction(self.model(x), x.shape[1])
        amap = compute_anomaly_map(
            x,
            recon,
            method=self.map_method,
            weights=self.weights,
            smooth_sigma=self.smooth_sigma,
            foreground=foreground,
            win_size=self.win_size,
            data_range=self.data_range,
            log_variance=log_variance,
        )
        return {AnomalyKeys.ANOMALY_MAP: amap, AnomalyKeys.RECONSTRUCTION: recon}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The anomaly map ``(B, 1, *spatial)`` of ``x`` (no foreground mask)."""
        return self.predict(x)[AnomalyKeys.ANOMALY_MAP]

    @classmethod
    def from_checkpoint(
        cls, model: nn.Module, path: str | os.PathLike, key: str | None = None, map_location: Any = "cpu", **kwargs: Any
    ) -> AnomalyMapNet:
        """Build the model around ``model`` and load trained weights from a checkpoint file.

        Args:
            model: an untrained instance of the method's network (same architecture).
            path: a ``torch.save`` file: a bare state dict, or a ``CheckpointSaver`` dict holding it under ``key``.
            key: the key of the network in a nested checkpoint (e.g. ``"model"``); ``None`` tries ``"network"``,
                ``"model"`` and ``"net"`` and falls back to the whole file.
            map_location: ``torch.load`` map location.
            kwargs: the other arguments of the constructor (``map_method``...).

        Returns:
            the model with the trained weights, in eval mode.
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
