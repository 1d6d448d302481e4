"""Helpers of the training engines: batch preparation, output keys, checkpoint resume and a progress bar."""

from __future__ import annotations

import glob
import logging
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from monai.engines.utils import PrepareBatch
from monai.utils import IgniteInfo, StrEnum, min_version, optional_import

from monai_anomaly.utils.enums import AnomalyKeys

if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import(
        "ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine", as_type="decorator"
    )
Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")
ProgressBar, _has_pbar = optional_import(
    "ignite.handlers", IgniteInfo.OPT_IMPORT_VERSION, min_version, "ProgressBar", as_type="decorator"
)

__all__ = [
    "unpack_batch",
    "LossKeys",
    "PrepareBatchReconstruction",
    "PrepareBatchDenoising",
    "ProgressBarHandler",
    "attach_progress_bar",
    "find_latest_checkpoint",
    "lower_is_better",
    "output_loss",
    "resume_if_exists",
]

logger = logging.getLogger("monai_anomaly")


class LossKeys(StrEnum):
    """Keys of the loss terms the reconstruction trainer and evaluator put in ``engine.state.output``."""

    RECON_LOSS = "recon_loss"
    VAL_LOSS = "val_loss"  # per-sample validation loss of the evaluator (reconstruction L1 or cross-entropy)
    KL_LOSS = "kl_loss"


def lower_is_better(current: float, previous_best: float) -> bool:
    """``metric_cmp_fn`` for metrics where lower is better (e.g. ``val_normal_loss``)."""
    return current < previous_best


class PrepareBatchReconstruction(PrepareBatch):
    """``prepare_batch`` strategy for reconstruction training: the target is the input image itself.

    Args:
        image_key: key of the image in a dictionary batch (a tensor batch is used as is).

    Example:
        >>> import torch
        >>> x, y = PrepareBatchReconstruction()({"image": torch.zeros(2, 1, 4, 4), "label": torch.tensor([0, 1])})
        >>> x is y, tuple(x.shape)
        (True, (2, 1, 4, 4))
    """

    def __init__(self, image_key: str = AnomalyKeys.IMAGE) -> None:
        self.image_key = image_key

    def __call__(
        self,
        batchdata: Mapping[str, Any] | torch.Tensor | Sequence[torch.Tensor],
        device: str | torch.device | None = None,
        non_blocking: bool = False,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(batchdata, Mapping):
            if self.image_key not in batchdata:
                raise KeyError(f"batch has no {self.image_key!r} key (keys: {sorted(map(str, batchdata))})")
            image = batchdata[self.image_key]
        elif isinstance(batchdata, torch.Tensor):
            image = batchdata
        elif isinstance(batchdata, Sequence) and batchdata and isinstance(batchdata[0], torch.Tensor):
            image = batchdata[0]
        else:
            raise TypeError(f"cannot take an image from a batch of type {type(batchdata).__name__}")
        image = image.to(device=device, non_blocking=non_blocking, **kwargs)
        return image, image


class PrepareBatchDenoising(PrepareBatchReconstruction):
    """``prepare_batch`` strategy for denoising autoencoders: the input is corrupted, the target is the clean image.

    Args:
        corruption: a callable on the batched image, e.g.
            :class:`~monai_anomaly.transforms.noise.RandCoarseNoise` with ``batched=True``; ``None`` leaves the
            input clean (a plain autoencoder).
        image_key: key of the image in a dictionary batch.

    Example:
        >>> import torch
        >>> from monai_anomaly.transforms.noise import RandCoarseNoise
        >>> prep = PrepareBatchDenoising(RandCoarseNoise(std=0.2, resolution=2, batched=True))
        >>> x, y = prep({"image": torch.ones(2, 1, 8, 8)})
        >>> bool((x != y).any()), bool((y == 1).all())
        (True, True)
    """

    def __init__(self, corruption: Any = None, image_key: str = AnomalyKeys.IMAGE) -> None:
        super().__init__(image_key)
        self.corruption = corruption

    def __call__(
        self,
        batchdata: Mapping[str, Any] | torch.Tensor | Sequence[torch.Tensor],
        device: str | torch.device | None = None,
        non_blocking: bool = False,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        clean, _ = super().__call__(batchdata, device, non_blocking, **kwargs)
        if self.corruption is None:
            return clean, clean
        with torch.no_grad():
            noisy = self.corruption(clean)
        return noisy, clean


def unpack_batch(engine: Any, batchdata: Any) -> tuple[Any, Any, tuple, dict]:
    """Run the engine's ``prepare_batch`` strategy and return ``(inputs, targets, args, kwargs)``.

    Raises:
        ValueError: when ``batchdata`` is None.
    """
    if batchdata is None:
        raise ValueError("Must provide batch data for current iteration.")
    batch = engine.prepare_batch(batchdata, engine.state.device, engine.non_blocking, **engine.to_kwargs)
    if len(batch) == 2:
        return batch[0], batch[1], (), {}
    inputs, targets, args, kwargs = batch
    return inputs, targets, tuple(args), dict(kwargs)


def output_loss(output: Any) -> dict[str, float]:
    """The loss terms of a trainer output (a dict, or the list of per-sample dicts after decollation) as floats.

    Usable as ``output_transform`` of :class:`ignite.handlers.ProgressBar` and MONAI's ``StatsHandler``.
    """
    item = output[0] if isinstance(output, (list, tuple)) and output else output
    if not isinstance(item, Mapping):
        return {}
    out = {}
    for key in ("loss", LossKeys.RECON_LOSS, LossKeys.KL_LOSS):
        v = item.get(key)
        if v is None:
            continue
        out[str(key)] = float(v.detach().float().mean()) if isinstance(v, torch.Tensor) else float(v)
    return out


_NUMBER = re.compile(r"(?:epoch|iteration)=(\d+)")


def _checkpoint_order(path: str) -> tuple[int, float]:
    """Sort key: the epoch / iteration number in a CheckpointSaver file name, then the modification time."""
    m = _NUMBER.findall(os.path.basename(path))
    return (int(m[-1]) if m else -1, os.path.getmtime(path))


def find_latest_checkpoint(folder: str | os.PathLike, pattern: str = "*.pt") -> str | None:
    """The newest checkpoint in ``folder``, or ``None`` when there is none (or no folder).

    Files written by MONAI's ``CheckpointSaver`` carry their epoch or iteration in the name
    (``checkpoint_epoch=3.pt``, ``net_iteration=120.pt``, ``checkpoint_final_iteration=200.pt``); the highest number
    wins, and files without a number rank below numbered ones, by modification time.

    Args:
        folder: the checkpoint folder.
        pattern: glob pattern of checkpoint files in it.

    Example:
        >>> find_latest_checkpoint("/nonexistent") is None
        True
    """
    if not os.path.isdir(folder):
        return None
    files = [f for f in glob.glob(os.path.join(os.fspath(folder), pattern)) if os.path.isfile(f)]
    if not files:
        return None
    return max(files, key=_checkpoint_order)


def list_checkpoints(folder: str | os.PathLike, pattern: str = "*.pt") -> list[str]:
    """The checkpoints of ``folder``, newest first (the order of :func:`find_latest_checkpoint`)."""
    if not os.path.isdir(folder):
        return []
    files = [f for f in glob.glob(os.path.join(os.fspath(folder), pattern)) if os.path.isfile(f)]
    return sorted(files, key=_checkpoint_order, reverse=True)


def resume_if_exists(
    engine: Engine,
    folder: str | os.PathLike,
    load_dict: Mapping[str, Any],
    pattern: str = "*.pt",
    map_location: Any = None,
    strict: bool = True,
) -> str | None:
    """Attach a MONAI ``CheckpointLoader`` for the latest checkpoint in ``folder``, if there is one.

    Call it after building the trainer and before ``trainer.run()``: an interrupted run then continues from the
    epoch of its last checkpoint (network, optimizer, scheduler, trainer state and any other object in
    ``load_dict``, e.g. a :class:`~monai_anomaly.handlers.thresholds.ThresholdFitter`). The checkpoint is read with
    ``torch.load(..., weights_only=True)``.

    Args:
        engine: the trainer.
        folder: where ``CheckpointSaver`` writes.
        load_dict: the objects to restore, same keys as the saver's ``save_dict``.
        pattern: glob pattern of checkpoint files.
        map_location: ``torch.load`` map location.
        strict: strict state-dict loading.

    Returns:
        the checkpoint path that will be loaded, or ``None`` (fresh start).
    """
    from monai.handlers import CheckpointLoader

    path = find_latest_checkpoint(folder, pattern)
    if path is None:
        logger.info("no checkpoint in %s: starting from scratch", folder)
        return None
    logger.info("resuming from %s", path)
    CheckpointLoader(load_path=path, load_dict=dict(load_dict), map_location=map_location, strict=strict).attach(engine)
    return path


def attach_progress_bar(
    engine: Engine,
    persist: bool = False,
    desc: str | None = None,
    metric_names: str | list[str] | None = None,
    output_transform: Callable[[Any], Any] | None = output_loss,
) -> Any:
    """Attach a tqdm progress bar (:class:`ignite.handlers.ProgressBar`) showing the loss and metrics.

    Args:
        engine: the trainer or evaluator.
        persist: keep the bar after each epoch.
        desc: bar description.
        metric_names: ``engine.state.metrics`` names to show (``"all"`` for all).
        output_transform: turns ``engine.state.output`` into the shown values (default: the loss terms).

    Returns:
        the attached ``ProgressBar``.
    """
    if not _has_pbar:
        raise ImportError("the progress bar needs pytorch-ignite with tqdm installed (pip install tqdm)")
    kw = {"persist": persist}
    if desc is not None:
        kw["desc"] = desc
    bar = ProgressBar(**kw)
    bar.attach(engine, metric_names=metric_names, output_transform=output_transform)
    return bar


def _is_tty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class ProgressBarHandler:
    """Config-friendly progress bar: ``{"_target_": "monai_anomaly.engines.utils.ProgressBarHandler"}`` in a bundle's
    ``handlers`` list (attached by the engine like any MONAI handler).

    The bar is drawn only when standard error is a terminal (``only_tty=True``): a log redirected to a file keeps the
    ``StatsHandler``'s one line per epoch instead of thousands of carriage-return fragments.

    Args:
        persist: keep the bar after each epoch.
        desc: bar description.
        metric_names: metrics to show.
        output_transform: turns ``engine.state.output`` into the shown values (default: the loss terms).

    Example:
        >>> handler = ProgressBarHandler(desc="train")
    """

    def __init__(
        self,
        persist: bool = False,
        desc: str | None = None,
        metric_names: str | list[str] | None = None,
        output_transform: Callable[[Any], Any] | None = output_loss,
        only_tty: bool = True,
    ) -> None:
        self.only_tty = only_tty
        self.persist = persist
        self.desc = desc
        self.metric_names = metric_names
        self.output_transform = output_transform
        self.bar: Any = None

    def attach(self, engine: Engine) -> None:
        if self.only_tty and not _is_tty(sys.stderr):
            return
        self.bar = attach_progress_bar(engine, self.persist, self.desc, self.metric_names, self.output_transform)
