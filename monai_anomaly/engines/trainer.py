"""Trainer of reconstruction-based anomaly detectors (autoencoders, VAEs): the target is the input itself."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from monai.engines import SupervisedTrainer
from monai.engines.utils import IterationEvents, default_metric_cmp_fn
from monai.inferers import Inferer
from monai.transforms import Transform
from monai.utils import CommonKeys, IgniteInfo, min_version, optional_import
from torch.optim.optimizer import Optimizer
from torch.utils.data import DataLoader

from monai_anomaly.engines.utils import LossKeys, PrepareBatchReconstruction, unpack_batch
from monai_anomaly.losses.reconstruction import ReconstructionLoss
from monai_anomaly.networks.anomaly_net import split_prediction
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

__all__ = ["ReconstructionTrainer"]


def _reconstruction(pred: Any, inputs: torch.Tensor) -> torch.Tensor:
    """The reconstruction of a network output: the tensor itself, the first element of a VAE tuple, or the mean of a
    mean + log-variance output (AE-U)."""
    return split_prediction(pred, inputs.shape[1])[0]


class ReconstructionTrainer(SupervisedTrainer):
    """MONAI :class:`~monai.engines.SupervisedTrainer` that trains a network to reconstruct its input.

    Each iteration takes the image (``prepare_batch`` defaults to
    :class:`~monai_anomaly.engines.utils.PrepareBatchReconstruction`, whose target is the image itself), runs the
    network through the ``inferer``, and computes the loss on the reconstruction; a VAE's ``(recon, mu, logvar, z)``
    tuple is passed whole to the loss (so :class:`~monai_anomaly.losses.reconstruction.ReconstructionLoss` adds its
    KL term). ``engine.state.output`` holds ``image``, ``pred`` (the reconstruction), ``loss``, ``recon_loss`` and
    ``kl_loss`` (enum keys :class:`~monai.utils.CommonKeys` and :class:`~monai_anomaly.engines.utils.LossKeys`); the
    loss parts come from the loss function's ``compute_terms`` when it has one.

    ``amp=True`` runs the forward pass under bfloat16 autocast on CUDA (``amp_dtype=torch.float16`` adds a gradient
    scaler); on CPU AMP is turned off with a warning. Everything else is a normal MONAI trainer: ``train_handlers``
    (``StatsHandler``, ``TensorBoardStatsHandler``, ``CheckpointSaver`` / ``CheckpointLoader``,
    ``LrScheduleHandler``, ``ValidationHandler``, ``EarlyStopHandler``...), ``postprocessing``, metrics,
    ``accumulation_steps``.

    Args:
        device: device to train on.
        max_epochs: number of epochs.
        train_data_loader: loader of dictionary batches (``{"image": (B, C, H, W), ...}``).
        network: the autoencoder / VAE.
        optimizer: its optimizer.
        loss_function: defaults to ``ReconstructionLoss("l1")``.
        image_key: the image key, used by the default ``prepare_batch``.
        prepare_batch: strategy turning a batch into ``(inputs, targets)``.
        amp: mixed precision on CUDA.
        amp_dtype: autocast dtype, ``torch.bfloat16`` (default) or ``torch.float16``.
        kwargs: every other argument of :class:`~monai.engines.SupervisedTrainer` (``epoch_length``, ``inferer``,
            ``train_handlers``, ``key_train_metric``, ``decollate``, ``accumulation_steps``...).

    Example:
        >>> import torch
        >>> from monai_anomaly.networks.autoencoder import ConvAutoEncoder
        >>> net = ConvAutoEncoder(2, 1, 1, channels=(4, 8), strides=(2, 2))
        >>> data = [{"image": torch.rand(2, 1, 16, 16)} for _ in range(2)]
        >>> trainer = ReconstructionTrainer("cpu", 1, data, net, torch.optim.Adam(net.parameters()))
        >>> trainer.run()
        >>> sorted(map(str, trainer.state.output[0]))
        ['image', 'kl_loss', 'loss', 'pred', 'recon_loss']
    """

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader: Iterable | DataLoader,
        network: torch.nn.Module,
        optimizer: Optimizer,
        loss_function: Callable | None = None,
        image_key: str = AnomalyKeys.IMAGE,
        prepare_batch: Callable | None = None,
        amp: bool = False,
        amp_dtype: torch.dtype = torch.bfloat16,
        epoch_length: int | None = None,
        non_blocking: bool = False,
        iteration_update: Callable[[Engine, Any], Any] | None = None,
        inferer: Inferer | None = None,
        postprocessing: Transform | None = None,
        key_train_metric: dict[str, Metric] | None = None,
        additional_metrics: dict[str, Metric] | None = None,
        metric_cmp_fn: Callable = default_metric_cmp_fn,
        train_handlers: Sequence | None = None,
        event_names: list[str | EventEnum | type[EventEnum]] | None = None,
        event_to_attr: dict | None = None,
        decollate: bool = True,
        optim_set_to_none: bool = False,
        to_kwargs: dict | None = None,
        compile: bool = False,
        compile_kwargs: dict | None = None,
        accumulation_steps: int = 1,
    ) -> None:
        dev = torch.device(device)
        if amp and dev.type != "cuda":
            warnings.warn(f"amp=True needs a CUDA device; training on {dev} in full precision", stacklevel=2)
            amp = False
        if amp_dtype not in (torch.bfloat16, torch.float16):
            raise ValueError(f"amp_dtype must be torch.bfloat16 or torch.float16, got {amp_dtype}")
        super().__init__(
            device=dev,
            max_epochs=max_epochs,
            train_data_loader=train_data_loader,
            network=network,
            optimizer=optimizer,
            loss_function=ReconstructionLoss("l1") if loss_function is None else loss_function,
            epoch_length=epoch_length,
            non_blocking=non_blocking,
            prepare_batch=PrepareBatchReconstruction(image_key) if prepare_batch is None else prepare_batch,
            iteration_update=iteration_update,
            inferer=inferer,
            postprocessing=postprocessing,
            key_train_metric=key_train_metric,
            additional_metrics=additional_metrics,
            metric_cmp_fn=metric_cmp_fn,
            train_handlers=train_handlers,
            amp=amp,
            event_names=event_names,
            event_to_attr=event_to_attr,
            decollate=decollate,
            optim_set_to_none=optim_set_to_none,
            to_kwargs=to_kwargs,
            amp_kwargs={"dtype": amp_dtype},
            compile=compile,
            compile_kwargs=compile_kwargs,
            accumulation_steps=accumulation_steps,
        )
        self.image_key = image_key
        self.amp_dtype = amp_dtype
        if amp and amp_dtype == torch.bfloat16:
            self.scaler = None  # bfloat16 has float32's range: no loss scaling

    def _loss_terms(self, pred: Any, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        fn = self.loss_function
        if hasattr(fn, "compute_terms"):
            terms = dict(fn.compute_terms(pred, targets))
        else:
            terms = {"loss": fn(pred, targets)}
        terms["loss"] = terms["loss"].mean()
        return terms

    def _iteration(self, engine: ReconstructionTrainer, batchdata: dict[str, torch.Tensor]) -> dict:
        """One training step; returns ``{image, pred (reconstruction), loss, recon_loss, kl_loss}``.

        Raises:
            ValueError: when ``batchdata`` is None.
        """
        inputs, targets, args, kwargs = unpack_batch(engine, batchdata)
        engine.state.output = {CommonKeys.IMAGE: inputs}

        acc = engine.accumulation_steps
        local_iter = engine.state.iteration - 1
        epoch_length = engine.state.epoch_length
        if epoch_length is not None:
            local_iter %= epoch_length
        should_zero_grad = acc == 1 or local_iter % acc == 0
        should_step = acc == 1 or (local_iter + 1) % acc == 0 or (local_iter + 1) == epoch_length

        engine.network.train()
        if should_zero_grad:
            engine.optimizer.zero_grad(set_to_none=engine.optim_set_to_none)
        autocast = (
            torch.autocast(engine.state.device.type, **engine.amp_kwargs) if engine.amp else contextlib.nullcontext()
        )
        with autocast:
            pred = engine.inferer(inputs, engine.network, *args, **kwargs)
        engine.state.output[CommonKeys.PRED] = _reconstruction(pred, inputs)
        engine.fire_event(IterationEvents.FORWARD_COMPLETED)
        if engine.amp:  # the loss in float32
            pred = tuple(p.float() for p in pred) if isinstance(pred, (tuple, list)) else pred.float()
        terms = self._loss_terms(pred, targets)
        loss = terms["loss"]
        engine.state.output[CommonKeys.LOSS] = loss
        for key, name in ((LossKeys.RECON_LOSS, "recon_loss"), (LossKeys.KL_LOSS, "kl_loss")):
            v = terms.get(name)
            engine.state.output[key] = v.detach().mean() if v is not None else torch.zeros((), device=loss.device)
        engine.fire_event(IterationEvents.LOSS_COMPLETED)

        scaled = loss / acc if acc > 1 else loss
        if engine.scaler is not None:
            engine.scaler.scale(scaled).backward()
            engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
            if should_step:
                engine.scaler.step(engine.optimizer)
                engine.scaler.update()
        else:
            scaled.backward()
            engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
            if should_step:
                engine.optimizer.step()
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return engine.state.output
