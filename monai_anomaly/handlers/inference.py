"""Write what an inference run scored: per-slice and per-volume scores (CSV/JSON), NIfTI maps and heatmap PNGs."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.utils import CommonKeys, IgniteInfo, min_version, optional_import

from monai_anomaly.metrics.thresholds import DecisionThresholds
from monai_anomaly.reports.nifti import save_map_nifti
from monai_anomaly.reports.plots import plot_panel
from monai_anomaly.reports.writer import write_report
from monai_anomaly.transforms.spatial import restore_geometry
from monai_anomaly.utils.enums import AnomalyKeys
from monai_anomaly.utils.errors import SkipLog
from monai_anomaly.utils.text import safe_file_stem, safe_text

Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")
if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine")

__all__ = ["InferenceResultWriter"]

logger = logging.getLogger("monai_anomaly")


def _as_list(x: Any) -> list:
    if isinstance(x, list):
        return x
    return [x] if x is not None else []


def _meta(item: Mapping, key: str) -> dict:
    v = item.get(key)
    meta = getattr(v, "meta", None)
    if meta is None:
        meta = item.get(f"{key}_meta_dict", {})
    return dict(meta)


def _affine(meta: Mapping) -> np.ndarray:
    a = meta.get("affine")
    if a is None:
        return np.eye(4)
    a = np.asarray(a.detach().cpu() if isinstance(a, torch.Tensor) else a, dtype=np.float64)
    if a.shape == (3, 3):  # a 2D affine: embed it in 4x4
        full = np.eye(4)
        full[:2, :2], full[:2, 3] = a[:2, :2], a[:2, 2]
        a = full
    return a


class InferenceResultWriter:
    """Collect each scan's result during an inference run and write them all at the end.

    For every scan it expects, in the evaluator's decollated output, the anomaly map under ``map_key`` (``(1, H, W)``
    for 2D images, ``(1, H, W, D)`` for volumes) and the JSON-able result under ``result_key`` (as
    :class:`~monai_anomaly.transforms.postprocessing.VolumeAnomalyScored` writes it). At the end it writes into
    ``output_dir``: ``detailed_results.csv`` (one row per slice/image; a slice the foreground selection left out has
    no score and its ``skip_reason``, as in the result's ``skipped_slices`` in ``scores.json``),
    ``volume_results.csv`` (one row per scan),
    ``scores.json`` (every scan's result), ``metrics.json`` / ``anomaly_report.txt`` / ``score_distribution.png``
    (from :func:`~monai_anomaly.reports.writer.write_report`), ``maps/<volume_id>_anomaly_map.nii.gz`` with the input's
    affine, and for 2D inputs ``maps/<volume_id>_heatmap.png``.

    Args:
        output_dir: the folder to write into.
        thresholds: the :class:`~monai_anomaly.metrics.thresholds.DecisionThresholds` the postprocessing decided
            with, recorded in the report.
        aggregation: the volume aggregation used, recorded in the report.
        map_key: key of the anomaly map in the output.
        image_key: key of the input image (for its metadata and the heatmap panels).
        result_key: key of the result dictionary.
        save_maps: write the NIfTI maps and PNG heatmaps.
        overwrite: replace existing files.
        skip_log: bad inputs skipped while building the datalist, listed in the report.
        aggregation_kwargs: ``k`` / ``q`` of the aggregation.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        thresholds: DecisionThresholds | None = None,
        aggregation: str = "mean",
        map_key: str = CommonKeys.PRED,
        image_key: str = AnomalyKeys.IMAGE,
        result_key: str = AnomalyKeys.RESULT,
        save_maps: bool = True,
        overwrite: bool = False,
        skip_log: SkipLog | Sequence | None = None,
        aggregation_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        self.aggregation_kwargs = dict(aggregation_kwargs or {})
        self.thresholds = thresholds if thresholds is not None else DecisionThresholds()
        self.output_dir = Path(output_dir)
        self.aggregation = aggregation
        self.map_key = map_key
        self.image_key = image_key
        self.result_key = result_key
        self.save_maps = save_maps
        self.overwrite = overwrite
        self.skip_log = skip_log
        self.rows: list[dict[str, Any]] = []
        self.volume_rows: list[dict[str, Any]] = []
        self.results: list[dict[str, Any]] = []
        self.skipped_slices: list[dict[str, Any]] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self.reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.collect)
        engine.add_event_handler(Events.COMPLETED, self.write)

    def reset(self, engine: Engine | None = None) -> None:
        self.rows, self.volume_rows, self.results, self.skipped_slices = [], [], [], []

    def collect(self, engine: Engine) -> None:
        outputs = _as_list(engine.state.output)
        batch = _as_list(engine.state.batch)
        for i, out in enumerate(outputs):
            item = {**(batch[i] if i < len(batch) and isinstance(batch[i], Mapping) else {}), **out}
            self.add(item)

    def add(self, item: Mapping[str, Any]) -> None:
        """Record one scan's output (also usable without Ignite)."""
        meta = _meta(item, self.image_key)
        path = safe_text(str(meta.get("filename_or_obj", item.get(AnomalyKeys.PATH, ""))))
        volume_id = safe_text(str(item.get(AnomalyKeys.VOLUME_ID) or Path(path).name or f"scan{len(self.results)}"))
        result = dict(item.get(self.result_key) or {})
        slice_scores = result.get("slice_scores", [])
        label = item.get(AnomalyKeys.LABEL, -1)
        label = int(label.item() if isinstance(label, torch.Tensor) else label)
        scored = set(result.get("scored_slices", range(len(slice_scores))))
        for s, score in enumerate(slice_scores):
            if s not in scored:
                continue
            self.rows.append(
                {
                    AnomalyKeys.PATH: path,
                    AnomalyKeys.VOLUME_ID: volume_id,
                    AnomalyKeys.SLICE_INDEX: s,
                    AnomalyKeys.LABEL: label,
                    AnomalyKeys.SCORE: float(score),
                }
            )
        for k in result.get("skipped_slices") or []:
            self.skipped_slices.append({AnomalyKeys.PATH: path, AnomalyKeys.VOLUME_ID: volume_id, "label": -1, **k})
        if result.get("volume_score") is not None:  # the postprocessing's volume score, written as it is
            self.volume_rows.append(
                {
                    AnomalyKeys.VOLUME_ID: volume_id,
                    AnomalyKeys.VOLUME_SCORE: float(result["volume_score"]),
                    "n_slices": len(scored & set(range(len(slice_scores)))),
                    AnomalyKeys.LABEL: label,
                }
            )
        entry = {"volume_id": volume_id, "path": path, **result}
        amap = item.get(self.map_key)
        if self.save_maps and amap is not None:
            img = item.get(self.image_key)
            if isinstance(img, MetaTensor):  # back onto the file's voxel grid (e.g. from RAS to the file's orientation)
                amap = restore_geometry(amap.detach().cpu(), img.detach().cpu())
                meta = {**meta, "affine": amap.affine}
            amap = amap.detach().cpu().float() if isinstance(amap, torch.Tensor) else torch.as_tensor(amap)
            maps_dir = self.output_dir / "maps"
            nii = maps_dir / f"{safe_file_stem(volume_id)}_anomaly_map.nii.gz"
            arr = np.asarray(amap[0])
            save_map_nifti(arr if arr.ndim == 3 else arr[..., None], _affine(meta), nii, overwrite=self.overwrite)
            entry["anomaly_map"] = str(nii)
            if arr.ndim == 2:
                img = np.asarray(img.detach().cpu() if isinstance(img, torch.Tensor) else img)[0]
                png = maps_dir / f"{safe_file_stem(volume_id)}_heatmap.png"
                if png.exists() and not self.overwrite:
                    raise FileExistsError(f"{png}: exists; pass overwrite=True to replace it")
                plot_panel(
                    img.T, None, arr.T, str(png), title=f"{volume_id}: score {result.get('volume_score', 0):.4f}"
                )
                entry["heatmap"] = str(png)
        self.results.append(entry)

    def write(self, engine: Engine | None = None) -> dict[str, Any]:
        """Write the CSVs, JSON and report; returns what :func:`write_report` returns."""
        skipped = self.skip_log.as_list() if isinstance(self.skip_log, SkipLog) else list(self.skip_log or [])
        skipped = [{k: safe_text(str(v)) for k, v in s.items()} for s in skipped]
        self._write_scores(skipped)  # first: a failure while writing the report never loses the scores
        report = write_report(
            self.output_dir,
            self.rows,
            aggregation=self.aggregation,
            aggregation_kwargs=self.aggregation_kwargs,
            thresholds=self.thresholds,
            volume_rows=self.volume_rows if len(self.volume_rows) == len(self.results) else None,
            skipped=skipped,
            skipped_slices=self.skipped_slices,
            run_info={
                "kind": "inference",
                "n_scans": len(self.results),
                "model_epoch": int(self.thresholds.epoch),
                "slice_selection": "slices with less foreground than min_foreground are not scored: no score in "
                "detailed_results.csv, the reason in its skip_reason column and in scores.json",
            },
            overwrite=self.overwrite,
            extra_files=["scores.json"] + (["maps/"] if (self.output_dir / "maps").is_dir() else []),
        )
        logger.info("scored %d scans; results in %s", len(self.results), self.output_dir)
        return report

    def _write_scores(self, skipped: list[dict[str, str]]) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.output_dir / ".scores.json.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"scans": self.results, "skipped": skipped}, f, indent=2, default=str)
        os.replace(tmp, self.output_dir / "scores.json")
