"""A trainer for methods with several networks and optimizers (GANs, CycleGAN, refiners), on MONAI's Ignite
``Trainer``.

A method subclasses :class:`MultiNetworkTrainer` and writes one :meth:`~MultiNetworkTrainer.train_step`: it receives
the prepared batch and returns a dict of named loss values; it calls :meth:`~MultiNetworkTrainer.step` for each
optimizer update, which handles gradient zeroing, per-network mixed precision (a gradient scaler per float16
optimizer) and the backward pass. ``engine.state.output`` is then ``{"loss": ..., <name>: ...}`` for whatever losses
the method has, so MONAI's ``StatsHandler``, ``TensorBoardStatsHandler`` and the progress bar show them without
knowing the method. :meth:`~MultiNetworkTrainer.checkpoint_dict` gives every network, optimizer, scheduler and
stateful buffer under stable names for MONAI's ``CheckpointSaver`` / ``CheckpointLoader``, so ``--resume`` restores
all of them.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from monai.engines import Trainer
from monai.engines.utils import IterationEvents
from monai.utils import IgniteInfo, min_version, optional_import
from torch.optim.optimizer import Optimizer
from torch.utils.data import DataLoader

if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import(
        "ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine", as_type="decorator"
    )

__all__ = ["MultiNetworkTrainer", "default_prepare_batch", "LinearDecayLR", "cpu_has_native_bf16", "training_amp"]


def default_prepare_batch(batch: Mapping[str, Any], device: torch.device, non_blocking: bool = False) -> dict:
    """Move every tensor of a dictionary batch to ``device`` (other values are kept as they are)."""
    return {
        k: (v.to(device, non_blocking=non_blocking) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()
    }


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 convolutions and matrix products natively (AVX512-BF16 or AMX, through
    oneDNN); without it bfloat16 is emulated and slower than float32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def training_amp(names: Sequence[str], device: str | torch.device, precision: str = "auto") -> dict[str, torch.dtype]:
    """The ``amp`` argument of :class:`MultiNetworkTrainer` for a precision setting of a bundle.

    Args:
        names: the optimizer names to run under autocast.
        device: the training device.
        precision: ``"float32"`` (no autocast), ``"bfloat16"`` (bfloat16 autocast on CUDA, and on a CPU with native
            bfloat16), or ``"auto"``: bfloat16 on a CUDA device that supports it, float32 elsewhere.

    Example:
        >>> training_amp(["generator"], "cpu", "float32")
        {}
    """
    if precision not in ("auto", "float32", "bfloat16"):
        raise ValueError(f"precision must be 'auto', 'float32' or 'bfloat16', got {precision!r}")
    dev = torch.device(device)
    if precision == "float32":
        return {}
    if precision == "auto" and not (dev.type == "cuda" and torch.cuda.is_bf16_supported()):
        return {}
    return dict.fromkeys(names, torch.bfloat16)


class MultiNetworkTrainer(Trainer):
    """Base of trainers with several named networks and optimizers.

    Args:
        device: the device to train on.
        max_epochs: number of epochs.
        train_data_loader: loader of dictionary batches.
        networks: ``{name: module}``, e.g. ``{"generator": g, "critic": c}``.
        optimizers: ``{name: optimizer}``; the names are used by :meth:`step` (usually the network's name).
        schedulers: optional ``{name: lr scheduler}``, saved with the checkpoint (step them with MONAI's
            ``LrScheduleHandler`` or in :meth:`train_step`).
        amp: ``{optimizer name: dtype}`` of the networks to run under autocast: on CUDA ``torch.bfloat16``, or
            ``torch.float16`` with a gradient scaler; on a CPU ``torch.bfloat16`` where the CPU computes it natively
            (otherwise full precision, with a warning). See :func:`training_amp`.
        prepare_batch: ``(batch, device, non_blocking) -> batch`` (default: move tensors to the device).
        epoch_length, non_blocking, iteration_update, postprocessing, key_train_metric, additional_metrics,
        metric_cmp_fn, train_handlers, event_names, event_to_attr, decollate, to_kwargs: as MONAI's ``Trainer``.

    Example:
        >>> class Twin(MultiNetworkTrainer):
        ...     def train_step(self, batch):
        ...         loss = self.networks["a"](batch["image"]).pow(2).mean()
        ...         self.step("a", loss)
        ...         return {"a_loss": loss}
        >>> a = torch.nn.Linear(4, 4)
        >>> t = Twin("cpu", 1, [{"image": torch.rand(2, 4)}], {"a": a}, {"a": torch.optim.SGD(a.parameters(), 0.1)})
        >>> t.run()
        >>> sorted(t.state.output)
        ['a_loss', 'loss']
    """

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader: Iterable | DataLoader,
        networks: Mapping[str, torch.nn.Module],
        optimizers: Mapping[str, Optimizer],
        schedulers: Mapping[str, Any] | None = None,
        amp: Mapping[str, torch.dtype] | None = None,
        prepare_batch: Callable = default_prepare_batch,
        epoch_length: int | None = None,
        non_blocking: bool = False,
        iteration_update: Callable[[Engine, Any], Any] | None = None,
        postprocessing: Callable | None = None,
        key_train_metric: dict | None = None,
        additional_metrics: dict | None = None,
        metric_cmp_fn: Callable | None = None,
        train_handlers: Sequence | None = None,
        event_names: list | None = None,
        event_to_attr: dict | None = None,
        decollate: bool = False,
        to_kwargs: dict | None = None,
    ) -> None:
        from monai.engines.utils import default_metric_cmp_fn

        dev = torch.device(device)
        missing = sorted(set(optimizers) - set(networks))
        if missing:
            raise ValueError(f"optimizers {missing} have no network of the same name (networks: {sorted(networks)})")
        amp = dict(amp or {})
        for name, dtype in amp.items():
            if dtype not in (torch.bfloat16, torch.float16):
                raise ValueError(f"amp[{name!r}] must be torch.bfloat16 or torch.float16, got {dtype}")
        if amp and dev.type != "cuda":
            kept = {n: d for n, d in amp.items() if d == torch.bfloat16 and cpu_has_native_bf16()}
            if kept != amp:
                warnings.warn(
                    f"mixed precision on {dev} needs bfloat16 and a CPU with native bfloat16 (AVX512-BF16 or AMX); "
                    f"{sorted(set(amp) - set(kept))} train in full precision",
                    stacklevel=2,
                )
            amp = kept
        super().__init__(
            device=dev,
            max_epochs=max_epochs,
            data_loader=train_data_loader,
            epoch_length=epoch_length,
            non_blocking=non_blocking,
            prepare_batch=prepare_batch,
            iteration_update=iteration_update,
            postprocessing=postprocessing,
            key_metric=key_train_metric,
            additional_metrics=additional_metrics,
            metric_cmp_fn=default_metric_cmp_fn if metric_cmp_fn is None else metric_cmp_fn,
            handlers=train_handlers,
            amp=False,
            event_names=event_names,
            event_to_attr=event_to_attr,
            decollate=decollate,
            to_kwargs=to_kwargs,
        )
        self.networks = dict(networks)
        self.optimizers = dict(optimizers)
        self.schedulers = dict(schedulers or {})
        self.amp_dtypes = amp
        self.scalers = {n: torch.amp.GradScaler("cuda") for n, d in amp.items() if d == torch.float16}

    # -- what a method writes --------------------------------------------------------------------------------------
    def train_step(self, batch: dict[str, Any]) -> Mapping[str, torch.Tensor | float]:
        """One iteration of the method: forward passes, :meth:`step` calls, and the named losses to report."""
        raise NotImplementedError

    # -- helpers for train_step -------------------------------------------------------------------------------------
    def autocast(self, name: str):
        """Autocast context of network ``name`` (a no-op when it runs in full precision)."""
        dtype = self.amp_dtypes.get(name)
        return torch.autocast(self.state.device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()

    def step(self, name: str, loss: torch.Tensor, retain_graph: bool = False) -> None:
        """Zero ``name``'s gradients, back-propagate ``loss`` (scaled for float16) and step its optimizer."""
        opt = self.optimizers[name]
        opt.zero_grad(set_to_none=True)
        scaler = self.scalers.get(name)
        if scaler is not None:
            scaler.scale(loss).backward(retain_graph=retain_graph)
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward(retain_graph=retain_graph)
            opt.step()

    def bare(self, name: str) -> torch.nn.Module:
        """Network ``name`` without its ``DistributedDataParallel`` wrapper.

        Use it where a network only passes gradients through to another one (the critic in the generator's step):
        a DDP forward there would wait for gradients of its own parameters that never come, and the next step fails.
        """
        net = self.networks[name]
        return net.module if isinstance(net, torch.nn.parallel.DistributedDataParallel) else net

    @staticmethod
    def set_requires_grad(module: torch.nn.Module, flag: bool) -> None:
        """Freeze or unfreeze a network (e.g. the critic during the generator's step)."""
        for p in module.parameters():
            p.requires_grad_(flag)

    # -- engine plumbing --------------------------------------------------------------------------------------------
    def _iteration(self, engine: MultiNetworkTrainer, batchdata: dict[str, Any]) -> dict[str, Any]:
        if batchdata is None:
            raise ValueError("must provide batch data for current iteration.")
        batch = engine.prepare_batch(batchdata, engine.state.device, engine.non_blocking)
        for net in engine.networks.values():
            net.train()
        losses = dict(engine.train_step(batch))
        out: dict[str, Any] = {}
        for k, v in losses.items():
            out[str(k)] = v.detach().float().mean() if isinstance(v, torch.Tensor) else torch.tensor(float(v))
        if "loss" not in out:  # a single number for handlers that show "the" loss
            out["loss"] = torch.stack([v for v in out.values()]).sum() if out else torch.zeros(())
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return out

    def checkpoint_dict(self, **extra: Any) -> dict[str, Any]:
        """Everything to save and restore: ``net_<name>``, ``opt_<name>``, ``sched_<name>``, ``trainer`` and
        ``extra`` objects (anything with ``state_dict`` / ``load_state_dict``, e.g. a replay buffer)."""
        d: dict[str, Any] = {f"net_{k}": v for k, v in self.networks.items()}
        d.update({f"opt_{k}": v for k, v in self.optimizers.items()})
        d.update({f"sched_{k}": v for k, v in self.schedulers.items()})
        d.update({f"scaler_{k}": v for k, v in self.scalers.items()})
        d["trainer"] = self
        d.update(extra)
        return d


class LinearDecayLR:
    """Constant learning rate, then a linear decay towards 0 over the last epochs, for several optimizers at once
    (the CycleGAN schedule of Zhu et al.: ``lr x (1 - max(0, epoch - decay_start) / (max_epochs - decay_start))``).

    Step it once per epoch (MONAI's ``LrScheduleHandler``); it checkpoints like a scheduler (``state_dict`` holds
    each optimizer's ``LambdaLR`` state, plain numbers only).

    Args:
        optimizers: the optimizers to decay together (e.g. generators and discriminators).
        max_epochs: the run's length.
        decay_start: the epoch the decay starts after (default: half of ``max_epochs``).

    Example:
        >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        >>> s = LinearDecayLR([opt], max_epochs=4, decay_start=2)
        >>> lrs = []
        >>> for _ in range(4):
        ...     lrs.append(round(s.get_last_lr()[0], 2))
        ...     s.step()
        >>> lrs
        [1.0, 1.0, 1.0, 0.5]
    """

    def __init__(self, optimizers: Sequence[Optimizer], max_epochs: int, decay_start: int | None = None) -> None:
        max_epochs = int(max_epochs)
        start = max_epochs // 2 if decay_start is None else int(decay_start)
        if not 0 <= start < max(1, max_epochs):
            raise ValueError(f"decay_start must be in [0, max_epochs), got {start} for max_epochs {max_epochs}")
        span = float(max(1, max_epochs - start))

        def factor(epoch: int) -> float:  # a plain function: LambdaLR leaves it out of its state_dict
            return max(0.0, 1.0 - max(0, epoch - start) / span)

        self.decay_start, self.max_epochs, self._factor = start, max_epochs, factor
        self.schedulers = [torch.optim.lr_scheduler.LambdaLR(o, factor) for o in optimizers]

    def step(self) -> None:
        for s in self.schedulers:
            s.step()

    def get_last_lr(self) -> list[float]:
        """The current learning rate of each optimizer's first parameter group."""
        return [s.get_last_lr()[0] for s in self.schedulers]

    @property
    def _last_lr(self) -> list[float]:  # what MONAI's LrScheduleHandler(print_lr=True) reads
        return self.get_last_lr()

    def state_dict(self) -> dict[str, Any]:
        return {"schedulers": [s.state_dict() for s in self.schedulers]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the epoch count, and set each optimizer's rate from this schedule at that epoch: a run resumed
        with a larger ``max_epochs`` continues on the new curve instead of the rate the old one ended at (0)."""
        for s, st in zip(self.schedulers, state["schedulers"]):
            s.load_state_dict(st)
            lrs = [base * self._factor(s.last_epoch) for base in s.base_lrs]
            for group, lr in zip(s.optimizer.param_groups, lrs):
                group["lr"] = lr
            s._last_lr = lrs
