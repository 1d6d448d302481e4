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

from monai_anomaly.scoring.maps import MAP_CALIBRATIONS, MAP_METHODS, compute_anomaly_map, mask_outside
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

    With ``calibration="normative"`` the map of a reconstruction method is calibrated against normal anatomy: each
    pixel's residual becomes its z-score ``max(0, (m - mean) / std)`` against the per-pixel mean and std of the maps
    of normal validation images (:meth:`fit_normative`, done by
    :class:`~monai_anomaly.handlers.calibration.NormativeMapFitter` at every validation; the statistics are buffers,
    so they are saved in ``model.pt`` and kept by an export). Residuals that are high on every normal image (edges,
    the head outline, texture) then stop ranking first. Until fitted, the map is the raw one.

    The wrapped network is the ``model`` submodule, so this module's state dict is the network's with a ``model.``
    prefix; a bare network's state dict (no prefix) loads too.

    Args:
        model: the method's network.
        map_method: residual map of a reconstruction (:data:`~monai_anomaly.scoring.maps.MAP_METHODS`).
        smooth_sigma: Gaussian smoothing of the map, in pixels (0: none).
        weights: ``"combined"`` weights (``{"abs": .., "ssim": ..}``).
        win_size: SSIM window size.
        data_range: SSIM data range (``None``: per sample).
        calibration: ``"none"`` or ``"normative"`` (:data:`~monai_anomaly.scoring.maps.MAP_CALIBRATIONS`).
        image_size: the side of the (square) training images: the shape of the normative statistics.
        perceptual: for ``map_method="perceptual"``, the frozen feature-space distance
            (:class:`~monai_anomaly.losses.perceptual.PerceptualMap`); a submodule, so its weights are saved with the
            model and every door rebuilds the same map from ``model.pt``.

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
        calibration: str = "none",
        image_size: int | None = None,
        perceptual: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if map_method not in MAP_METHODS:
            raise ValueError(f"map_method must be one of {MAP_METHODS}, got {map_method!r}")
        if map_method == "perceptual" and perceptual is None:
            raise ValueError(
                "map_method 'perceptual' needs perceptual=PerceptualMap(...) (a feature network the user gives)"
            )
        # the map method "perceptual": a frozen feature network, saved with the model (monai_anomaly.losses.perceptual)
        self.perceptual = perceptual if map_method == "perceptual" else None
        if calibration not in MAP_CALIBRATIONS:
            raise ValueError(f"calibration must be one of {MAP_CALIBRATIONS}, got {calibration!r}")
        if calibration == "normative" and not image_size:
            raise ValueError("calibration 'normative' needs image_size (the side of the training images)")
        self.calibration = calibration
        if calibration == "normative":
            size = (1, 1, int(image_size), int(image_size))
            self.register_buffer("normative_mean", torch.zeros(size))
            self.register_buffer("normative_std", torch.ones(size))
            self.register_buffer("normative_count", torch.zeros((), dtype=torch.long))
        if smooth_sigma < 0:
            raise ValueError(f"smooth_sigma must be >= 0, got {smooth_sigma}")
        self.model = model
        self.map_method = map_method
        self.smooth_sigma = float(smooth_sigma)
        self.weights = weights
        self.win_size = int(win_size)
        self.data_range = data_range
        self.register_load_state_dict_pre_hook(_add_model_prefix)

    @property
    def normative_fitted(self) -> bool:
        """Whether normative statistics are fitted (and applied by :meth:`predict`)."""
        return self.calibration == "normative" and int(self.normative_count) > 0

    def predict(
        self, x: torch.Tensor, foreground: torch.Tensor | None = None, calibrated: bool = True
    ) -> dict[str, torch.Tensor]:
        """The method's outputs for a ``(B, C, *spatial)`` batch.

        Args:
            x: the normalised input batch, at the size the network was trained on.
            foreground: optional mask broadcastable to ``(B, 1, *spatial)``; the map is 0 outside it.
            calibrated: apply the fitted normative calibration (``False``: the raw map, which is what
                :meth:`fit_normative` takes).

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
        normative = calibrated and self.normative_fitted
        amap = compute_anomaly_map(
            x,
            recon,
            method=self.map_method,
            weights=self.weights,
            smooth_sigma=self.smooth_sigma,
            foreground=None if normative else foreground,
            win_size=self.win_size,
            data_range=self.data_range,
            log_variance=log_variance,
            distance=self.perceptual,
        )
        if normative:
            amap = ((amap - self.normative_mean) / self.normative_std).clamp_min(0.0)
            if foreground is not None:
                amap = mask_outside(amap, foreground)
        return {AnomalyKeys.ANOMALY_MAP: amap, AnomalyKeys.RECONSTRUCTION: recon}

    @torch.no_grad()
    def fit_normative(self, total: torch.Tensor, total_sq: torch.Tensor, count: int) -> None:
        """Set the normative statistics from the sums over ``count`` raw maps of normal validation images.

        Args:
            total: ``(1, 1, *spatial)`` sum of the maps (:meth:`predict` with ``calibrated=False``, no mask).
            total_sq: the sum of their squares.
            count: the number of maps (0 leaves the model uncalibrated).

        The std is floored at a tenth of its median over the pixels, so a pixel that is near-constant on normals
        (background) does not turn a small residual into a huge z-score.
        """
        if self.calibration != "normative":
            raise ValueError("fit_normative needs calibration='normative'")
        if count <= 0:
            self.normative_count.zero_()
            return
        mean = total.double() / count
        var = (total_sq.double() / count - mean**2).clamp_min(0.0) * (count / max(count - 1, 1))
        std = var.sqrt()
        std = std.clamp_min(max(float(std.median()) * 0.1, 1e-8))
        self.normative_mean.copy_(mean.to(self.normative_mean))
        self.normative_std.copy_(std.to(self.normative_std))
        self.normative_count.fill_(int(count))

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
    """Load-state-dict pre-hook: a bare model's keys (no ``model.`` prefix) get the prefix; a checkpoint saved
    without normative statistics loads uncalibrated."""
    if getattr(module, "calibration", "none") == "normative" and prefix + "normative_count" not in state_dict:
        state_dict[prefix + "normative_mean"] = torch.zeros_like(module.normative_mean)
        state_dict[prefix + "normative_std"] = torch.ones_like(module.normative_std)
        state_dict[prefix + "normative_count"] = torch.zeros((), dtype=torch.long)
    own = [k for k in state_dict if k.startswith(prefix) and not k.startswith(prefix + "normative_")]
    if not own or any(k.startswith(prefix + "model.") for k in own):
        return
    for k in own:
        state_dict[prefix + "model." + k[len(prefix) :]] = state_dict.pop(k)
