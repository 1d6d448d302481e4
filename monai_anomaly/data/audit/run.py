"""Data audit: duplicates, split leaks, label conflicts and acquisition shortcuts in an anomaly-detection data set.

Run it before trusting a number. :func:`audit_dataset` reads a data set with the same datalist builder and the same
split as the bundles (:func:`~monai_anomaly.data.layouts.build_datalist`, then
:func:`~monai_anomaly.data.splits.split_datalist` with the defaults of ``bundles/autoencoder_anomaly``), computes
per-file statistics (perceptual hashes, size, colour mode, format, JPEG quality, brightness, foreground fraction,
high-frequency energy; for volumes shape, spacing, dtype, intensity percentiles and a hash of the middle axial slice),
and then finds:

* near-duplicate groups (connected components of files whose perceptual-hash Hamming distance is at most a
  threshold) and exact duplicates (same md5);
* groups that cross the train/val/test split, and groups that hold both a normal and an abnormal file;
* a per-class statistics table;
* a cross-validated "shortcut AUROC": how well a trivial classifier separates normal from abnormal using those
  statistics alone (no anatomy), plus each feature's own AUROC.

:func:`~monai_anomaly.data.audit.report.write_audit_report` writes the human report and the tables.
``python -m monai_anomaly audit DATASET`` runs both.

The work is done by the other modules of this package: ``features`` (per-file statistics), ``duplicates``
(groups), ``shortcuts`` (per-class statistics, shortcut AUROC) and ``report`` (findings and report files).
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from monai_anomaly.data.audit.duplicates import duplicate_groups
from monai_anomaly.data.audit.features import THUMB_KEY, file_statistics
from monai_anomaly.data.audit.report import summarize
from monai_anomaly.data.audit.shortcuts import FILE_FEATURES, LABEL_NAMES, class_statistics, shortcut_auroc
from monai_anomaly.data.layouts import build_datalist
from monai_anomaly.data.splits import split_datalist
from monai_anomaly.utils.enums import AnomalyKeys
from monai_anomaly.utils.errors import BadInputError, SkipLog

__all__ = ["AuditResult", "audit_dataset"]

logger = logging.getLogger("monai_anomaly")


@dataclass
class AuditResult:
    """Everything :func:`audit_dataset` found.

    Attributes:
        dataset_dir: the folder (or manifest) audited.
        layout: the layout it was read as.
        kind: ``"2d"``, ``"3d"`` or ``"mixed"``.
        params: the audit's settings (hash, threshold, split fractions, seed, ...).
        records: one dict of statistics per file (``path``, ``rel_path``, ``label``, ``cls``, ``role``, ``split``,
            ``group`` (the datalist's), ``dup_group``, ``dup_group_size`` and the statistics of
            :func:`~monai_anomaly.data.audit.features.image_statistics` /
            :func:`~monai_anomaly.data.audit.features.volume_statistics`).
        groups: near-duplicate groups of two or more files (see :func:`duplicate_groups`).
        exact_groups: files with the same md5.
        class_stats: :func:`class_statistics` rows.
        shortcut: :func:`shortcut_auroc` result on all statistics (what the warning is about).
        split_counts: ``{split: {label name: count}}`` of the split the bundles use.
        skipped: ``[{"path", "problem"}]`` bad inputs skipped (``skip_bad``).
        warnings: the serious findings, one sentence each.
        findings: the short human summary (warnings first).
        shortcut_file: :func:`shortcut_auroc` on the file/acquisition features only (:data:`FILE_FEATURES`: size,
            colour mode, format, JPEG quality, bytes per pixel, spacing, dtype), leaving out the intensity statistics
            (brightness, contrast, foreground, HF energy), which a large lesion can move too.

    Example:
        >>> result = audit_dataset("brain_tumor_yes_no")  # doctest: +SKIP
        >>> write_audit_report(result, "audit")  # doctest: +SKIP
    """

    dataset_dir: str
    layout: str
    kind: str
    params: dict[str, Any]
    records: list[dict[str, Any]]
    groups: list[dict[str, Any]]
    exact_groups: list[dict[str, Any]]
    class_stats: list[dict[str, Any]]
    shortcut: dict[str, Any]
    split_counts: dict[str, dict[str, int]]
    skipped: list[dict[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    shortcut_file: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def crossing_groups(self) -> list[dict[str, Any]]:
        """Near-duplicate groups whose files fall in more than one split."""
        return [g for g in self.groups if g["crosses_split"]]

    @property
    def both_class_groups(self) -> list[dict[str, Any]]:
        """Near-duplicate groups holding both a normal and an abnormal file."""
        return [g for g in self.groups if g["both_classes"]]


def _rel(path: str, root: Path) -> str:
    try:
        return Path(os.path.relpath(path, root if root.is_dir() else root.parent)).as_posix()
    except ValueError:
        return path


def audit_dataset(
    dataset_dir: str | os.PathLike,
    layout: str = "auto",
    skip_bad: bool = False,
    default_label: int | None = None,
    hash_method: str = "phash",
    hash_size: int = 8,
    hash_threshold: int = 4,
    min_correlation: float | None = None,
    val_fraction: float = 0.15,
    test_fraction: float = 0.3,
    seed: int = 0,
    n_splits: int = 5,
    warn_auroc: float = 0.8,
    progress: bool = True,
) -> AuditResult:
    """Audit a data set: duplicates, split leaks, label conflicts, per-class statistics and the shortcut AUROC.

    Args:
        dataset_dir: a data-set folder in any layout :func:`~monai_anomaly.data.layouts.build_datalist` reads, or a
            CSV manifest.
        layout: ``"auto"`` or a layout name (``normal_abnormal``, ``oct2017``, ``brainomaly``, ``volumes_csv``,
            ``manifest``).
        skip_bad: skip unreadable files (listed in the result) instead of raising.
        default_label: the label of volumes in a folder without labels.csv (e.g. a lone DICOM series: 0).
        hash_method: ``"phash"`` or ``"dhash"``: the hash near-duplicates are grouped by (both are recorded).
        hash_size: hash side; 8 gives 64-bit hashes, 16 gives 256-bit ones.
        hash_threshold: the largest Hamming distance that links two files into one group.
        min_correlation: also require a hash link's two 32x32 z-scored thumbnails to correlate at least this much
            (e.g. 0.98); ``None`` keeps every hash link. The report warns when groups chain (one group holding many
            files): registered, skull-stripped slices of different subjects can be hash neighbours.
        val_fraction: as in the bundle's ``train.json`` (0.15).
        test_fraction: as in the bundle's ``train.json`` (0.3).
        seed: split seed, as in the bundle's ``train.json`` (0); also seeds the shortcut classifier's folds.
        n_splits: folds of the shortcut classifier.
        warn_auroc: shortcut AUROC at or above which a warning is raised.
        progress: show a tqdm progress bar while reading the files.

    Returns:
        an :class:`AuditResult`.

    Raises:
        BadInputError: a missing folder, no known layout, or (unless ``skip_bad``) an unreadable file; the message
            names the file.
        ValueError: an unknown ``hash_method`` or a bad split fraction.
    """
    from tqdm import tqdm

    if hash_method not in ("phash", "dhash"):
        raise ValueError(f"hash_method must be 'phash' or 'dhash', got {hash_method!r}")
    if int(hash_size) < 2:
        raise ValueError(f"hash_size must be at least 2, got {hash_size}")
    dl = build_datalist(dataset_dir, layout=layout, skip_bad=skip_bad, default_label=default_label)
    root = Path(dl.root)
    splits = split_datalist(dl.items, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)
    split_of = {it[AnomalyKeys.IMAGE.value]: s for s, its in splits.items() for it in its}
    log = SkipLog(skip_bad)
    records: list[dict[str, Any]] = []
    thumbs: list[np.ndarray] = []
    items = dl.items
    bar = tqdm(items, desc="audit: reading files", unit="file", disable=not progress or len(items) < 20, mininterval=1)
    for it in bar:
        path = str(it[AnomalyKeys.IMAGE.value])
        try:
            stats = file_statistics(path, hash_size=hash_size)
        except BadInputError as e:
            log.handle(e)
            continue
        rec: dict[str, Any] = {
            "path": path,
            "rel_path": _rel(path, root),
            "label": int(it.get(AnomalyKeys.LABEL.value, -1)),
            "cls": str(it.get(AnomalyKeys.CLASS.value, "")),
            "role": str(it.get(AnomalyKeys.ROLE.value, "")),
            "split": split_of.get(path, ""),
            "group": str(it.get(AnomalyKeys.GROUP.value, "")),
        }
        thumbs.append(stats.pop(THUMB_KEY))
        rec.update(stats)
        records.append(rec)
    if not records:
        raise BadInputError(root, "no readable file to audit")
    skipped = list(dl.skipped) + log.as_list()

    comp, groups, exact = duplicate_groups(
        records, hash_method, hash_threshold, thumbnails=thumbs, min_correlation=min_correlation
    )
    sizes = Counter(comp)
    for r, c in zip(records, comp):
        r["dup_group"] = c
        r["dup_group_size"] = sizes[c]
    kinds = {r["kind"] for r in records}
    kind = kinds.pop() if len(kinds) == 1 else "mixed"
    shortcut = shortcut_auroc(records, groups=comp, n_splits=n_splits, seed=seed, warn_auroc=warn_auroc)
    shortcut_file = shortcut_auroc(
        records, groups=comp, features=FILE_FEATURES, n_splits=n_splits, seed=seed, warn_auroc=warn_auroc
    )
    split_counts: dict[str, dict[str, int]] = {}
    for r in records:
        d = split_counts.setdefault(r["split"] or "(none)", {})
        name = LABEL_NAMES.get(r["label"], str(r["label"]))
        d[name] = d.get(name, 0) + 1
    params = {
        "layout": str(layout),
        "skip_bad": bool(skip_bad),
        "default_label": default_label,
        "hash_method": hash_method,
        "hash_size": int(hash_size),
        "hash_bits": int(hash_size) ** 2,
        "hash_threshold": int(hash_threshold),
        "min_correlation": None if min_correlation is None else float(min_correlation),
        "val_fraction": float(val_fraction),
        "test_fraction": float(test_fraction),
        "seed": int(seed),
        "n_splits": int(n_splits),
        "warn_auroc": float(warn_auroc),
    }
    result = AuditResult(
        dataset_dir=str(root),
        layout=str(dl.layout.value if hasattr(dl.layout, "value") else dl.layout),
        kind=kind,
        params=params,
        records=records,
        groups=groups,
        exact_groups=exact,
        class_stats=class_statistics(records),
        shortcut=shortcut,
        split_counts=split_counts,
        skipped=skipped,
        shortcut_file=shortcut_file,
    )
    result.warnings, result.findings = summarize(result)
    return result
