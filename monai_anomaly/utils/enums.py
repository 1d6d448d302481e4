"""Enumerations shared by every part of monai_anomaly (the one output contract)."""

from __future__ import annotations

from monai.utils import StrEnum

__all__ = ["AnomalyKeys", "Layout", "Role"]


class AnomalyKeys(StrEnum):
    """Dictionary keys that every method, transform, handler and report uses.

    Every method at inference yields ``IMAGE``, ``RECONSTRUCTION``, ``ANOMALY_MAP``, ``SCORE`` (per slice/image),
    ``VOLUME_SCORE``, ``LABEL``, ``VOLUME_ID`` and ``SLICE_INDEX``.
    """

    IMAGE = "image"
    RECONSTRUCTION = "reconstruction"
    LOGITS = "logits"
    ANOMALY_MAP = "anomaly_map"
    SCORE = "score"
    VOLUME_SCORE = "volume_score"
    LABEL = "label"
    VOLUME_ID = "volume_id"
    SLICE_INDEX = "slice_index"
    MASK = "mask"
    FOREGROUND = "foreground"
    PATH = "path"
    GROUP = "group"
    SPLIT = "split"
    ROLE = "role"
    CLASS = "cls"
    PREDICTION = "prediction"
    RESULT = "result"
    SKIPPED_SLICES = "skipped_slices"  # a volume's slices the slice selection left out, each with its reason
    SCAN_INDEX = "scan_index"  # a scan's position in the inference datalist (the order of every output file)
    TRUE_LABEL = "true_label"  # the hidden label of an unannotated (mixed) sample: for evaluating AUCp only


class Role(StrEnum):
    """Role of a datalist item for training: known normal, unannotated mixed, or labelled evaluation data."""

    NORMAL = "normal"
    MIXED = "mixed"
    EVAL = "eval"


class Layout(StrEnum):
    """Folder layouts that :func:`monai_anomaly.data.layouts.build_datalist` understands."""

    NORMAL_ABNORMAL = "normal_abnormal"
    OCT2017 = "oct2017"
    BRAINOMALY = "brainomaly"
    VOLUMES_CSV = "volumes_csv"
    MANIFEST = "manifest"
