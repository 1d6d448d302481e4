"""torch.distributed helpers for evaluation and inference over several processes (``torchrun``).

Work is shared out as whole volumes in contiguous blocks of the single-process order, and what each process collected
is gathered with ``torch.distributed.all_gather_object`` in rank order, so concatenating the parts gives the
single-process order back. Without an initialised process group every helper is the identity.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch

__all__ = ["gather_in_rank_order", "rank_world", "shard_by_volume"]

T = TypeVar("T")


def rank_world() -> tuple[int, int]:
    """``(rank, world_size)`` of the running process group; ``(0, 1)`` without one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def shard_by_volume(
    items: Sequence[T],
    rank: int | None = None,
    world_size: int | None = None,
    key: str | Callable[[T], Any] = "volume_id",
) -> list[T]:
    """This rank's share of ``items``: whole volumes (consecutive items with the same ``key``, e.g. the slices or
    images of one subject) in a contiguous block, the blocks as even in volumes as the count allows.

    Example:
        >>> items = [{"volume_id": v} for v in "aabccde"]
        >>> [[i["volume_id"] for i in shard_by_volume(items, r, 2)] for r in range(2)]
        [['a', 'a', 'b'], ['c', 'c', 'd', 'e']]
    """
    r, w = rank_world()
    rank, world_size = (r if rank is None else int(rank)), (w if world_size is None else int(world_size))
    if world_size <= 1:
        return list(items)
    get = key if callable(key) else (lambda it: it.get(key) if hasattr(it, "get") else None)
    starts = [i for i in range(len(items)) if i == 0 or get(items[i]) != get(items[i - 1])]  # first item of a volume
    n = len(starts)
    lo, hi = (n * rank) // world_size, (n * (rank + 1)) // world_size
    begin = starts[lo] if lo < n else len(items)
    end = starts[hi] if hi < n else len(items)
    return list(items[begin:end])


def gather_in_rank_order(obj: T) -> list[T]:
    """Every rank's ``obj`` (picklable), indexed by rank, on every rank; ``[obj]`` without a process group."""
    _, world = rank_world()
    if world <= 1:
        return [obj]
    out: list[Any] = [None] * world
    torch.distributed.all_gather_object(out, obj)
    return out
