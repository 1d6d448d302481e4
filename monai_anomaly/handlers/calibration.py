"""Fit the anomaly model's normative map calibration on the normal validation images, before each validation."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
from monai.utils import IgniteInfo, min_version, optional_import

from monai_anomaly.utils.enums import AnomalyKeys

Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")
idist, _ = optional_import("ignite.distributed")
if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import(
        "ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine", as_type="decorator"
    )

__all__ = ["NormativeMapFitter"]

logger = logging.getLogger("monai_anomaly")


class NormativeMapFitter:
    """Before each validation run, fit the per-pixel normative statistics of an
    :class:`~monai_anomaly.networks.anomaly_net.AnomalyMapNet` built with ``calibration="normative"``.

    Attached to the validation evaluator (``Events.STARTED``), it runs the current network over ``data_loader`` (the
    validation loader), takes the raw maps (``predict(x, calibrated=False)``, no mask) of the normal slices (label 0,
    or no label) and sets the model's per-pixel mean and std (:meth:`~AnomalyMapNet.fit_normative`). The validation
    that follows scores calibrated maps, so the threshold is fitted on the same maps evaluation and inference use, and
    the checkpoint saved after it holds the statistics. Under ``torch.distributed`` the sums are all-reduced. Test
    data never reaches it: it is attached only in ``train.json``.

    Args:
        network: the anomaly model (DDP-wrapped or not).
        data_loader: the validation loader (dicts with ``image``, ``label`` and optionally ``foreground``).
        device: where the network runs.
        enabled: ``False`` does nothing (the bundle's ``map_calibration`` is ``"none"``).
        image_key: the image key of a batch.
        label_key: the label key of a batch.

    Example:
        >>> import torch
        >>> from monai_anomaly.networks.anomaly_net import AnomalyMapNet
        >>> net = AnomalyMapNet(torch.nn.Identity(), calibration="normative", image_size=4)
        >>> loader = [{"image": torch.rand(8, 1, 4, 4), "label": torch.zeros(8)}]
        >>> NormativeMapFitter(net, loader, "cpu")(None)
        >>> net.normative_fitted
        True
    """

    def __init__(
        self,
        network: torch.nn.Module,
        data_loader: Any,
        device: str | torch.device = "cpu",
        enabled: bool = True,
        image_key: str = AnomalyKeys.IMAGE,
        label_key: str = AnomalyKeys.LABEL,
    ) -> None:
        self.network = network
        self.data_loader = data_loader
        self.device = torch.device(device)
        self.enabled = bool(enabled)
        self.image_key = image_key
        self.label_key = label_key
        self.count = 0

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self)

    @torch.no_grad()
    def __call__(self, engine: Engine | None) -> None:
        model = getattr(self.network, "module", self.network)
        if not self.enabled or getattr(model, "calibration", "none") != "normative":
            return
        was_training = model.training
        model.eval()
        total = total_sq = None
        count = 0
        try:
            for batch in self.data_loader:
                x = batch[self.image_key] if isinstance(batch, Mapping) else batch[0]
                x = torch.as_tensor(x).to(self.device)
                label = batch.get(self.label_key) if isinstance(batch, Mapping) else None
                keep = torch.ones(x.shape[0], dtype=torch.bool)
                if label is not None:
                    keep = torch.as_tensor(label).reshape(-1).cpu() == 0
                if not bool(keep.any()):
                    continue
                m = model.predict(x[keep.to(x.device)], calibrated=False)[AnomalyKeys.ANOMALY_MAP].double()
                s, sq = m.sum(0, keepdim=True), (m * m).sum(0, keepdim=True)
                total = s if total is None else total + s
                total_sq = sq if total_sq is None else total_sq + sq
                count += int(m.shape[0])
        finally:
            model.train(was_training)
        if idist.get_world_size() > 1:
            if total is None:  # this rank had no normal slice: contribute zeros
                shape = (1, 1, *model.normative_mean.shape[2:])
                total = torch.zeros(shape, dtype=torch.float64, device=self.device)
                total_sq = torch.zeros_like(total)
            total, total_sq = idist.all_reduce(total), idist.all_reduce(total_sq)
            count = int(idist.all_reduce(torch.tensor(count, device=self.device)))
        if count == 0:
            logger.warning("normative calibration: no normal validation slice; the maps stay uncalibrated")
            model.fit_normative(torch.zeros(1), torch.zeros(1), 0)
            return
        model.fit_normative(total, total_sq, count)
        self.count = count
