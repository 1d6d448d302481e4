"""Datasets that turn volumes into 2D slices once, cache them, and augment each slice per access."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from copy import deepcopy
from multiprocessing.pool import ThreadPool
from pathlib import Path

from monai.data import CacheDataset, PersistentDataset
from monai.transforms import Compose, Randomizable, Transform
from torch.utils.data import Dataset

from monai_anomaly.utils.enums import AnomalyKeys
from monai_anomaly.utils.errors import BadInputError, SkipLog

__all__ = ["SliceDataset"]

logger = logging.getLogger("monai_anomaly")
_BAD = "__bad_input__"


def _describe(err: BaseException, default_path: str) -> tuple[str, str]:
    """``(path, problem)`` of a failure: a :class:`BadInputError` in the cause chain (MONAI wraps transform errors in
    ``RuntimeError("applying transform ...")``) gives both, else the innermost error is the problem."""
    chain = [err]
    while chain[-1].__cause__ is not None:
        chain.append(chain[-1].__cause__)
    for e in chain:
        if isinstance(e, BadInputError):
            return e.path, e.problem
    inner = chain[-1]
    return default_path, f"{type(inner).__name__}: {inner}"


class _CatchBadInput(Transform):
    """Run the volume transform; an error becomes a marker dict (so one bad file never stops the caching).

    A MONAI ``Transform`` (and not random), so that MONAI's cache datasets cache its result.
    """

    def __init__(self, transform: Callable | None, image_key: str) -> None:
        self.transform = transform
        self.image_key = image_key

    def __call__(self, item: Mapping) -> dict | list:
        try:
            return dict(item) if self.transform is None else self.transform(item)
        except Exception as e:  # noqa: BLE001 - any failure of a volume is reported as bad input naming the file
            path, problem = _describe(e, str(item.get(self.image_key, "?")))
            return {_BAD: path, "problem": problem}


def _has_random(transform: Callable | None) -> bool:
    if isinstance(transform, Compose):  # a Compose is itself Randomizable: look inside
        return any(_has_random(t) for t in transform.transforms)
    return isinstance(transform, Randomizable)


class SliceDataset(Dataset):
    """2D slices of volumes (and 2D images), computed once, cached, and augmented per access.

    For each datalist item, ``volume_transform`` runs once (e.g. load, orient, normalise per volume, cut into slices)
    and returns one dict (a 2D image: one "slice") or a list of dicts (the slices of a volume). The flattened list of
    slice dicts is kept in memory, or in ``cache_dir`` on disk (MONAI ``PersistentDataset``, reused by later runs), so
    the per-volume work is never repeated. ``slice_transform`` (e.g. random augmentation) runs on a copy of a slice at
    every access. ``len(dataset)`` is the number of slices.

    Args:
        items: datalist items (see ``docs/architecture.md``).
        volume_transform: deterministic callable on one item returning a dict or a list of dicts; ``None`` keeps the
            items as they are. Random transforms belong in ``slice_transform`` (a random one here raises ValueError).
        slice_transform: callable applied to each slice dict at access; ``None`` returns the cached slice.
        cache_dir: folder for a disk cache (keyed by the item's content: clear it when ``volume_transform`` changes);
            ``None`` caches in memory.
        skip_bad: skip items whose volume transform fails (warning, recorded in ``skipped``) instead of raising.
        num_workers: threads computing the cache (0: in the calling thread).
        slice_filter: optional predicate on a slice dict, applied once when caching (e.g. drop empty slices).
        copy_cache: give ``slice_transform`` a deep copy of the cached slice, so in-place changes do not leak into
            the cache.
        image_key: the key naming the file of an item, for error messages.

    Attributes:
        slices: the cached slice dicts.
        skipped: ``[{"path", "problem"}, ...]`` for each item skipped.

    Raises:
        BadInputError: an item's volume transform failed (unless ``skip_bad``); the message names its file.

    Example:
        >>> from monai.transforms import LoadImaged, RandFlipd
        >>> ds = SliceDataset(  # doctest: +SKIP
        ...     items, volume_transform=Compose([LoadScand("image"), VolumeToSlicesd("image")]),
        ...     slice_transform=RandFlipd("image", prob=0.5), cache_dir="cache/")
        >>> len(ds), ds[0]["image"].shape  # doctest: +SKIP
        (4650, torch.Size([1, 240, 240]))
    """

    def __init__(
        self,
        items: Sequence[Mapping],
        volume_transform: Callable | None = None,
        slice_transform: Callable | None = None,
        cache_dir: str | os.PathLike | None = None,
        skip_bad: bool = False,
        num_workers: int = 0,
        slice_filter: Callable[[Mapping], bool] | None = None,
        copy_cache: bool = True,
        image_key: str = AnomalyKeys.IMAGE.value,
    ) -> None:
        if _has_random(volume_transform):
            raise ValueError(
                "volume_transform must be deterministic (it is cached); put random transforms in slice_transform"
            )
        self.items = [dict(it) for it in items]
        self.transform = slice_transform  # named `transform` so MONAI's DataLoader reseeds it in each worker
        self.copy_cache = copy_cache
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        log = SkipLog(skip_bad)
        results = self._compute(_CatchBadInput(volume_transform, image_key), num_workers)
        self.slices: list[dict] = []
        for res in results:
            for s in res if isinstance(res, list) else [res]:
                if not isinstance(s, Mapping):
                    raise TypeError(f"volume_transform must return a dict or a list of dicts, got {type(s).__name__}")
                if _BAD in s:
                    log.handle(BadInputError(s[_BAD], s["problem"]))
                    continue
                if slice_filter is None or slice_filter(s):
                    self.slices.append(s)
        self.skipped: list[dict] = log.as_list()

    def _compute(self, transform: _CatchBadInput, num_workers: int) -> list:
        if self.cache_dir is None:
            cds = CacheDataset(
                self.items, Compose([transform]), num_workers=max(num_workers, 1), progress=False, copy_cache=False
            )
            return [cds[i] for i in range(len(cds))]
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        pds = PersistentDataset(
            self.items, Compose([transform]), cache_dir=self.cache_dir, track_meta=True, weights_only=False
        )

        def one(i: int):
            res = pds[i]
            if any(_BAD in r for r in (res if isinstance(res, list) else [res]) if isinstance(r, Mapping)):
                # never keep a failure on disk: a fixed file is retried next time
                (self.cache_dir / f"{pds.hash_func(self.items[i]).decode('utf-8')}.pt").unlink(missing_ok=True)
            return res

        if num_workers > 0:
            with ThreadPool(num_workers) as pool:
                return pool.map(one, range(len(self.items)))
        return [one(i) for i in range(len(self.items))]

    def __len__(self) -> int:
        return len(self.slices)

    def __getitem__(self, index: int) -> dict:
        s = self.slices[index]
        if self.transform is None:
            return s
        return self.transform(deepcopy(s) if self.copy_cache else dict(s))
