"""Write what an inference run scored: per-slice and per-volume scores (CSV/JSON), NIfTI maps and heatmap PNGs."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.utils import CommonKeys, IgniteInfo, min_version, optional_import

from monai_anomaly.metrics.thresholds import DecisionThresholds
from monai_anomaly.reports.nifti import save_map_nifti
from monai_anomaly.reports.plots import plot_orthogonal_panels, plot_panel
from monai_anomaly.reports.writer import write_report
from monai_anomaly.transforms.spatial import restore_geometry
from monai_anomaly.utils.dist import gather_in_rank_order, rank_world
from monai_anomaly.utils.enums import AnomalyKeys
from monai_anomaly.utils.errors import SkipLog
from monai_anomaly.utils.text import safe_file_stem, safe_text

Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")
if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine")

__all__ = ["InferenceResultWriter", "pending_scans", "record_path"]

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


SCAN_RECORDS = "scans"  # the per-scan result files, written as each scan is done (what --resume reads)


def record_path(output_dir: str | os.PathLike, volume_id: str) -> Path:
    """Where a scan's result record is kept: ``<output_dir>/scans/<volume_id>.json``."""
    return Path(output_dir) / SCAN_RECORDS / f"{safe_file_stem(str(volume_id))}.json"


def _read_record(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as f:
            rec = json.load(f)
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) and "entry" in rec else None


def _same_scan(rec: Mapping[str, Any], item: Mapping[str, Any]) -> bool:
    """A record belongs to a datalist item: same position, id and source path."""
    return (
        rec.get(AnomalyKeys.SCAN_INDEX) == item.get(AnomalyKeys.SCAN_INDEX)
        and rec.get("entry", {}).get(AnomalyKeys.VOLUME_ID) == safe_text(str(item.get(AnomalyKeys.VOLUME_ID)))
        and rec.get("source") == os.path.abspath(str(item.get(AnomalyKeys.IMAGE)))
    )


def pending_scans(
    datalist: Sequence[Mapping[str, Any]],
    output_dir: str | os.PathLike,
    resume: bool = False,
    rank: int | None = None,
    world_size: int | None = None,
) -> list[Mapping[str, Any]]:
    """The scans this process still has to score: with ``resume``, those without a finished result record in
    ``output_dir`` (a record of another scan under the same name does not count); under torch.distributed, this
    rank's share, whole scans dealt in contiguous blocks (``rank`` / ``world_size`` default to the running group's).

    Example:
        >>> items = [{"image": f"/d/s{i}.nii.gz", "volume_id": f"s{i}", "scan_index": i} for i in range(5)]
        >>> [it["volume_id"] for it in pending_scans(items, "/nonexistent", rank=1, world_size=2)]
        ['s3', 's4']
    """
    r, w = rank_world()
    rank, world_size = (r if rank is None else rank), (w if world_size is None else world_size)
    items = list(datalist)
    if resume:
        todo = []
        for it in items:
            rec = _read_record(record_path(output_dir, str(it.get(AnomalyKeys.VOLUME_ID))))
            if rec is None or not _same_scan(rec, it):
                todo.append(it)
        if len(todo) < len(items) and rank == 0:
            logger.info("resume: %d of %d scans already done in %s", len(items) - len(todo), len(items), output_dir)
        items = todo
    n = len(items)
    lo, hi = (n * rank) // world_size, (n * (rank + 1)) // world_size
    return items[lo:hi]


class InferenceResultWriter:
    """Write each scan's result as soon as it is scored, then the run's tables and report from those records.

    For every scan it expects, in the evaluator's decollated output, the anomaly map under ``map_key`` (``(1, H, W)``
    for 2D images, ``(1, H, W, D)`` for volumes) and the JSON-able result under ``result_key`` (as
    :class:`~monai_anomaly.transforms.postprocessing.VolumeAnomalyScored` writes it).

    Per scan, when it is done (nothing of it is held in memory afterwards): ``maps/<volume_id>_anomaly_map.nii.gz``
    with the input's affine (and ``maps/<volume_id>_heatmap.png`` for 2D inputs, ``maps/<volume_id>_panels.png``,
    three orthogonal views, for volumes), then
    ``scans/<volume_id>.json``, its result record; every file is written to a temporary name and renamed, so a killed
    run leaves only whole files, and a record exists only once its map does (:func:`pending_scans` with ``resume``
    skips those scans).

    At the end, from the records of ``datalist`` in its order (so an interrupted and resumed run, a run over several
    processes and a single uninterrupted run write the same files): ``detailed_results.csv`` (one row per
    slice/image; a slice the foreground selection left out has no score and its ``skip_reason``),
    ``volume_results.csv`` (one row per scan), ``scores.json`` (every scan's result), and ``metrics.json`` /
    ``anomaly_report.txt`` / ``score_distribution.png`` (from :func:`~monai_anomaly.reports.writer.write_report`).
    Under torch.distributed every rank writes its scans' maps and records; the skipped-input lists are gathered with
    ``torch.distributed`` and rank 0 writes the tables and the report (``output_dir`` must be one folder that every
    rank sees, e.g. on a shared file system, for runs over several machines).

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
        skip_log: bad inputs skipped while building the datalist or loading, listed in the report.
        aggregation_kwargs: ``k`` / ``q`` of the aggregation.
        datalist: every scan of the run (:func:`~monai_anomaly.data.inputs.find_scans`), which orders the final
            files; ``None``: the scans this writer saw, in the order it saw them.
        pending: the scans this process scores (:func:`pending_scans`), for the progress lines' total.
        log_every: log a progress line (scans done, rate, time left) every this many scans.
        save_panels: with ``save_maps``, also write ``maps/<volume_id>_panels.png`` for each volume: its most
            anomalous slice in the three orientations with the map over it
            (:func:`~monai_anomaly.reports.plots.plot_orthogonal_panels`).
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
        datalist: Sequence[Mapping[str, Any]] | None = None,
        pending: Sequence[Mapping[str, Any]] | None = None,
        log_every: int = 100,
        save_panels: bool = True,
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
        self.datalist = datalist
        self.pending = pending
        self.log_every = max(1, int(log_every))
        self.save_panels = bool(save_panels)
        self.seen: list[dict[str, Any]] = []  # (index, id, source) of the scans written by this writer
        self.total: int | None = None
        self._t0 = time.monotonic()

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self.reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.collect)
        engine.add_event_handler(Events.COMPLETED, self.write)

    def reset(self, engine: Engine | None = None) -> None:
        self.seen = []
        self._t0 = time.monotonic()
        self.total = len(self.pending) if self.pending is not None else None

    def collect(self, engine: Engine) -> None:
        outputs = _as_list(engine.state.output)
        batch = _as_list(engine.state.batch)
        for i, out in enumerate(outputs):
            item = {**(batch[i] if i < len(batch) and isinstance(batch[i], Mapping) else {}), **out}
            self.add(item)

    def add(self, item: Mapping[str, Any]) -> None:
        """Score-record one scan: write its map and its result record (also usable without Ignite)."""
        meta = _meta(item, self.image_key)
        path = safe_text(str(meta.get("filename_or_obj", item.get(AnomalyKeys.PATH, ""))))
        volume_id = safe_text(str(item.get(AnomalyKeys.VOLUME_ID) or Path(path).name or f"scan{len(self.seen)}"))
        index = item.get(AnomalyKeys.SCAN_INDEX, len(self.seen))
        index = int(index.item() if isinstance(index, torch.Tensor) else index)
        result = dict(item.get(self.result_key) or {})
        slice_scores = result.get("slice_scores", [])
        label = item.get(AnomalyKeys.LABEL, -1)
        label = int(label.item() if isinstance(label, torch.Tensor) else label)
        scored = set(result.get("scored_slices", range(len(slice_scores))))
        rows = [
            {
                AnomalyKeys.PATH: path,
                AnomalyKeys.VOLUME_ID: volume_id,
                AnomalyKeys.SLICE_INDEX: s,
                AnomalyKeys.LABEL: label,
                AnomalyKeys.SCORE: float(score),
            }
            for s, score in enumerate(slice_scores)
            if s in scored
        ]
        skipped_slices = [
            {AnomalyKeys.PATH: path, AnomalyKeys.VOLUME_ID: volume_id, "label": -1, **k}
            for k in result.get("skipped_slices") or []
        ]
        volume_row = None
        if result.get("volume_score") is not None:  # the postprocessing's volume score, written as it is
            volume_row = {
                AnomalyKeys.VOLUME_ID: volume_id,
                AnomalyKeys.VOLUME_SCORE: float(result["volume_score"]),
                "n_slices": len(scored & set(range(len(slice_scores)))),
                AnomalyKeys.LABEL: label,
            }
        entry = {"volume_id": volume_id, "path": path, **result}
        amap = item.get(self.map_key)
        if self.save_maps and amap is not None:
            entry.update(self._write_maps(item, amap, meta, volume_id, result))
        source = self._source(index, path)
        record = {
            AnomalyKeys.SCAN_INDEX: index,
            "source": source,
            "entry": entry,
            "rows": rows,
            "volume_row": volume_row,
            "skipped_slices": skipped_slices,
        }
        _write_json_atomic(record_path(self.output_dir, volume_id), record, indent=None)
        self.seen.append({AnomalyKeys.SCAN_INDEX: index, AnomalyKeys.VOLUME_ID: volume_id, "source": source})
        n = len(self.seen)
        if n % self.log_every == 0 or n == self.total:
            self._log_progress(n)

    def _source(self, index: int, path: str) -> str:
        """The scan's path as the datalist gives it (a DICOM series: its folder), else the loaded file's."""
        if self.datalist is not None and 0 <= index < len(self.datalist):
            return os.path.abspath(str(self.datalist[index].get(AnomalyKeys.IMAGE)))
        return os.path.abspath(path)

    def _log_progress(self, n: int) -> None:
        elapsed = max(time.monotonic() - self._t0, 1e-9)
        rate = n / elapsed
        rank, world = rank_world()
        where = f" (rank {rank} of {world})" if world > 1 else ""
        if self.total:
            left = max(self.total - n, 0) / rate
            logger.info(
                "infer%s: %d/%d scans, %.1f scans/min, %s left", where, n, self.total, rate * 60, _duration(left)
            )
        else:
            logger.info("infer%s: %d scans, %.1f scans/min", where, n, rate * 60)

    def _write_maps(
        self, item: Mapping[str, Any], amap: Any, meta: dict, volume_id: str, result: Mapping[str, Any]
    ) -> dict[str, str]:
        written: dict[str, str] = {}
        img = item.get(self.image_key)
        if self.save_panels and img is not None and getattr(amap, "ndim", np.ndim(amap)) == 4:  # (1, H, W, D)
            png = self.output_dir / "maps" / f"{safe_file_stem(volume_id)}_panels.png"
            if png.exists() and not self.overwrite:
                raise FileExistsError(f"{png}: exists; pass overwrite=True to replace it")
            png.parent.mkdir(parents=True, exist_ok=True)
            tmp = png.with_name(f".{png.stem}.tmp{os.getpid()}.png")
            title = f"{volume_id}: volume score {float(result.get('volume_score') or 0.0):.4f}"
            spacing = np.linalg.norm(_affine(_meta(item, self.image_key))[:3, :3], axis=0)  # mm per voxel, per axis
            plot_orthogonal_panels(
                img.detach().cpu() if isinstance(img, torch.Tensor) else img, amap, str(tmp), title, spacing=spacing
            )
            os.replace(tmp, png)  # image and map on the same (loaded) grid, before the map goes back to the file's
            written["panels"] = str(png)
        if isinstance(img, MetaTensor):  # back onto the file's voxel grid (e.g. from RAS to the file's orientation)
            amap = restore_geometry(amap.detach().cpu(), img.detach().cpu())
            meta = {**meta, "affine": amap.affine}
        amap = amap.detach().cpu().float() if isinstance(amap, torch.Tensor) else torch.as_tensor(amap)
        maps_dir = self.output_dir / "maps"
        nii = maps_dir / f"{safe_file_stem(volume_id)}_anomaly_map.nii.gz"
        arr = np.asarray(amap[0])
        save_map_nifti(arr if arr.ndim == 3 else arr[..., None], _affine(meta), nii, overwrite=self.overwrite)
        written["anomaly_map"] = str(nii)
        if arr.ndim == 2:
            img = np.asarray(img.detach().cpu() if isinstance(img, torch.Tensor) else img)[0]
            png = maps_dir / f"{safe_file_stem(volume_id)}_heatmap.png"
            if png.exists() and not self.overwrite:
                raise FileExistsError(f"{png}: exists; pass overwrite=True to replace it")
            tmp = png.with_name(f".{png.stem}.tmp{os.getpid()}.png")
            plot_panel(img.T, None, arr.T, str(tmp), title=f"{volume_id}: score {result.get('volume_score', 0):.4f}")
            os.replace(tmp, png)
            written["heatmap"] = str(png)
        return written

    def _records(self, skipped: list[dict[str, str]]) -> list[dict[str, Any]]:
        """The result records of the run's scans, in datalist order (scans skipped as bad input have none)."""
        if self.datalist is None:
            wanted = sorted(self.seen, key=lambda s: s[AnomalyKeys.SCAN_INDEX])
        else:
            wanted = [
                {
                    AnomalyKeys.SCAN_INDEX: it.get(AnomalyKeys.SCAN_INDEX, i),
                    AnomalyKeys.VOLUME_ID: safe_text(str(it.get(AnomalyKeys.VOLUME_ID))),
                    "source": os.path.abspath(str(it.get(AnomalyKeys.IMAGE))),
                }
                for i, it in enumerate(self.datalist)
            ]
        bad = {os.path.abspath(str(s.get("path", ""))) for s in skipped}
        records, missing = [], []
        for w in wanted:
            rec = _read_record(record_path(self.output_dir, w[AnomalyKeys.VOLUME_ID]))
            if rec is not None and rec.get("source") == w["source"]:
                records.append(rec)
            elif w["source"] not in bad:
                missing.append(w[AnomalyKeys.VOLUME_ID])
        if missing:
            raise RuntimeError(
                f"{self.output_dir}: no result for {len(missing)} scan(s) ({', '.join(missing[:5])}"
                f"{', ...' if len(missing) > 5 else ''}); a process stopped early, or, for a run over several "
                "machines, --output_dir is not on a file system every machine sees. Run again with --resume True."
            )
        return records

    def write(self, engine: Engine | None = None) -> dict[str, Any] | None:
        """Write the CSVs, JSON and report from every scan's record (rank 0 only under torch.distributed); returns
        what :func:`write_report` returns (``None`` on the other ranks)."""
        skipped = self.skip_log.as_list() if isinstance(self.skip_log, SkipLog) else list(self.skip_log or [])
        skipped = [{k: safe_text(str(v)) for k, v in s.items()} for s in skipped]
        rank, world = rank_world()
        if world > 1:  # every rank's skipped inputs on rank 0, after every rank has written its records
            gathered = gather_in_rank_order(skipped)
            merged: dict[tuple, dict[str, str]] = {}
            for part in gathered:
                for s in part or []:
                    merged.setdefault(tuple(sorted(s.items())), s)
            skipped = list(merged.values())
            if rank != 0:
                return None
        records = self._records(skipped)
        results = [r["entry"] for r in records]
        rows = [row for r in records for row in r["rows"]]
        volume_rows = [r["volume_row"] for r in records if r.get("volume_row") is not None]
        skipped_slices = [k for r in records for k in r["skipped_slices"]]
        self._write_scores(results, skipped)  # first: a failure while writing the report never loses the scores
        report = write_report(
            self.output_dir,
            rows,
            aggregation=self.aggregation,
            aggregation_kwargs=self.aggregation_kwargs,
            thresholds=self.thresholds,
            volume_rows=volume_rows if len(volume_rows) == len(results) else None,
            skipped=skipped,
            skipped_slices=skipped_slices,
            run_info={
                "kind": "inference",
                "n_scans": len(results),
                "model_epoch": int(self.thresholds.epoch),
                "slice_selection": "slices with less foreground than min_foreground are not scored: no score in "
                "detailed_results.csv, the reason in its skip_reason column and in scores.json",
            },
            overwrite=self.overwrite,
            extra_files=["scores.json", f"{SCAN_RECORDS}/"]
            + (["maps/"] if (self.output_dir / "maps").is_dir() else []),
        )
        logger.info("scored %d scans; results in %s", len(results), self.output_dir)
        return report

    def _write_scores(self, results: list[dict[str, Any]], skipped: list[dict[str, str]]) -> None:
        _write_json_atomic(self.output_dir / "scores.json", {"scans": results, "skipped": skipped}, indent=2)


def _write_json_atomic(path: Path, doc: Any, indent: int | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=indent, default=str)
    os.replace(tmp, path)


def _duration(seconds: float) -> str:
    """``1 h 02 min``, ``3 min 05 s``, ``12 s``."""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600} h {(s % 3600) // 60:02d} min"
    if s >= 60:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s} s"
