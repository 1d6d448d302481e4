"""Near-duplicate and exact-duplicate detection of the data audit.

:func:`hamming_pairs` finds the files whose perceptual hashes differ in at most a threshold of bits;
:func:`duplicate_groups` links them (transitively, with exact md5 copies) into groups, optionally checking each
hash link with the correlation of the two files' thumbnails, and says which groups cross the train/val/test split
and which hold both a normal and an abnormal file.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["duplicate_groups", "hamming_pairs"]


def _hash_words(hexes: Sequence[str]) -> np.ndarray:
    """Hex hashes as an ``(n, words)`` uint64 array (all hashes must have the same length)."""
    nbytes = len(hexes[0]) // 2
    pad = (-nbytes) % 8
    raw = np.frombuffer(b"".join(bytes.fromhex(h) + b"\0" * pad for h in hexes), dtype=np.uint8)
    return raw.reshape(len(hexes), -1).view(np.uint64)


def _popcount(x: np.ndarray) -> np.ndarray:
    """Set bits per element (``numpy.bitwise_count`` needs numpy >= 2; the MONAI Label environment has numpy < 2)."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x)
    bits = np.unpackbits(np.ascontiguousarray(x).view(np.uint8).reshape(*x.shape, x.dtype.itemsize), axis=-1)
    return bits.sum(-1, dtype=np.int64)


def hamming_pairs(hexes: Sequence[str], threshold: int, chunk: int = 512) -> list[tuple[int, int, int]]:
    """All pairs ``(i, j, distance)`` with ``i < j`` whose hashes differ in at most ``threshold`` bits.

    Example:
        >>> hamming_pairs(["ff00", "ff01", "00ff"], threshold=2)
        [(0, 1, 1)]
    """
    if len(hexes) < 2:
        return []
    if len({len(h) for h in hexes}) != 1:
        raise ValueError("all hashes must have the same length")
    words = _hash_words(hexes)
    n = len(hexes)
    out: list[tuple[int, int, int]] = []
    for start in range(0, n, chunk):
        block = words[start : start + chunk]
        dist = _popcount(block[:, None, :] ^ words[None, :, :]).sum(-1)
        ii, jj = np.nonzero(dist <= threshold)
        for i, j in zip(ii.tolist(), jj.tolist()):
            i += start
            if i < j:
                out.append((i, j, int(dist[i - start, j])))
    return out


def _components(n: int, pairs: Sequence[tuple[int, int]]) -> list[int]:
    """Union-find component index of each of ``n`` nodes, numbered by first appearance."""
    parent = list(range(n))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for a, b in pairs:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    ids: dict[int, int] = {}
    return [ids.setdefault(find(i), len(ids)) for i in range(n)]


def duplicate_groups(
    records: Sequence[Mapping[str, Any]],
    hash_key: str = "phash",
    threshold: int = 4,
    thumbnails: Sequence[np.ndarray] | None = None,
    min_correlation: float | None = None,
) -> tuple[list[int], list[dict[str, Any]], list[dict[str, Any]]]:
    """Near-duplicate groups (hash distance <= ``threshold``, linked transitively) and exact (md5) duplicates.

    Args:
        records: per-file dicts with ``md5``, ``hash_key``, ``path``, ``label``, ``split`` (and ``cls``).
        hash_key: the record key holding the hex hash to compare.
        threshold: the largest Hamming distance that links two files.
        thumbnails: per record, a z-scored thumbnail (flattened); the correlation of each hash link is then
            recorded (``min_link_correlation`` of a group).
        min_correlation: with ``thumbnails``, keep only the hash links whose thumbnails correlate at least this
            much (exact md5 copies always link). Use it when hash links chain distinct images into huge groups.

    Returns:
        ``(component, groups, exact_groups)``: the component index of each record; the groups of two or more
        records, each ``{"group", "size", "members" (record indices), "paths", "labels", "classes", "splits",
        "crosses_split", "both_classes", "exact", "max_link_distance", "min_link_correlation"}``, largest first;
        and the md5 groups of two or more records (``{"md5", "size", "members", "paths"}``).
    """
    n = len(records)
    near = hamming_pairs([str(r[hash_key]) for r in records], threshold) if n else []
    corr: list[float | None] = [None] * len(near)
    if thumbnails is not None and near:
        t = np.stack([np.asarray(x, dtype=np.float64).ravel() for x in thumbnails])
        ii = np.asarray([i for i, _, _ in near])
        jj = np.asarray([j for _, j, _ in near])
        corr = (t[ii] * t[jj]).mean(axis=1).tolist()
        if min_correlation is not None:
            keep = [k for k, c in enumerate(corr) if c >= min_correlation]
            near, corr = [near[k] for k in keep], [corr[k] for k in keep]
    by_md5: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        by_md5[str(r["md5"])].append(i)
    exact_pairs = [(m[0], j) for m in by_md5.values() for j in m[1:]]
    comp = _components(n, [(i, j) for i, j, _ in near] + exact_pairs)
    link_max: dict[int, int] = defaultdict(int)
    link_corr: dict[int, float] = {}
    for (i, _j, d), c in zip(near, corr):
        link_max[comp[i]] = max(link_max[comp[i]], d)
        if c is not None:
            link_corr[comp[i]] = min(link_corr.get(comp[i], 1.0), float(c))
    members: dict[int, list[int]] = defaultdict(list)
    for i, c in enumerate(comp):
        members[c].append(i)
    groups = []
    for c, idx in members.items():
        if len(idx) < 2:
            continue
        labels = sorted({int(records[i]["label"]) for i in idx})
        splits = sorted({str(records[i].get("split") or "") for i in idx})
        groups.append(
            {
                "group": c,
                "size": len(idx),
                "members": idx,
                "paths": [str(records[i]["path"]) for i in idx],
                "labels": labels,
                "classes": sorted({str(records[i].get("cls", "")) for i in idx}),
                "splits": splits,
                "crosses_split": len(splits) > 1,
                "both_classes": 0 in labels and 1 in labels,
                "exact": len({records[i]["md5"] for i in idx}) == 1,
                "max_link_distance": link_max.get(c, 0),
                "min_link_correlation": link_corr.get(c),
            }
        )
    groups.sort(key=lambda g: (-g["size"], g["group"]))
    exact = [
        {"md5": m, "size": len(idx), "members": idx, "paths": [str(records[i]["path"]) for i in idx]}
        for m, idx in by_md5.items()
        if len(idx) > 1
    ]
    exact.sort(key=lambda g: (-g["size"], g["paths"][0]))
    return comp, groups, exact
