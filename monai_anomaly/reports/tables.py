"""The report's tables: the CSV columns, row normalisation, CSV writing and reading a score CSV back."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from monai_anomaly.utils.errors import BadInputError
from monai_anomaly.utils.text import safe_text

__all__ = ["DETAILED_COLUMNS", "VOLUME_COLUMNS", "normalise_rows", "plain_value", "read_scores_csv", "write_csv"]

DETAILED_COLUMNS = ("path", "volume_id", "slice_index", "label", "score", "prediction")
VOLUME_COLUMNS = ("volume_id", "n_slices", "label", "volume_score", "prediction")


def plain_value(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        v = v.detach().cpu()
        return v.item() if v.numel() == 1 else v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.item() if v.size == 1 else v.tolist()
    return v


def _label(v: Any) -> int:
    v = plain_value(v)
    if v is None or v == "":
        return -1
    try:
        f = float(v)
    except (TypeError, ValueError):
        return -1
    return int(f) if math.isfinite(f) and int(f) in (0, 1) else -1


def normalise_rows(slice_rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for i, r in enumerate(slice_rows):
        if "score" not in r:
            raise ValueError(f"slice row {i} has no 'score': {dict(r)}")
        path = safe_text(str(plain_value(r.get("path", "")) or ""))
        vid = plain_value(r.get("volume_id"))
        if vid is None or vid == "":
            vid = os.path.basename(path).split(".")[0] if path else f"item_{i}"
        row = {
            "path": path,
            "volume_id": safe_text(str(vid)),
            "slice_index": int(plain_value(r.get("slice_index", 0)) or 0),
            "label": _label(r.get("label", -1)),
            "score": float(plain_value(r["score"])),
        }
        if r.get("calibrated_score") is not None:
            row["calibrated_score"] = float(plain_value(r["calibrated_score"]))
        rows.append(row)
    return rows


def write_csv(path: str, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({c: ("" if r.get(c) is None else r.get(c)) for c in columns})


def read_scores_csv(csv_path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read a score CSV with a ``score`` column and optional ``path``, ``volume_id``, ``slice_index``, ``label``,
    ``calibrated_score`` columns (e.g. an earlier ``detailed_results.csv``).

    Raises:
        BadInputError: missing file, no ``score`` column, or a score / label that is not a number (row named).
    """
    csv_path = os.fspath(csv_path)
    if not os.path.isfile(csv_path):
        raise BadInputError(csv_path, "score CSV not found")
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or "score" not in reader.fieldnames:
            raise BadInputError(csv_path, f"needs a 'score' column, found columns {reader.fieldnames}")
        rows = []
        for line, r in enumerate(reader, start=2):
            if r.get("skip_reason") and r.get("score") in (None, ""):  # a slice that was not scored
                continue
            try:
                row: dict[str, Any] = {"score": float(r["score"])}
                if r.get("label") not in (None, ""):
                    row["label"] = int(float(r["label"]))
                if r.get("slice_index") not in (None, ""):
                    row["slice_index"] = int(float(r["slice_index"]))
                if r.get("calibrated_score") not in (None, ""):
                    row["calibrated_score"] = float(r["calibrated_score"])
            except (TypeError, ValueError) as e:
                raise BadInputError(csv_path, f"line {line}: {e}") from e
            for k in ("path", "volume_id"):
                if r.get(k):
                    row[k] = r[k]
            rows.append(row)
    if not rows:
        raise BadInputError(csv_path, "has no data rows")
    return rows
