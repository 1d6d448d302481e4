"""The evaluator of every method: per-slice output contract, slice scores and ``val_normal_loss``."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from monai.engines import SupervisedEvaluator
from monai.engines.utils import IterationEvents, default_metric_cmp_fn
from monai.inferers import Inferer
from monai.transforms import Transform
from monai.utils import ForwardMode, IgniteInfo, min_version, optional_import
from torch.utils.data import DataLoader

from monai_anomaly.engines.utils import LossKeys, PrepareBatchReconstruction, lower_is_better, unpack_batch
from monai_anomaly.losses.reconstruction import ReconstructionLoss
from monai_anomaly.scoring.maps import MAP_NORMALISATIONS, erode_mask, normalise_map
from monai_anomaly.scoring.slice_scores import SCORE_REGIONS, SLICE_SCORE_METHODS, score_slices
from monai_anomaly.utils.dist import rank_world
from monai_anomaly.utils.enums import AnomalyKeys

if TYPE_CHECKING:
    from ignite.engine import Engine, EventEnum
    from ignite.metrics import Metric
else:
    Engine, _ = optional_import(
        "ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine", as_type="decorator"
    )
    Metric, _ = optional_import("ignite.metrics", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Metric", as_type="base")
    EventEnum, _ = optional_import(
        "ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "EventEnum", as_type="base"
    )
reinit__is_reduced, _ = optional_import(
    "ignite.metrics.metric", IgniteInfo.OPT_IMPORT_VERSION, min_version, "reinit__is_reduced", as_type="decorator"
)
sync_all_reduce, _ = optional_import(
    "ignite.metrics.metric", IgniteInfo.OPT_IMPORT_VERSION, min_version, "sync_all_reduce", as_type="decorator"
)

__all__ = ["VAL_NORMAL_LOSS", "AnomalyEvaluator", "NormalValidationLoss"]

logger = logging.getLogger("monai_anomaly")

VAL_NORMAL_LOSS = "val_normal_loss"


def _flat(v: Any, n: int, default: float) -> torch.Tensor:
    """A value per sample as a float64 CPU tensor of length ``n`` (``default`` where absent)."""
    if v is None:
        return torch.full((n,), float(default), dtype=torch.float64)
    if isinstance(v, torch.Tensor):
        return v.detach().cpu().reshape(-1).to(torch.float64)
    if isinstance(v, (list, tuple)):
        return torch.as_tensor([float(_flat(i, 1, default)[0]) for i in v], dtype=torch.float64)
    return torch.as_tensor([float(v)], dtype=torch.float64)


def _losses_and_labels(output: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample ``val_loss`` and ``label`` of an evaluator output (batched dict or list of per-sample dicts)."""
    items = output if isinstance(output, (list, tuple)) else [output]
    losses, labels = [], []
    for item in items:
        if not isinstance(item, Mapping) or LossKeys.VAL_LOSS not in item:
            continue
        loss = _flat(item[LossKeys.VAL_LOSS], 1, math.nan)
        losses.append(loss)
        labels.append(_flat(item.get(AnomalyKeys.LABEL), loss.numel(), 0))
    if not losses:
        return torch.zeros(0, dtype=torch.float64), torch.zeros(0, dtype=torch.float64)
    return torch.cat(losses), torch.cat(labels)


class NormalValidationLoss(Metric):
    """Mean per-sample validation loss over the NORMAL samples (label 0) of a run; lower is better.

    Reads ``val_loss`` and ``label`` from the evaluator output (samples without a label count as normal, labels 1
    and -1 are left out). This is :class:`AnomalyEvaluator`'s default key metric ``val_normal_loss``: it
    needs no anomalies in the validation split, so it works for checkpoint selection and early stopping on a
    normal-only validation set (use ``CheckpointSaver(key_metric_negative_sign=True)`` and
    ``EarlyStopHandler(score_function=lambda e: -e.state.metrics["val_normal_loss"])``).

    Args:
        output_transform: turns ``engine.state.output`` into ``(losses, labels)`` tensors.
        device: where the sums live (distributed reduction).

    Example:
        >>> import torch
        >>> m = NormalValidationLoss()
        >>> m.update((torch.tensor([0.1, 0.9, 0.3]), torch.tensor([0, 1, 0])))
        >>> round(m.compute(), 6)
        0.2
    """

    def __init__(
        self,
        output_transform: Callable[[Any], tuple[torch.Tensor, torch.Tensor]] = _losses_and_labels,
        device: str | torch.device = "cpu",
    ) -> None:
        super().__init__(output_transform=output_transform, device=device)

    @reinit__is_reduced
    def reset(self) -> None:
        self._sum = torch.zeros((), dtype=torch.float64, device=self._device)
        self._num = torch.zeros((), dtype=torch.float64, device=self._device)

    @reinit__is_reduced
    def update(self, output: tuple[torch.Tensor, torch.Tensor]) -> None:
        losses, labels = output
        losses = torch.as_tensor(losses, dtype=torch.float64).detach().reshape(-1).to(self._device)
        labels = torch.as_tensor(labels, dtype=torch.float64).detach().reshape(-1).to(self._device)
        keep = (labels == 0) & torch.isfinite(losses)
        self._sum += losses[keep].sum()
        self._num += keep.sum()

    @sync_all_reduce("_sum", "_num")
    def compute(self) -> float:
        if float(self._num) == 0:
            logger.warning("val_normal_loss: no normal (label 0) samples in this run; the metric is NaN")
            return math.nan
        return float(self._sum / self._num)


class AnomalyEvaluator(SupervisedEvaluator):
    """MONAI :class:`~monai.engines.SupervisedEvaluator` of every method, on 2D slices at the training size.

    Per batch it calls the anomaly model's :meth:`~monai_anomaly.networks.anomaly_net.AnomalyMapNet.predict` (the
    same call as ``infer``, MONAI Label and the exported model) and the one slice scorer
    :func:`~monai_anomaly.scoring.slice_scores.score_slices`; ``engine.state.output`` holds (keys
    :class:`~monai_anomaly.utils.enums.AnomalyKeys`) ``image``, ``reconstruction`` (the input for a method without
    one), ``anomaly_map`` ``(B, 1, H, W)``, ``score`` ``(B,)``, ``label`` (``-1`` when the batch has none),
    ``volume_id``, ``slice_index`` and ``val_loss`` (per-sample validation loss: L1 reconstruction error, or the
    cross-entropy of a method with logits on its labelled slices); with ``decollate=True`` (default) it becomes one
    dict per sample, which is what :class:`~monai_anomaly.handlers.scores.AnomalyScoreCollector` and
    :class:`~monai_anomaly.handlers.thresholds.ThresholdFitter` read.

    Unless ``key_val_metric`` is given, the key metric is ``val_normal_loss`` (:class:`NormalValidationLoss`: the
    mean validation loss over the normal slices, lower is better).

    Args:
        device: device to evaluate on.
        val_data_loader: loader of dictionary batches (``image``, ``foreground``, ``label``, ``volume_id``...).
        network: the anomaly model (:class:`~monai_anomaly.networks.anomaly_net.AnomalyMapNet`, possibly in DDP).
        score_method: one of :data:`~monai_anomaly.scoring.slice_scores.SLICE_SCORE_METHODS`.
        score_kwargs: ``k`` / ``q`` of the slice score.
        foreground_key: batch key of a foreground mask: the map is 0 outside it.
        foreground_erosion: erode that mask by this many pixels first (the rim of the head or brain, whose residual
            is high on every image, is not scored).
        map_normalisation: ``"none"`` or ``"complexity"`` (each slice's map divided by its input's detail energy over
            the uneroded foreground: :func:`~monai_anomaly.scoring.maps.normalise_map`), after the model's map.
        score_region: ``"foreground"`` or ``"image"`` (see :func:`~monai_anomaly.scoring.slice_scores.score_slices`).
        loss_function: per-sample reconstruction loss (``reduction="none"``); default ``ReconstructionLoss("l1",
            reduction="none")``.
        image_key: the image key, used by the default ``prepare_batch``.
        prepare_batch: strategy turning a batch into ``(inputs, targets)``.
        key_val_metric: overrides the ``val_normal_loss`` key metric.
        metric_cmp_fn: comparison of the key metric (default: lower is better when the default key metric is used).
        fixed_batch: fill a short batch up to the loader's ``batch_size`` (copies of its last sample, dropped after
            the forward pass), so every sample is computed in a batch of one size: CPU kernels can round differently
            for another batch size (1e-7..1e-6 in this project's autoencoder output for 1, 3 or 7 against 32), so
            this makes scores independent of where batches break (e.g. over several processes), at the cost of
            computing the filling (off by default: costly for the diffusion models' validation).
        kwargs: other arguments of :class:`~monai.engines.SupervisedEvaluator` (``val_handlers``, ``amp``...).

    Example:
        >>> import torch
        >>> from monai_anomaly.networks.anomaly_net import AnomalyMapNet
        >>> from monai_anomaly.networks.autoencoder import ConvAutoEncoder
        >>> net = AnomalyMapNet(ConvAutoEncoder(2, 1, 1, channels=(4, 8), strides=(2, 2)), map_method="abs")
        >>> data = [{"image": torch.rand(2, 1, 16, 16), "label": torch.tensor([0, 1]), "volume_id": ["a", "b"],
        ...          "slice_index": torch.tensor([0, 3])}]
        >>> ev = AnomalyEvaluator("cpu", data, net, score_method="max")
        >>> ev.run()
        >>> sorted(map(str, ev.state.output[0]))[:4], "val_normal_loss" in ev.state.metrics
        (['anomaly_map', 'image', 'label', 'reconstruction'], True)
    """

    def __init__(
        self,
        device: str | torch.device,
        val_data_loader: Iterable | DataLoader,
        network: torch.nn.Module,
        score_method: str = "mean",
        score_kwargs: Mapping[str, Any] | None = None,
        foreground_key: str | None = None,
        foreground_erosion: int = 0,
        map_normalisation: str = "none",
        score_region: str = "foreground",
        loss_function: Callable | None = None,
        image_key: str = AnomalyKeys.IMAGE,
        prepare_batch: Callable | None = None,
        epoch_length: int | None = None,
        non_blocking: bool = False,
        iteration_update: Callable[[Engine, Any], Any] | None = None,
        inferer: Inferer | None = None,
        postprocessing: Transform | None = None,
        key_val_metric: dict[str, Metric] | None = None,
        additional_metrics: dict[str, Metric] | None = None,
        metric_cmp_fn: Callable | None = None,
        val_handlers: Sequence | None = None,
        amp: bool = False,
        mode: ForwardMode | str = ForwardMode.EVAL,
        event_names: list[str | EventEnum | type[EventEnum]] | None = None,
        event_to_attr: dict | None = None,
        decollate: bool = True,
        to_kwargs: dict | None = None,
        amp_kwargs: dict | None = None,
        fixed_batch: bool = False,
    ) -> None:
        if score_method not in SLICE_SCORE_METHODS:
            raise ValueError(f"score_method must be one of {SLICE_SCORE_METHODS}, got {score_method!r}")
        if score_region not in SCORE_REGIONS:
            raise ValueError(f"score_region must be one of {SCORE_REGIONS}, got {score_region!r}")
        if map_normalisation not in MAP_NORMALISATIONS:
            raise ValueError(f"map_normalisation must be one of {MAP_NORMALISATIONS}, got {map_normalisation!r}")
        if not callable(getattr(getattr(network, "module", network), "predict", None)):
            raise TypeError(
                f"network must be an anomaly model with predict(x) (AnomalyMapNet), got {type(network).__name__}"
            )
        dev = torch.device(device)
        if amp and dev.type != "cuda":
            amp = False
        if key_val_metric is None:
            key_val_metric = {VAL_NORMAL_LOSS: NormalValidationLoss()}
            metric_cmp_fn = lower_is_better if metric_cmp_fn is None else metric_cmp_fn
        elif metric_cmp_fn is None:
            metric_cmp_fn = default_metric_cmp_fn
        super().__init__(
            device=dev,
            val_data_loader=val_data_loader,
            network=network,
            epoch_length=epoch_length,
            non_blocking=non_blocking,
            prepare_batch=PrepareBatchReconstruction(image_key) if prepare_batch is None else prepare_batch,
            iteration_update=iteration_update,
            inferer=inferer,
            postprocessing=postprocessing,
            key_val_metric=key_val_metric,
            additional_metrics=additional_metrics,
            metric_cmp_fn=metric_cmp_fn,
            val_handlers=val_handlers,
            amp=amp,
            mode=mode,
            event_names=event_names,
            event_to_attr=event_to_attr,
            decollate=decollate,
            to_kwargs=to_kwargs,
            amp_kwargs={"dtype": torch.bfloat16} if amp_kwargs is None else amp_kwargs,
        )
        self.image_key = image_key
        self.score_method = score_method
        self.score_kwargs = dict(score_kwargs or {})
        self.score_region = score_region
        self.foreground_key = foreground_key
        self.foreground_erosion = int(foreground_erosion)
        self.map_normalisation = map_normalisation
        self.loss_fn = ReconstructionLoss("l1", reduction="none") if loss_function is None else loss_function
        self.fixed_batch = bool(fixed_batch)

    def run(self, global_epoch: int = 1) -> None:  # type: ignore[override]
        """Evaluate; under torch.distributed a rank whose share is empty (fewer volumes than ranks) still fires the
        run's events, so its handlers take part in the gathers (MONAI skips an empty run, and the other ranks would
        wait for it)."""
        if self.state.epoch_length == 0 and rank_world()[1] > 1:
            from ignite.engine import Events

            self.state.max_epochs, self.state.epoch, self.state.iteration = max(global_epoch, 1), global_epoch, 0
            for event in (Events.STARTED, Events.EPOCH_STARTED, Events.EPOCH_COMPLETED, Events.COMPLETED):
                self._fire_event(event)
            return
        super().run(global_epoch)

    @staticmethod
    def _batch_value(batchdata: Any, key: str) -> Any:
        return batchdata.get(key) if isinstance(batchdata, Mapping) else None

    def _iteration(self, engine: AnomalyEvaluator, batchdata: dict[str, torch.Tensor]) -> dict:
        """Predict one batch's anomaly maps and compute its slice scores and per-sample losses.

        Raises:
            ValueError: when ``batchdata`` is None.
        """
        inputs, targets, _, _ = unpack_batch(engine, batchdata)
        foreground = whole = None
        if engine.foreground_key is not None:
            whole = self._batch_value(batchdata, engine.foreground_key)
            if whole is None:
                raise KeyError(f"batch has no foreground key {engine.foreground_key!r}")
            whole = torch.as_tensor(whole).to(inputs.device)
            foreground = erode_mask(whole, engine.foreground_erosion)
        model = getattr(engine.network, "module", engine.network)  # DDP: the model itself (no gradients here)
        n = inputs.shape[0]
        size = getattr(engine.data_loader, "batch_size", None) if engine.fixed_batch else None
        pad = size - n if isinstance(size, int) and 0 < n < size else 0
        # a short batch is filled up to the loader's batch size with copies of its last sample: CPU kernels may
        # round differently for another batch size (1e-7..1e-6 measured), so every sample is computed in a batch of
        # the same size, and a run over several processes (other batch boundaries) gives the same scores as one
        x_in = torch.cat([inputs, inputs[-1:].expand(pad, *inputs.shape[1:])]) if pad else inputs
        fg_in = foreground
        if pad and foreground is not None:
            fg_in = torch.cat([foreground, foreground[-1:].expand(pad, *foreground.shape[1:])])
        with engine.mode(engine.network):
            if engine.amp:
                with torch.autocast(engine.state.device.type, **engine.amp_kwargs):
                    pred = model.predict(x_in, foreground=fg_in)
                pred = {k: v.float() for k, v in pred.items()}
            else:
                pred = model.predict(x_in, foreground=fg_in)
            if pad:
                pred = {
                    k: v[:n] if isinstance(v, torch.Tensor) and v.shape[:1] == (n + pad,) else v
                    for k, v in pred.items()
                }
            amap = normalise_map(pred[AnomalyKeys.ANOMALY_MAP], inputs, whole, engine.map_normalisation)
            scores = score_slices(amap, foreground, engine.score_method, engine.score_region, **engine.score_kwargs)
        label = self._batch_value(batchdata, AnomalyKeys.LABEL)
        label = torch.full((n,), -1, dtype=torch.long) if label is None else torch.as_tensor(label).reshape(-1)
        logits = pred.get(AnomalyKeys.LOGITS)
        recon = pred.get(AnomalyKeys.RECONSTRUCTION)
        if logits is not None:  # a method with logits: cross-entropy of its labelled slices, 0 for the others
            known = (label == 0) | (label == 1)
            target = torch.where(known, label, torch.zeros_like(label)).long().to(logits.device)
            val_loss = torch.nn.functional.cross_entropy(logits.float(), target, reduction="none")
            val_loss = val_loss * known.to(logits.device)
        else:
            with engine.mode(engine.network):
                val_loss = torch.as_tensor(engine.loss_fn(recon, targets)).detach().reshape(-1)
        volume_id = self._batch_value(batchdata, AnomalyKeys.VOLUME_ID)
        volume_id = [""] * n if volume_id is None else [str(v) for v in volume_id]
        slice_index = self._batch_value(batchdata, AnomalyKeys.SLICE_INDEX)
        slice_index = (
            torch.zeros(n, dtype=torch.long) if slice_index is None else torch.as_tensor(slice_index).reshape(-1)
        )
        engine.state.output = {
            AnomalyKeys.IMAGE: inputs,
            AnomalyKeys.RECONSTRUCTION: (inputs if recon is None else recon).detach(),
            AnomalyKeys.ANOMALY_MAP: amap.detach(),
            AnomalyKeys.SCORE: scores,
            AnomalyKeys.LABEL: label,
            AnomalyKeys.VOLUME_ID: volume_id,
            AnomalyKeys.SLICE_INDEX: slice_index,
            LossKeys.VAL_LOSS: val_loss.detach(),
        }
        if foreground is not None:
            engine.state.output[AnomalyKeys.FOREGROUND] = foreground
        for key in (AnomalyKeys.ROLE, AnomalyKeys.TRUE_LABEL):  # for AUCp: which samples are unannotated
            value = self._batch_value(batchdata, key)
            if value is not None:
                engine.state.output[key] = [str(v) for v in value] if key == AnomalyKeys.ROLE else value
        engine.fire_event(IterationEvents.FORWARD_COMPLETED)
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return engine.state.output
