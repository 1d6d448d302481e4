"""The same image labelled normal and abnormal: found when a data set is read, warned about, listed in the report.

A file that appears both as a normal and as an anomaly (an exact copy, or a near-duplicate: the same picture
re-encoded or resized, found by perceptual hash with the maintained ``imagehash`` library) makes every number on that
data set wrong in a way no metric shows. ``python -m monai_anomaly audit`` studies duplicates in depth; this check is
the cheap part that runs on every ``train`` and ``evaluate``.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from monai.utils import optional_import

from monai_anomaly.utils.enums import AnomalyKeys

__all__ = ["find_label_conflicts", "warn_label_conflicts", "conflict_warnings"]

imagehash, _has_imagehash = optional_import("imagehash")
logger = logging.getLogger("monai_anomaly")
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def _md5(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _phash(path: Path) -> tuple[str | None, np.ndarray | None]:
    """The 64-bit perceptual hash of an image and a 32x32 thumbnail (to confirm a hash match)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            grey = im.convert("L")
            thumb = np.asarray(grey.resize((32, 32), Image.BILINEAR), dtype=np.float64).ravel()
            if thumb.std() == 0:  # a blank image: not a duplicate of anything
                return None, None
            return str(imagehash.phash(grey)), thumb
    except Exception:  # noqa: BLE001 - an unreadable file is reported by the loaders, not here
        return None, None


def find_label_conflicts(
    items: Iterable[Mapping[str, Any]], near: bool = True, hash_threshold: int = 2, min_correlation: float = 0.98
) -> list[dict[str, Any]]:
    """Groups of files that hold the same image under both labels.

    Args:
        items: datalist items (``image`` path and ``label`` 0 / 1; other labels are ignored).
        near: also pair 2D images (PNG/JPEG) of different labels whose 64-bit perceptual hashes differ in at most
            ``hash_threshold`` bits and whose 32x32 thumbnails correlate at least ``min_correlation`` (re-encoded or
            resized copies); needs ``imagehash``. Exact copies (same bytes) are always found.

    Returns:
        ``[{"kind": "exact" | "near", "paths": [...], "labels": [...]}, ...]``, one per group that holds both labels.

    Example:
        >>> find_label_conflicts([{"image": "a.png", "label": 0}])
        []
    """
    rows = [
        (Path(str(it[AnomalyKeys.IMAGE.value])), int(it.get(AnomalyKeys.LABEL.value, -1)))
        for it in items
        if int(it.get(AnomalyKeys.LABEL.value, -1)) in (0, 1)
    ]
    rows = [(p, lab) for p, lab in rows if p.is_file()]
    out: list[dict[str, Any]] = []
    if len({lab for _, lab in rows}) < 2:
        return out
    seen: set[frozenset[str]] = set()
    keys: dict[str, list[tuple[Path, int]]] = defaultdict(list)
    for p, lab in rows:
        keys[_md5(p)].append((p, lab))
    for members in keys.values():
        if len({lab for _, lab in members}) == 2:
            seen.add(frozenset(str(p) for p, _ in members))
            out.append({"kind": "exact", "paths": [str(p) for p, _ in members], "labels": [lab for _, lab in members]})
    if near and _has_imagehash:
        from monai_anomaly.data.audit.duplicates import hamming_pairs

        imgs = [(p, lab) for p, lab in rows if p.suffix.lower() in _IMAGE_SUFFIXES]
        found = [(p, lab, _phash(p)) for p, lab in imgs]
        found = [(p, lab, h) for p, lab, h in found if h is not None and h[0] is not None]
        hexes = [h[0] for *_, h in found]
        for i, j, _ in hamming_pairs(hexes, threshold=hash_threshold) if len(hexes) > 1 else []:
            (pi, li, (_, ti)), (pj, lj, (_, tj)) = found[i], found[j]
            if li == lj or frozenset((str(pi), str(pj))) in seen or any(str(pi) in g and str(pj) in g for g in seen):
                continue
            if float(np.corrcoef(ti, tj)[0, 1]) < min_correlation:  # hashes agree but the pictures do not
                continue
            seen.add(frozenset((str(pi), str(pj))))
            out.append({"kind": "near", "paths": [str(pi), str(pj)], "labels": [li, lj]})
    return out


def warn_label_conflicts(datalist: Any, near: bool = True, limit: int = 5) -> Any:
    """Find the label conflicts of a :class:`~monai_anomaly.data.layouts.Datalist`, store them in its ``conflicts``
    and log a warning naming the first ``limit`` groups. Returns the datalist (for use inside a bundle config).
    """
    conflicts = find_label_conflicts(datalist.items, near=near)
    datalist.conflicts = conflicts
    if conflicts:
        n = int(np.sum([len(c["paths"]) for c in conflicts]))
        shown = "; ".join(" = ".join(Path(p).name for p in c["paths"]) + f" ({c['kind']})" for c in conflicts[:limit])
        more = f"; and {len(conflicts) - limit} more groups" if len(conflicts) > limit else ""
        logger.warning(
            "%s: %d group(s) of %d files hold the same image labelled both normal and abnormal: %s%s. Scores on this "
            "data set mix the two; run `python -m monai_anomaly audit` and fix the labels.",
            datalist.root,
            len(conflicts),
            n,
            shown,
            more,
        )
    return datalist


def conflict_warnings(datalist: Any) -> list[str]:
    """One line per conflict group, for a report's WARNINGS block."""
    return [
        "same image labelled normal and abnormal ("
        + c["kind"]
        + "): "
        + ", ".join(f"{p} (label {lab})" for p, lab in zip(c["paths"], c["labels"]))
        for c in getattr(datalist, "conflicts", [])
    ]
