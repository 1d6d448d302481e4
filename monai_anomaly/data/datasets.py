"""Datasets that turn volumes into 2D slices once, cache them, and augment each slice per access."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
import sys
import tempfile
import threading
import types
import warnings
from collections.abc import Callable, Mapping, Sequence
from copy import deepcopy
from enum import Enum
from multiprocessing.pool import ThreadPool
from pathlib import Path, PurePath
from typing import Any

import monai
import numpy as np
import torch
from monai.data import CacheDataset, MetaTensor
from monai.data.utils import pickle_hashing
from monai.transforms import Compose, Randomizable, Transform, reset_ops_id
from torch.utils.data import Dataset

from monai_anomaly.utils.enums import AnomalyKeys
from monai_anomaly.utils.errors import BadInputError, SkipLog
from monai_anomaly.utils.version import __version__

__all__ = ["SliceDataset", "SkipBadDataset", "collate_without_meta", "transform_fingerprint"]

logger = logging.getLogger("monai_anomaly")
# ignite warns when an iterable dataset yields fewer items than its len(): what SkipBadDataset does on purpose when it
# skips a bad scan (the skip itself is warned about and reported)
warnings.filterwarnings("ignore", message=r"Data iterator can not provide data anymore")
_BAD = "__bad_input__"


def collate_without_meta(batch: Sequence[Mapping[str, Any]]) -> Any:
    """MONAI's ``list_data_collate`` of the samples with their ``MetaTensor`` values as plain tensors (no copy).

    For training loaders: a training step reads no metadata, and collating it (a NIfTI header has some 50 keys per
    sample) cost 16 ms of a 64-slice BraTS batch against 0.2 ms for the tensors alone (docs/benchmarks.md).

    Example:
        >>> b = collate_without_meta([{"image": MetaTensor(torch.zeros(1, 2, 2), meta={"x": 1}), "label": 0}] * 3)
        >>> type(b["image"]).__name__, tuple(b["image"].shape), b["label"].tolist()
        ('Tensor', (3, 1, 2, 2), [0, 0, 0])
    """
    from monai.data import list_data_collate

    plain = [{k: v.as_tensor() if isinstance(v, MetaTensor) else v for k, v in s.items()} for s in batch]
    return list_data_collate(plain)


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


class SkipBadDataset(torch.utils.data.IterableDataset):
    """Load items in order; an item whose transform fails on bad input is skipped (warned and recorded in
    ``skip_log``) when the user asked to skip, else its :class:`BadInputError` (naming the file) is raised.

    An iterable dataset, so that a skipped scan is simply not yielded (a map-style dataset would have to return
    something). It has no ``len()``: an engine told a length would restart the iterator to make up for skipped items
    and score good scans twice; use it with ``num_workers=0``.

    Args:
        data: datalist items.
        transform: the preprocessing applied to each item.
        skip_log: where skipped files are recorded (its ``skip_bad`` decides skip or raise).

    Example:
        >>> from monai_anomaly.transforms.io import LoadScand
        >>> log = SkipLog(skip_bad=True)
        >>> ds = SkipBadDataset([{"image": "missing.png"}], LoadScand(keys="image"), log)
        >>> list(ds), [s.path for s in log.skipped]
        ([], ['missing.png'])
    """

    def __init__(self, data: Sequence[Mapping], transform: Callable | None, skip_log: SkipLog | None = None) -> None:
        self.data = list(data)
        self.transform = transform
        self.skip_log = skip_log if skip_log is not None else SkipLog(False)

    def __iter__(self):
        from monai.transforms import apply_transform

        for item in self.data:
            try:
                yield dict(item) if self.transform is None else apply_transform(self.transform, item)
            except Exception as e:  # noqa: BLE001 - only bad input is skipped; anything else is re-raised
                bad = next((c for c in _cause_chain(e) if isinstance(c, BadInputError)), None)
                if bad is None:
                    raise
                self.skip_log.handle(bad)  # raises when not skipping


def _cause_chain(err: BaseException) -> list[BaseException]:
    chain = [err]
    while chain[-1].__cause__ is not None and chain[-1].__cause__ not in chain:
        chain.append(chain[-1].__cause__)
    return chain


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


# ---------------------------------------------------------------------------------------------------------------------
# The disk cache: one ``<key>.npz`` per item holding its arrays and, under ``__meta__``, a JSON tree of everything else.
# Nothing is ever unpickled: ``np.load(..., allow_pickle=False)`` refuses object arrays, and the JSON tree only names
# plain values, tuples, dicts, tensors / arrays (by their index in the file), enums already imported, and MetaTensors
# (array + metadata + applied operations). A file that does not decode is ignored with a warning and recomputed.
# ---------------------------------------------------------------------------------------------------------------------

_CACHE_FORMAT = 1  # change when the file layout changes: old files then no longer match any key
_META = "__meta__"
_SAME_SIZE_INT = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


class _Uncacheable(TypeError):
    """A value of a type the safe disk cache does not store."""


class _NotThisItem(ValueError):
    """A well-formed cache file whose format or key is not the one expected."""


def _as_numpy(t: torch.Tensor) -> np.ndarray:
    """The tensor's values (its bits, as integers of the same size, for dtypes numpy lacks such as bfloat16)."""
    t = t.detach().cpu().contiguous()
    try:
        return t.numpy()
    except TypeError:
        return t.view(_SAME_SIZE_INT[t.element_size()]).numpy()


def _tensor_node(t: torch.Tensor, arrays: list[np.ndarray]) -> dict:
    arrays.append(_as_numpy(t))
    return {"i": len(arrays) - 1, "dtype": str(t.dtype).removeprefix("torch.")}


def _encode(obj: Any, arrays: list[np.ndarray]) -> Any:
    """A JSON-able tree for ``obj``; its arrays are appended to ``arrays`` and named by index."""
    if isinstance(obj, Enum):
        return {"~": "enum", "cls": f"{type(obj).__module__}:{type(obj).__qualname__}", "v": _encode(obj.value, arrays)}
    if isinstance(obj, np.generic):
        arrays.append(np.asarray(obj))
        return {"~": "npscalar", "i": len(arrays) - 1}
    if obj is None:
        return None
    for plain in (bool, int, float, str):  # subclasses (other than enums) are stored as the plain type
        if isinstance(obj, plain):
            return plain(obj)
    if isinstance(obj, MetaTensor):
        node = _tensor_node(obj.as_tensor(), arrays)
        meta, ops = _encode(dict(obj.meta), arrays), _encode(list(obj.applied_operations), arrays)
        node.update(meta=meta, ops=ops, is_batch=bool(obj.is_batch))
        if hasattr(obj, "spatial_ndim"):  # MONAI >= 1.6 keeps it beside the affine
            node["spatial_ndim"] = int(obj.spatial_ndim)
        return {"~": "meta_tensor", **node}
    if isinstance(obj, torch.Tensor):
        return {"~": "tensor", **_tensor_node(obj, arrays)}
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise _Uncacheable("a numpy array of Python objects")
        arrays.append(obj)
        return {"~": "ndarray", "i": len(arrays) - 1}
    if isinstance(obj, (bytes, bytearray)):
        arrays.append(np.frombuffer(bytes(obj), dtype=np.uint8))
        return {"~": "bytes", "i": len(arrays) - 1}
    if isinstance(obj, PurePath):
        return {"~": "path", "v": str(obj)}
    if isinstance(obj, torch.dtype):
        return {"~": "torch_dtype", "v": str(obj).removeprefix("torch.")}
    if isinstance(obj, tuple):
        return {"~": "tuple", "v": [_encode(x, arrays) for x in obj]}
    if isinstance(obj, list):
        return [_encode(x, arrays) for x in obj]
    if isinstance(obj, Mapping):
        return {"~": "dict", "v": [[_encode(k, arrays), _encode(v, arrays)] for k, v in obj.items()]}
    raise _Uncacheable(f"a {type(obj).__module__}.{type(obj).__qualname__}")


def _torch_dtype(name: Any) -> torch.dtype:
    if not re.fullmatch(r"[a-z][a-z0-9_]*", str(name)):
        raise ValueError(f"not a torch dtype: {name!r}")
    dtype = getattr(torch, str(name), None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"not a torch dtype: {name!r}")
    return dtype


def _loaded_enum(spec: str) -> type[Enum] | None:
    """The enum class ``module:qualname`` if its module is already imported (nothing is imported here)."""
    module, _, qualname = str(spec).partition(":")
    obj: Any = sys.modules.get(module)
    for part in qualname.split("."):
        obj = getattr(obj, part, None) if obj is not None and part and not part.startswith("_") else None
    return obj if isinstance(obj, type) and issubclass(obj, Enum) else None


def _decode(node: Any, arrays: Mapping[str, np.ndarray]) -> Any:
    """The value a tree of :func:`_encode` describes (raises on anything else)."""
    if isinstance(node, list):
        return [_decode(x, arrays) for x in node]
    if not isinstance(node, dict):
        return node
    kind = node["~"]
    if kind == "dict":
        return {_decode(k, arrays): _decode(v, arrays) for k, v in node["v"]}
    if kind == "tuple":
        return tuple(_decode(x, arrays) for x in node["v"])
    if kind == "path":
        return Path(str(node["v"]))
    if kind == "torch_dtype":
        return _torch_dtype(node["v"])
    if kind == "enum":
        value, cls = _decode(node["v"], arrays), _loaded_enum(node["cls"])
        return cls(value) if cls is not None else value
    arr = arrays[f"a{int(node['i'])}"]
    if kind == "ndarray":
        return arr
    if kind == "npscalar":
        return arr[()]
    if kind == "bytes":
        return arr.tobytes()
    if kind in ("tensor", "meta_tensor"):
        t = torch.from_numpy(arr)
        dtype = _torch_dtype(node["dtype"])
        t = t.view(dtype) if t.dtype != dtype else t
        if kind == "tensor":
            return t
        meta = _decode(node["meta"], arrays)
        out = MetaTensor(t, meta=meta, applied_operations=_decode(node["ops"], arrays))
        for k in set(out.meta) - set(meta):  # defaults the constructor adds (e.g. "space") were not there before
            del out.meta[k]
        out.is_batch = bool(node["is_batch"])
        if node.get("spatial_ndim") is not None and hasattr(out, "spatial_ndim"):
            out.spatial_ndim = int(node["spatial_ndim"])
        return out
    raise ValueError(f"unknown node kind {kind!r}")


def _write_cache(path: Path, key: str, value: Any) -> None:
    """Write ``value`` to ``path`` (``.npz``), atomically; raises :class:`_Uncacheable` for a type it cannot store."""
    arrays: list[np.ndarray] = []
    doc = {"format": _CACHE_FORMAT, "key": key, "value": _encode(value, arrays)}
    payload = {f"a{i}": a for i, a in enumerate(arrays)}
    payload[_META] = np.frombuffer(json.dumps(doc).encode("utf-8"), dtype=np.uint8)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as f:
            try:
                np.savez(f, allow_pickle=False, **payload)
            except ValueError as e:  # an array numpy could only store as a pickle
                raise _Uncacheable(f"an array numpy cannot store without pickling ({e})") from e
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_cache(path: Path, key: str) -> Any:
    """The value cached in ``path``; raises (never runs code) when it is not a cache file of ``key``."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {name: z[name] for name in z.files}
    doc = json.loads(arrays.pop(_META).tobytes().decode("utf-8"))
    if not isinstance(doc, dict) or doc.get("format") != _CACHE_FORMAT or doc.get("key") != key:
        raise _NotThisItem("a slice cache file of another item or format")
    return _decode(doc["value"], arrays)


def _cache_problem(err: BaseException) -> str:
    """Why a cache file was not used, in plain words (numpy's own message advises loading pickles unsafely)."""
    text = str(err)
    if isinstance(err, _NotThisItem):
        return text
    if "pickle" in text.lower():
        return "it holds pickled Python objects, which are never loaded"
    if isinstance(err, KeyError) or "zip file" in text or "No data left" in text:
        return "not a slice cache file: empty, truncated or of another kind"
    return f"not a slice cache file of this item: {type(err).__name__}: {text[:200]}"


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _code_digest(code: types.CodeType) -> str:
    consts = [_code_digest(c) if isinstance(c, types.CodeType) else repr(c) for c in code.co_consts]
    return _digest(code.co_code + repr((consts, code.co_names)).encode())


def _qualname(obj: Any) -> str:
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


# state that says nothing about what a transform computes (and differs from run to run)
_OPAQUE = (np.random.RandomState, np.random.Generator, torch.Generator, logging.Logger, types.ModuleType)
_LOCK_TYPES = (type(threading.Lock()), type(threading.RLock()))
# attributes that record the last call rather than the configuration (MONAI image readers keep the last file names)
_RUN_STATE = frozenset({"filenames"})


def _describe_config(obj: Any, depth: int = 0, seen: frozenset = frozenset()) -> Any:
    """A JSON-able description of a transform's configuration, the same in every run: class names, parameters,
    functions' code and closures, array contents as digests. Random states and loggers are left out."""
    if isinstance(obj, Enum):
        return f"{_qualname(obj)}.{obj.name}"
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return repr(obj)
    if isinstance(obj, (bytes, bytearray)):
        return {"bytes": _digest(bytes(obj))}
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, (torch.dtype, np.dtype)):
        return str(obj)
    if isinstance(obj, type):
        return _qualname(obj)
    if isinstance(obj, np.ndarray) and obj.dtype.hasobject:
        return {"array": "object", "values": _describe_config(obj.tolist(), depth + 1, seen)}
    if isinstance(obj, (torch.Tensor, np.ndarray, np.generic)):
        data = _as_numpy(obj) if isinstance(obj, torch.Tensor) else np.ascontiguousarray(obj)
        return {"array": str(obj.dtype), "shape": list(obj.shape), "digest": _digest(data.tobytes())}
    if depth > 12 or id(obj) in seen or isinstance(obj, _OPAQUE + _LOCK_TYPES):
        return _qualname(obj)
    seen = seen | {id(obj)}

    def sub(x: Any) -> Any:
        return _describe_config(x, depth + 1, seen)

    if isinstance(obj, (list, tuple)):
        return [sub(x) for x in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted((sub(x) for x in obj), key=lambda d: json.dumps(d, sort_keys=True))
    if isinstance(obj, Mapping):
        return sorted(([str(k), sub(v)] for k, v in obj.items()), key=lambda kv: kv[0])
    if isinstance(obj, functools.partial):
        return {"partial": sub(obj.func), "args": sub(obj.args), "keywords": sub(obj.keywords)}
    if isinstance(obj, types.MethodType):
        return {"method": sub(obj.__func__), "self": sub(obj.__self__)}
    if isinstance(obj, types.FunctionType):
        cells = []
        for c in obj.__closure__ or ():
            try:
                cells.append(sub(c.cell_contents))
            except ValueError:  # an empty cell
                cells.append(None)
        return {
            "function": f"{obj.__module__}.{obj.__qualname__}",
            "code": _code_digest(obj.__code__),
            "defaults": sub(obj.__defaults__),
            "kwdefaults": sub(obj.__kwdefaults__),
            "closure": cells,
        }
    if callable(obj) and not hasattr(obj, "__dict__"):  # builtins
        return getattr(obj, "__qualname__", None) or _qualname(obj)
    if not hasattr(obj, "__dict__"):
        return {"class": _qualname(obj)}
    return {"class": _qualname(obj), "state": sub({k: v for k, v in vars(obj).items() if k not in _RUN_STATE})}


def _files_state(item: Mapping) -> str:
    """What makes the files an item names different: each existing file's size and modification time (every file of
    a DICOM series folder), so a cache entry is never reused after a file was replaced under the same name."""
    state = []
    for k in sorted(map(str, item)):
        v = item[k]
        if not isinstance(v, (str, PurePath)) or not str(v) or len(str(v)) > 4096:
            continue
        p = Path(v)
        try:
            files = sorted(p.iterdir()) if p.is_dir() else [p] if p.is_file() else []
            for f in files:
                st = f.stat()
                state.append(f"{k}:{f.name}:{st.st_size}:{st.st_mtime_ns}")
        except OSError:
            continue
    return "|".join(state)


def transform_fingerprint(transform: Any) -> str:
    """A digest of a transform's configuration (and of the package and MONAI versions), stable across runs.

    Two transforms with the same classes, parameters and functions (same code, defaults and closure values) give
    the same fingerprint; changing a parameter changes it. The disk cache of :class:`SliceDataset` keys its files
    with it, so a changed ``volume_transform`` never reads the slices of the old one.

    Example:
        >>> from monai.transforms import ScaleIntensityd
        >>> transform_fingerprint(ScaleIntensityd("image")) == transform_fingerprint(ScaleIntensityd("image"))
        True
        >>> transform_fingerprint(ScaleIntensityd("image")) == transform_fingerprint(ScaleIntensityd("image", 0, 2))
        False
    """
    desc = {"monai_anomaly": __version__, "monai": monai.__version__, "transform": _describe_config(transform)}
    return _digest(json.dumps(desc, sort_keys=True, default=str).encode("utf-8"))


class SliceDataset(Dataset):
    """2D slices of volumes (and 2D images), computed once, cached, and augmented per access.

    For each datalist item, ``volume_transform`` runs once (e.g. load, orient, normalise per volume, cut into slices)
    and returns one dict (a 2D image: one "slice") or a list of dicts (the slices of a volume). The flattened list of
    slice dicts is kept in memory, or in ``cache_dir`` on disk (reused by later runs), so the per-volume work is never
    repeated. ``slice_transform`` (e.g. random augmentation) runs on a copy of a slice at every access.
    ``len(dataset)`` is the number of slices.

    The disk cache holds one ``<key>.npz`` file per item: its tensors and arrays, and a JSON tree of the rest (plain
    values, tuples, dicts, MetaTensor metadata and applied operations). It is read with ``allow_pickle=False`` and
    never unpickles anything, so a file planted in ``cache_dir`` cannot run code: a file that does not decode as a
    cache file of its item is ignored with a warning, recomputed and replaced. The key is a digest of the item, of the
    size and modification time of the files it names, and of :func:`transform_fingerprint` of ``volume_transform``
    (its classes, parameters and functions' code), so a replaced file or a changed transform writes new files. An
    item whose slices hold values of other types (arbitrary Python objects) is not stored on disk and is recomputed
    each run (one warning).

    Args:
        items: datalist items (see ``docs/architecture.md``).
        volume_transform: deterministic callable on one item returning a dict or a list of dicts; ``None`` keeps the
            items as they are. Random transforms belong in ``slice_transform`` (a random one here raises ValueError).
        slice_transform: callable applied to each slice dict at access; ``None`` returns the cached slice.
        cache_dir: folder for a disk cache (``.npz`` files keyed by the item and the ``volume_transform``, reused by
            later runs); ``None`` caches in memory.
        skip_bad: skip items whose volume transform fails (warning, recorded in ``skipped``) instead of raising.
        num_workers: threads computing the cache (0: in the calling thread).
        slice_filter: optional predicate on a slice dict, applied once when caching (e.g. drop empty slices).
        copy_cache: give ``slice_transform`` a deep copy of the cached slice, so in-place changes do not leak into
            the cache.
        image_key: the key naming the file of an item, for error messages.

    Attributes:
        slices: the cached slice dicts.
        skipped: ``[{"path", "problem"}, ...]`` for each item skipped.
        skipped_slices: the slices of the volumes that the slice selection left out, with the reason
            (``[{"path", "volume_id", "slice_index", "foreground_fraction", "skip_reason"[, "label"]}, ...]``), when
            ``volume_transform`` records them (``VolumeToSlicesd(record_skipped=True)``).

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
        self.skipped_slices: list[dict] = []
        for item, res in zip(self.items, results):
            recorded = False
            for s in res if isinstance(res, list) else [res]:
                if not isinstance(s, Mapping):
                    raise TypeError(f"volume_transform must return a dict or a list of dicts, got {type(s).__name__}")
                if _BAD in s:
                    log.handle(BadInputError(s[_BAD], s["problem"]))
                    continue
                if AnomalyKeys.SKIPPED_SLICES in s:  # the volume's slices left out (VolumeToSlicesd(record_skipped))
                    s = dict(s)
                    left_out = s.pop(AnomalyKeys.SKIPPED_SLICES)
                    if not recorded:
                        recorded = True
                        vid = str(s.get(AnomalyKeys.VOLUME_ID, ""))
                        where = {"path": str(item.get(image_key, "")), "volume_id": vid}
                        self.skipped_slices.extend({**where, **dict(k)} for k in left_out or [])
                if slice_filter is None or slice_filter(s):
                    self.slices.append(s)
        self.skipped: list[dict] = log.as_list()

    def _compute(self, transform: _CatchBadInput, num_workers: int) -> list:
        if self.cache_dir is None:
            cds = CacheDataset(
                self.items, Compose([transform]), num_workers=max(num_workers, 1), progress=False, copy_cache=False
            )
            return [cds[i] for i in range(len(cds))]
        cache_dir = self.cache_dir
        cache_dir.mkdir(parents=True, exist_ok=True)
        fingerprint = transform_fingerprint(transform.transform)
        not_stored: list[str] = []

        def one(i: int):
            key = _digest(pickle_hashing(self.items[i]) + fingerprint.encode() + _files_state(self.items[i]).encode())
            path = cache_dir / f"{key}.npz"
            if path.is_file():
                try:
                    return _read_cache(path, key)
                except Exception as e:  # noqa: BLE001 - a corrupt or foreign file is ignored (never run) and replaced
                    logger.warning("ignoring slice cache file %s (%s); recomputing it", path, _cache_problem(e))
            res = transform(deepcopy(self.items[i]))
            reset_ops_id(res)  # transform instance ids differ between runs
            failed = any(_BAD in r for r in (res if isinstance(res, list) else [res]) if isinstance(r, Mapping))
            if not failed:  # never keep a failure on disk: a fixed file is retried next time
                try:
                    _write_cache(path, key, res)
                except _Uncacheable as e:
                    not_stored.append(f"{self.items[i].get(transform.image_key, i)} (holds {e})")
                except OSError as e:
                    logger.warning("cannot write slice cache file %s (%s)", path, e)
            return res

        if num_workers > 0:
            with ThreadPool(num_workers) as pool:
                results = pool.map(one, range(len(self.items)))
        else:
            results = [one(i) for i in range(len(self.items))]
        if not_stored:
            logger.warning(
                "slice cache: %d item(s) not stored on disk, recomputed each run (values the cache cannot store "
                "safely), e.g. %s",
                len(not_stored),
                not_stored[0],
            )
        return results

    def __len__(self) -> int:
        return len(self.slices)

    def __getitem__(self, index: int) -> dict:
        s = self.slices[index]
        if self.transform is None:
            return s
        return self.transform(deepcopy(s) if self.copy_cache else dict(s))
