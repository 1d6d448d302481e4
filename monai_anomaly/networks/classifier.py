"""The supervised reference: a MONAI ResNet18 slice classifier whose anomaly map is its Grad-CAM.

Not an unsupervised method: it is trained with cross-entropy on labelled normal and abnormal slices and shown next to
the unsupervised methods as the upper bound a labelled data set would give (issue: reference baselines).
"""

from __future__ import annotations

import torch
import torch.nn as nn
from monai.networks.nets import resnet18
from monai.visualize import GradCAM

from monai_anomaly.utils.enums import AnomalyKeys

__all__ = ["SliceClassifier", "ABNORMAL_CLASS"]

ABNORMAL_CLASS = 1


class SliceClassifier(nn.Module):
    """MONAI ``resnet18`` (1 input channel, 2 classes, random initialisation: nothing is downloaded).

    ``forward(x)`` gives the logits ``(B, 2)`` (class 1: abnormal), so MONAI's ``SupervisedTrainer`` trains it with
    cross-entropy as it is. :meth:`anomaly_map` gives the map the scoring pipeline reads: ``p(abnormal) * cam``, where
    ``cam`` is MONAI's Grad-CAM of the abnormal class on the last residual stage, scaled to a peak of 1 per slice. A
    slice's ``"max"`` score over its foreground is therefore ``p(abnormal)`` whenever the Grad-CAM peak lies inside the
    body (the bundle scores it that way); evidence the network found outside the body lowers the score.

    Args:
        spatial_dims: 2 for slices (3 for whole volumes).
        in_channels: input channels.

    Example:
        >>> net = SliceClassifier().eval()
        >>> net(torch.zeros(2, 1, 32, 32)).shape, net.anomaly_map(torch.rand(2, 1, 32, 32)).shape
        (torch.Size([2, 2]), torch.Size([2, 1, 32, 32]))
    """

    def __init__(self, spatial_dims: int = 2, in_channels: int = 1) -> None:
        super().__init__()
        self.net = resnet18(
            pretrained=False, spatial_dims=spatial_dims, n_input_channels=in_channels, num_classes=2, feed_forward=True
        )
        self._cam: GradCAM | None = None  # built at first use: its hooks stay on the network, so only once

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def anomaly_outputs(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"logits": (B, 2), "anomaly_map": (B, 1, *spatial)}``: this method's own map (see :meth:`anomaly_map`),
        what :class:`~monai_anomaly.networks.anomaly_net.AnomalyMapNet` asks a network that makes its own map for.

        Raises:
            RuntimeError: under ``torch.jit`` tracing or scripting (``ckpt_export``): Grad-CAM needs autograd when it
                runs, which an exported graph does not have.
        """
        if torch.jit.is_tracing() or torch.jit.is_scripting():
            raise RuntimeError(
                "the supervised reference cannot be exported to TorchScript: its map is Grad-CAM, which needs "
                "autograd at run time; serve it with `python -m monai.bundle run` (inference.json), `infer` or "
                "MONAI Label"
            )
        logits = self.net(x)
        return {AnomalyKeys.LOGITS: logits, AnomalyKeys.ANOMALY_MAP: self.anomaly_map(x, logits=logits)}

    def probability(self, x: torch.Tensor) -> torch.Tensor:
        """``p(abnormal)`` per sample, ``(B,)``."""
        return torch.softmax(self.net(x).float(), dim=1)[:, ABNORMAL_CLASS]

    def anomaly_map(self, x: torch.Tensor, logits: torch.Tensor | None = None) -> torch.Tensor:
        """``p(abnormal)`` times the abnormal class's Grad-CAM (peak 1 per slice), ``(B, 1, *spatial)``.

        ``logits``: this network's eval-mode logits of ``x`` when the caller has them already (one forward pass less).

        Grad-CAM needs gradients, so they are enabled here even under ``torch.no_grad`` (evaluation); the network's
        parameter gradients are cleared afterwards and its train/eval mode is restored.
        """
        training = self.training
        self.eval()
        with torch.no_grad():
            if logits is None:
                prob = self.probability(x)
            else:
                prob = torch.softmax(logits.detach().float(), dim=1)[:, ABNORMAL_CLASS]
        with torch.enable_grad():
            if self._cam is None:
                self._cam = GradCAM(nn_module=self.net, target_layers="layer4")
            cam = self._cam(x.detach().float(), class_idx=ABNORMAL_CLASS)
        self.net.zero_grad(set_to_none=True)
        self.train(training)
        cam = torch.nan_to_num(cam.detach().to(x.device).float(), nan=0.0)
        peak = cam.flatten(1).amax(dim=1).clamp_min(1e-12).view(-1, *([1] * (cam.ndim - 1)))
        cam = torch.where(peak > 1e-6, cam / peak, torch.ones_like(cam))  # a flat CAM: the evidence is everywhere
        return prob.view(-1, *([1] * (cam.ndim - 1))) * cam
