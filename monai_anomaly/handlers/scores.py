"""Ignite handler that collects per-slice anomaly scores during a run and turns them into engine metrics."""

from __future__ import annotations

import heapq
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from monai.data import MetaTensor, decollate_batch
from monai.utils import IgniteInfo, min_version, optional_import

from monai_anomaly.metrics.classification import binary_metrics
from monai_anomaly.scoring.aggregation import aggregate_by_volume
from monai_anomaly.utils.dist import gather_in_rank_order, rank_world
from monai_anomaly.utils.enums import AnomalyKeys

Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")
if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import(
        "ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine", as_type="decorator"
    )

__all__ = ["AnomalyScoreCollector", "SCORE_METRICS"]

logger = logging.getLogger("monai_anomaly")

SCORE_METRICS = (
    "slice_auroc",
    "slice_auprc",
    "volume_auroc",
    "volume_auprc",
    "val_score_mean",
    "val_score_normal_mean",
    "val_score_anomalous_mean",
)


def _identity(x: Any) -> Any:
    return x


def _as_items(x: Any) -> list[dict[str, Any]]:
    """Per-sample dicts from a list of dicts, a batched dict (decollated) or ``None``."""
    if x is None:
        return []
    if isinstance(x, Mapping):
        return [dict(i) for i in decollate_batch(dict(x), detach=True)]
    if isinstance(x, (list, tuple)):
        out = []
        for i in x:
            if isinstance(i, Mapping):
                out.append(dict(i))
            elif isinstance(i, (list, tuple)):  # nested (e.g. several outputs per sample)
                out.extend(_as_items(i))
        return out
    return []


def _scalar(v: Any, default: Any = None) -> Any:
    if v is None:
        return default
    if isinstance(v, torch.Tensor):
        v = v.detach().cpu()
        return v.reshape(-1)[0].item() if v.numel() >= 1 else default
    if isinstance(v, np.ndarray):
        return v.reshape(-1)[0].item() if v.size >= 1 else default
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, (list, tuple)):
        return _scalar(v[0], default) if v else default
    return v


def _to_np(v: Any) -> np.ndarray | None:
    if v is None or isinstance(v, str):
        return None
    if isinstance(v, torch.Tensor):
        return v.detach().cpu().float().numpy()
    try:
        return np.asarray(v, dtype=np.float32)
    except (TypeError, ValueError):
        return None


def _path_of(item: Mapping[str, Any], image_key: str) -> str:
    img = item.get(image_key)
    if isinstance(img, MetaTensor):
        p = img.meta.get("filename_or_obj")
        if p:
            return str(_scalar(p, ""))
    for key in (AnomalyKeys.PATH, f"{image_key}_meta_dict"):
        v = item.get(key)
        if isinstance(v, Mapping):
            v = v.get("filename_or_obj")
        if v:
            return str(_scalar(v, ""))
    return str(img) if isinstance(img, str) else ""


def _first_2d(a: np.ndarray) -> np.ndarray:
    """The first channel of a channel-first 2D sample (``(C, H, W)`` -> ``(H, W)``)."""
    while a.ndim > 2:
        a = a[0]
    return a


class AnomalyScoreCollector:
    """Collect per-slice anomaly scores of a run and publish AUROC / score statistics in ``engine.state.metrics``.

    Each iteration it reads ``engine.state.output`` (and ``engine.state.batch`` for ``volume_id``, ``slice_index``
    and ``label`` when the output lacks them): a list of per-sample dicts (MONAI evaluators with ``decollate=True``)
    or a batched dict (decollated here). A sample gives its ``score`` (from
    :class:`~monai_anomaly.engines.evaluator.AnomalyEvaluator`; the collector never scores a map itself). A 3D sample
    scored by :class:`~monai_anomaly.transforms.postprocessing.VolumeAnomalyScored` adds one row per slice from
    ``result["slice_scores"]``. The ``keep_panels`` highest-scoring 2D samples keep small copies of their image,
    reconstruction and map for report panels, and up to ``keep_volume_maps`` 3D maps are kept with their affine.

    At ``EPOCH_COMPLETED`` the slice scores are aggregated per volume and these metrics are stored (and returned by
    :meth:`compute`): ``val_score_mean`` (always; a validation set of normals only has no AUROC, and a lower mean
    normal score is better, so use it with ``CheckpointSaver(key_metric_negative_sign=True)``),
    ``val_score_normal_mean`` / ``val_score_anomalous_mean`` (when such labels exist), and ``slice_auroc``,
    ``slice_auprc``, ``volume_auroc``, ``volume_auprc`` when both classes are labelled. Attach it before
    ``StatsHandler`` / ``TensorBoardStatsHandler`` so they see the metrics of the same epoch.

    Args:
        output_transform: applied to ``engine.state.output`` before reading it.
        batch_transform: applied to ``engine.state.batch``.
        score_key: the slice score key.
        map_key: the anomaly map key.
        image_key: the image key (also gives the path from the MetaTensor's ``filename_or_obj``).
        recon_key: the reconstruction key (optional in the data).
        label_key: the label key (0, 1, -1 unknown).
        aggregation: volume aggregation method.
        aggregation_kwargs: its ``k`` / ``q`` / ``threshold``.
        keep_panels: how many of the highest-scoring 2D samples keep their images for panels.
        keep_volume_maps: how many 3D maps to keep (with their affine) for NIfTI export.
        metric_prefix: prefix of the metric names (e.g. ``"test_"``).
        save_metrics: write the metrics into ``engine.state.metrics``.

    Example:
        >>> collector = AnomalyScoreCollector(aggregation="max")
        >>> collector.update([{"score": 0.2, "label": 0, "volume_id": "a"}, {"score": 0.9, "label": 1,
        ...                   "volume_id": "b"}])
        >>> collector.compute()["slice_auroc"]
        1.0
    """

    def __init__(
        self,
        output_transform: Callable[[Any], Any] = _identity,
        batch_transform: Callable[[Any], Any] = _identity,
        score_key: str = AnomalyKeys.SCORE,
        map_key: str = AnomalyKeys.ANOMALY_MAP,
        image_key: str = AnomalyKeys.IMAGE,
        recon_key: str = AnomalyKeys.RECONSTRUCTION,
        label_key: str = AnomalyKeys.LABEL,
        aggregation: str = "mean",
        aggregation_kwargs: Mapping[str, Any] | None = None,
        keep_panels: int = 8,
        keep_volume_maps: int = 4,
        metric_prefix: str = "",
        save_metrics: bool = True,
    ) -> None:
        self.output_transform = output_transform
        self.batch_transform = batch_transform
        self.score_key, self.map_key, self.image_key = str(score_key), str(map_key), str(image_key)
        self.recon_key, self.label_key = str(recon_key), str(label_key)
        self.aggregation = aggregation
        self.aggregation_kwargs = dict(aggregation_kwargs or {})
        self.keep_panels = keep_panels
        self.keep_volume_maps = keep_volume_maps
        self.metric_prefix = metric_prefix
        self.save_metrics = save_metrics
        self.reset()

    # ------------------------------------------------------------------------------------------------- state
    def reset(self) -> None:
        """Forget everything collected (called at every ``EPOCH_STARTED``)."""
        self.rows: list[dict[str, Any]] = []
        self._panels: list[tuple[float, int, tuple[np.ndarray, np.ndarray | None, np.ndarray]]] = []  # min-heap
        self.volume_maps: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.metrics: dict[str, float] = {}

    @property
    def panels(self) -> dict[int, tuple[np.ndarray, np.ndarray | None, np.ndarray]]:
        """``{row index: (image, reconstruction or None, map)}`` of the highest-scoring 2D samples kept."""
        return {i: p for _, i, p in self._panels}

    def attach(self, engine: Engine) -> None:
        """Register on ``engine``: reset at ``EPOCH_STARTED``, collect at ``ITERATION_COMPLETED``, compute at
        ``EPOCH_COMPLETED``."""
        engine.add_event_handler(Events.EPOCH_STARTED, self._started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._completed)

    def _started(self, engine: Engine) -> None:
        self.reset()

    def _iteration(self, engine: Engine) -> None:
        self.update(self.output_transform(engine.state.output), self.batch_transform(engine.state.batch))

    def _completed(self, engine: Engine) -> None:
        self.gather()
        metrics = self.compute()
        if self.save_metrics:
            engine.state.metrics.update(metrics)

    # ---------------------------------------------------------------------------------------------- collect
    def update(self, output: Any, batch: Any = None) -> None:
        """Add the samples of one iteration (``output``: list of dicts or a batched dict; ``batch`` likewise)."""
        outs = _as_items(output)
        batches = _as_items(batch)
        if batches and len(batches) != len(outs):
            batches = []
        for n, o in enumerate(outs):
            item = {**(batches[n] if batches else {}), **o}
            self._add(item)

    def _add(self, item: dict[str, Any]) -> None:
        path = _path_of(item, self.image_key)
        label = _scalar(item.get(self.label_key), -1)
        try:
            label = int(label) if label is not None and int(label) in (0, 1) else -1
        except (TypeError, ValueError):
            label = -1
        vid = _scalar(item.get(AnomalyKeys.VOLUME_ID))
        if vid is None or vid == "":
            vid = os.path.basename(path).split(".")[0] if path else f"item_{len(self.rows)}"
        vid = str(vid)
        amap = item.get(self.map_key)
        result = item.get(AnomalyKeys.RESULT)
        if isinstance(result, Mapping) and result.get("slice_scores") is not None:  # a 3D volume scored slice-wise
            scored = set(result.get("scored_slices", range(len(result["slice_scores"]))))
            for s, sc in enumerate(result["slice_scores"]):
                if s not in scored:
                    continue
                self.rows.append({"path": path, "volume_id": vid, "slice_index": s, "label": label, "score": float(sc)})
            self._keep_volume_map(vid, amap, item)
            return
        score = _scalar(item.get(self.score_key))
        if score is None:
            raise KeyError(
                f"AnomalyScoreCollector: a sample has no {self.score_key!r} (keys: {sorted(map(str, item))}); score it "
                "with AnomalyEvaluator (slices) or AnomalySliceInferer + VolumeAnomalyScored (scans)"
            )
        row = {
            "path": path,
            "volume_id": vid,
            "slice_index": int(_scalar(item.get(AnomalyKeys.SLICE_INDEX), 0) or 0),
            "label": label,
            "score": float(score),
        }
        self.rows.append(row)
        if amap is not None and self.keep_panels > 0 and math.isfinite(row["score"]):
            self._keep_panel(len(self.rows) - 1, row["score"], item, amap)

    def _keep_panel(self, index: int, score: float, item: Mapping[str, Any], amap: Any) -> None:
        m = _to_np(amap)
        if m is None or m.ndim > 3 or (m.ndim == 3 and m.shape[0] != 1):  # only 2D (1, H, W) maps
            return
        if len(self._panels) >= self.keep_panels and score <= self._panels[0][0]:
            return
        img, rec = _to_np(item.get(self.image_key)), _to_np(item.get(self.recon_key))
        if img is None:
            return
        img, m2 = _first_2d(img), _first_2d(m)
        rec2 = _first_2d(rec) if rec is not None else None
        if img.shape != m2.shape or (rec2 is not None and rec2.shape != img.shape):
            return
        entry = (score, index, (img.copy(), None if rec2 is None else rec2.copy(), m2.copy()))
        if len(self._panels) < self.keep_panels:
            heapq.heappush(self._panels, entry)
        else:
            heapq.heapreplace(self._panels, entry)

    def _keep_volume_map(self, vid: str, amap: Any, item: Mapping[str, Any]) -> None:
        if amap is None or len(self.volume_maps) >= self.keep_volume_maps or vid in self.volume_maps:
            return
        m = _to_np(amap)
        if m is None or m.ndim != 4:
            return
        affine = None
        for src in (amap, item.get(self.image_key)):
            if isinstance(src, MetaTensor) and src.meta.get("affine") is not None:
                affine = np.asarray(_to_np(src.meta["affine"]), dtype=np.float64)
                break
        self.volume_maps[vid] = (m[0], np.eye(4) if affine is None else affine)

    def gather(self) -> None:
        """Under torch.distributed: every rank's rows, panels and volume maps on every rank, in rank order (the
        ranks hold contiguous blocks of whole volumes: :func:`~monai_anomaly.utils.dist.shard_by_volume`), so the
        result is what one process collecting everything would hold. Without a process group: nothing to do."""
        if rank_world()[1] <= 1:
            return
        parts = gather_in_rank_order((self.rows, self._panels, list(self.volume_maps.items())))
        rows: list[dict[str, Any]] = []
        panels: list[tuple[float, int, Any]] = []
        maps: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for part_rows, part_panels, part_maps in parts:
            panels += [(score, index + len(rows), p) for score, index, p in part_panels]  # row indices shifted
            rows += part_rows
            for vid, m in part_maps:
                if len(maps) < self.keep_volume_maps and vid not in maps:
                    maps[vid] = m
        # the highest scores, the earliest sample first among equal ones (as one process's min-heap keeps them)
        best = sorted(panels, key=lambda e: (-e[0], e[1]))[: self.keep_panels]
        self.rows, self.volume_maps = rows, maps
        self._panels = [(score, index, p) for score, index, p in best]
        heapq.heapify(self._panels)

    # ---------------------------------------------------------------------------------------------- compute
    def volume_rows(self) -> list[dict[str, Any]]:
        """One row per volume (see :func:`~monai_anomaly.scoring.aggregation.aggregate_by_volume`), finite scores."""
        ok = [r for r in self.rows if math.isfinite(r["score"])]
        if not ok:
            return []
        return aggregate_by_volume(
            [r["volume_id"] for r in ok],
            [r["score"] for r in ok],
            [r["label"] for r in ok],
            method=self.aggregation,
            **self.aggregation_kwargs,
        )

    def compute(self) -> dict[str, float]:
        """The metrics of what was collected (see the class docstring); also kept in ``self.metrics``."""
        p = self.metric_prefix
        out: dict[str, float] = {}
        s = np.array([r["score"] for r in self.rows], dtype=np.float64)
        lab = np.array([r["label"] for r in self.rows], dtype=np.int64)
        ok = np.isfinite(s)
        if ok.any():
            out[f"{p}val_score_mean"] = float(s[ok].mean())
        for value, name in ((0, "normal"), (1, "anomalous")):
            sel = ok & (lab == value)
            if sel.any():
                out[f"{p}val_score_{name}_mean"] = float(s[sel].mean())
        out.update(self._auc("slice", lab[ok], s[ok]))
        vols = self.volume_rows()
        if vols:
            out.update(
                self._auc(
                    "volume",
                    np.array([v["label"] for v in vols], dtype=np.int64),
                    np.array([v["volume_score"] for v in vols], dtype=np.float64),
                )
            )
        self.metrics = out
        return out

    def _auc(self, level: str, labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
        known = (labels == 0) | (labels == 1)
        n1 = int((labels[known] == 1).sum())
        if n1 == 0 or n1 == int(known.sum()):
            return {}
        m = binary_metrics(labels[known], scores[known])
        return {f"{self.metric_prefix}{level}_auroc": m["auroc"], f"{self.metric_prefix}{level}_auprc": m["auprc"]}

    def slice_rows(self) -> list[dict[str, Any]]:
        """Copies of the collected rows (path, volume_id, slice_index, label, score)."""
        return [dict(r) for r in self.rows]

    def __len__(self) -> int:
        return len(self.rows)

    @staticmethod
    def names() -> Sequence[str]:
        """Metric names this handler may publish (without prefix)."""
        return SCORE_METRICS
