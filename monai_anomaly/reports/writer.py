"""Write an evaluation / inference report folder: CSVs, metrics JSON, a text summary, figures and NIfTI maps.

This is pure code (no Ignite): :class:`monai_anomaly.handlers.report.AnomalyReportHandler` calls
:func:`write_report` at the end of a run, and :func:`evaluate_scores` is the entry for users who already have scores
(arrays or a CSV) and want the same report. The statistics are computed in :mod:`monai_anomaly.metrics.separation`,
the tables written by :mod:`monai_anomaly.reports.tables` and the text by :mod:`monai_anomaly.reports.text`.
"""

from __future__ import annotations

import datetime
import glob
import json
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from monai_anomaly.metrics.aucp import pseudo_auc
from monai_anomaly.metrics.separation import level_metrics, score_separation
from monai_anomaly.metrics.thresholds import DecisionThresholds, Threshold, as_threshold
from monai_anomaly.reports.nifti import save_map_nifti
from monai_anomaly.reports.plots import (
    plot_confusion_matrix,
    plot_panel,
    plot_pr,
    plot_roc,
    plot_score_distribution,
    plot_training_curves,
    training_curve_tags,
)
from monai_anomaly.reports.tables import (
    DETAILED_COLUMNS,
    VOLUME_COLUMNS,
    normalise_rows,
    plain_value,
    read_scores_csv,
    write_csv,
)
from monai_anomaly.reports.text import report_text
from monai_anomaly.reports.training_logs import read_training_scalars
from monai_anomaly.scoring.aggregation import aggregate_by_volume
from monai_anomaly.utils.outputs import EVALUATE, INFER, REPORT_FILES, REPORT_PATTERNS, OutputNotOursError, owned_files
from monai_anomaly.utils.text import safe_file_stem, safe_text

__all__ = ["aucp_at_test_time", "evaluate_scores", "write_report"]

logger = logging.getLogger("monai_anomaly")

PanelSource = Mapping[int, Sequence[Any]] | Callable[[dict[str, Any]], Sequence[Any] | None]


# ----------------------------------------------------------------------------------------------------------- helpers
def _json_safe(v: Any) -> Any:
    """Plain JSON values: NaN / Inf become ``None``, numpy / torch values become python ones."""
    v = plain_value(v)
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, Mapping):
        return {str(k): _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    if isinstance(v, (str, int, bool)) or v is None:
        return v
    return str(v)


def _check_output_dir(output_dir: str, overwrite: bool) -> None:
    os.makedirs(output_dir, exist_ok=True)
    existing = [f for f in REPORT_FILES if os.path.exists(os.path.join(output_dir, f))]
    for pattern in REPORT_PATTERNS:
        existing += [os.path.basename(p) for p in glob.glob(os.path.join(output_dir, pattern))]
    if not existing:
        return
    if not overwrite:
        raise FileExistsError(
            f"{output_dir}: already holds a report ({', '.join(sorted(existing)[:5])}); "
            "pass overwrite=True or choose another output folder"
        )
    # stale panels / maps of an earlier run would mislead: delete them, but only files the folder's marker (or an
    # earlier version's full set of report files) shows to be ours (utils.outputs); never another tool's files
    kind = INFER if os.path.exists(os.path.join(output_dir, "scores.json")) else EVALUATE
    ours = set(owned_files(output_dir, kind)[0])
    theirs = sorted(set(existing) - ours)
    if theirs:
        raise OutputNotOursError(
            f"{output_dir}: {', '.join(theirs[:5])} not written by monai_anomaly (the folder has no record of "
            "them), so overwrite=True does not replace them; choose another output folder."
        )
    for pattern in REPORT_PATTERNS:
        for p in glob.glob(os.path.join(output_dir, pattern)):
            if os.path.basename(p) not in ours:
                raise OutputNotOursError(
                    f"{p}: not written by monai_anomaly (the folder has no record of it), so overwrite=True does "
                    "not delete it; choose another output folder."
                )
            os.remove(p)


def _panel_items(panels: PanelSource | None, rows: list[dict[str, Any]], top_k: int) -> list[tuple[int, Sequence]]:
    if panels is None or top_k <= 0:
        return []
    order = sorted(
        (i for i, r in enumerate(rows) if math.isfinite(r["score"])), key=lambda i: rows[i]["score"], reverse=True
    )
    out: list[tuple[int, Sequence]] = []
    for i in order:
        if len(out) >= top_k:
            break
        if callable(panels):
            item = panels(rows[i])
        else:
            item = panels.get(i)
        if item is not None:
            out.append((i, item))
    return out


# ------------------------------------------------------------------------------------------------------- main entry
def write_report(
    output_dir: str | os.PathLike,
    slice_rows: Sequence[Mapping[str, Any]],
    threshold: float | Threshold | Mapping[str, Any] | None = None,
    aggregation: str = "mean",
    aggregation_kwargs: Mapping[str, Any] | None = None,
    skipped: Sequence[Any] | None = None,
    panels: PanelSource | None = None,
    volume_maps: Mapping[Any, tuple[Any, Any]] | None = None,
    run_info: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    top_k: int = 5,
    volume_threshold: float | None = None,
    extra_files: Sequence[str] = (),
    thresholds: DecisionThresholds | None = None,
    volume_rows: Sequence[Mapping[str, Any]] | None = None,
    skipped_slices: Sequence[Mapping[str, Any]] | None = None,
    training_log_dir: str | os.PathLike | None = None,
    validation_normals: Mapping[str, Sequence[float]] | None = None,
) -> dict[str, Any]:
    """Write the full report of a run into one folder.

    Files written:

    - ``detailed_results.csv``: one row per image / slice: path, volume_id, slice_index, label, score, prediction
      (1 / 0, empty without threshold) and ``calibrated_score`` when the rows carry one; the slices the slice
      selection left out (``skipped_slices``) follow, with an empty score and their ``skip_reason``;
    - ``volume_results.csv``: one row per volume: volume_id, n_slices, label (max of its slices), volume_score,
      prediction;
    - ``metrics.json``: slice- and volume-level :func:`~monai_anomaly.metrics.classification.binary_metrics` (or the
      reason they were skipped), the threshold (value, method, split it was fitted on), score separation, skipped
      files and ``run_info``;
    - ``anomaly_report.txt``: the same in words;
    - ``roc_curve.png``, ``pr_curve.png`` (slice level, only when both classes are labelled) and
      ``score_distribution.png``;
    - ``confusion_matrix.png``: the slice-level confusion matrix (counts and row percentages) at the threshold, with
      the volume-level one in a second panel when that level has one (only where a level has a threshold and both
      classes labelled);
    - ``training_curves.png``: the training loss and the validation curves the training run logged in
      ``training_log_dir`` (only when given and it holds such logs);
    - ``top_anomaly_<k>.png`` panels of the ``top_k`` highest-scoring slices that ``panels`` provides;
    - ``anomaly_map_<volume_id>.nii.gz`` for each entry of ``volume_maps``.

    Slices labelled -1 (unknown) are written but left out of the metrics; when a level has only one class, its metrics
    are skipped and the reason is written (an inference-only run has no labels and still gets a report).

    Args:
        output_dir: the report folder (created).
        slice_rows: one dict per image / slice with ``score`` and optionally ``path``, ``volume_id``,
            ``slice_index``, ``label`` (0, 1, -1 unknown), ``calibrated_score``.
        threshold: slice threshold: a :class:`~monai_anomaly.metrics.thresholds.Threshold` (records how and on which
            split it was fitted), its dict form, a float (recorded as ``"manual"``) or ``None`` (no predictions).
        aggregation: volume aggregation method of :func:`~monai_anomaly.scoring.aggregation.aggregate_scores`.
        aggregation_kwargs: its ``k`` / ``q`` / ``threshold``; for ``"fraction_above"`` the slice threshold is used
            when none is given.
        skipped: files skipped as bad input: :class:`~monai_anomaly.utils.errors.SkipLog`, or dicts / objects with
            ``path`` and ``problem``.
        panels: images for the top-anomaly panels: a dict ``{row index: (image, reconstruction or None, map)}`` or a
            callable ``row -> (image, reconstruction, map)`` (or ``None`` to skip that row); 2D arrays.
        volume_maps: ``{volume_id: (map (H, W, D), affine (4, 4))}`` for 3D inputs.
        run_info: free-form description of the run (method, checkpoint, dataset, ...), stored in ``metrics.json``.
        overwrite: replace an earlier report in ``output_dir`` (else ``FileExistsError``).
        top_k: number of panels.
        volume_threshold: threshold on volume scores; default: the slice threshold, except for ``"fraction_above"``
            aggregation, whose volume score is a fraction (then no volume predictions unless given).
        extra_files: names of other files (or ``folder/``) the caller writes into ``output_dir``, listed in the
            report's file list too (e.g. ``scores.json``, ``maps/``).
        thresholds: the :class:`~monai_anomaly.metrics.thresholds.DecisionThresholds` that decided (replaces
            ``threshold`` and ``volume_threshold``; recorded with their sources, rule and model epoch).
        volume_rows: the volume scores as the caller computed them (``volume_id``, ``volume_score``, ``n_slices``,
            ``label``): written as they are, not aggregated again. Default: aggregated here from ``slice_rows``.
        skipped_slices: slices not scored (``path``, ``volume_id``, ``slice_index``, ``label``,
            ``foreground_fraction``, ``skip_reason``): written to ``detailed_results.csv`` without a score and counted
            in ``metrics.json`` (``skipped_slices``) and the text report; never in the metrics.
        training_log_dir: the training run's TensorBoard log folder (``<train output_dir>/logs``), for
            ``training_curves.png``; its event files under ``output_dir`` (the evaluation's own logs) are ignored.
            ``None``: no training curves. What was found is recorded in ``metrics.json`` (``training_logs``).
        validation_normals: ``{"slice": [...], "volume": [...]}``, the scores of the known-normal validation slices
            and volumes the thresholds were fitted on. With them ``metrics.json`` (``aucp``) and the text report give
            **AUCp at test time**, as Brainomaly's ``test_aucp``: the AUROC of those known normals (class 0) against
            every evaluated sample (class 1), its labels unused, per slice and per subject (volume). It needs no
            label, so a user scoring an unlabelled or mixed set still gets a number that says how far the set stands
            out from the normals (with a share ``pi`` of normals in it, AUC is about ``(AUCp - 0.5 pi) / (1 - pi)``).

    Returns:
        the content of ``metrics.json`` plus ``"files"`` (name -> path of every file written).

    Raises:
        FileExistsError: ``output_dir`` already holds report files and ``overwrite`` is False.
        ValueError: no rows, a row without score, or bad aggregation arguments.
    """
    output_dir = os.fspath(output_dir)
    rows = normalise_rows(slice_rows)
    if not rows:
        raise ValueError("no slice rows to report")
    if thresholds is not None:
        threshold, volume_threshold = thresholds.slice, thresholds.volume
    thr = as_threshold(threshold)
    agg_kw = dict(aggregation_kwargs or {})
    if aggregation == "fraction_above" and agg_kw.get("threshold") is None and thr is not None:
        agg_kw["threshold"] = thr.value
    if volume_threshold is None and thr is not None and aggregation != "fraction_above":
        volume_threshold = thr.value
    _check_output_dir(output_dir, overwrite)
    files: dict[str, str] = {}

    def _p(name: str) -> str:
        files[name] = os.path.join(output_dir, name)
        return files[name]

    scores = np.array([r["score"] for r in rows], dtype=np.float64)
    labels = np.array([r["label"] for r in rows], dtype=np.int64)
    finite = np.isfinite(scores)
    for r in rows:
        ok = math.isfinite(r["score"])
        r["prediction"] = int(r["score"] >= thr.value) if thr is not None and ok else None

    # volumes (non-finite scores cannot be aggregated: such volumes get no score)
    vol_rows: list[dict[str, Any]] = []
    if volume_rows is not None:
        vol_rows = [{**v, "volume_id": safe_text(str(plain_value(v["volume_id"])))} for v in volume_rows]
    elif finite.any():
        vids = [r["volume_id"] for r, ok in zip(rows, finite) if ok]
        vol_rows = aggregate_by_volume(vids, scores[finite], labels[finite], method=aggregation, **agg_kw)
    seen = {v["volume_id"] for v in vol_rows}
    for r in rows:
        if r["volume_id"] not in seen:
            seen.add(r["volume_id"])
            n = sum(x["volume_id"] == r["volume_id"] for x in rows)
            vol_rows.append({"volume_id": r["volume_id"], "volume_score": float("nan"), "n_slices": n, "label": -1})
    for v in vol_rows:
        ok = math.isfinite(v["volume_score"])
        v["prediction"] = int(v["volume_score"] >= volume_threshold) if volume_threshold is not None and ok else None
    v_scores = np.array([v["volume_score"] for v in vol_rows], dtype=np.float64)
    v_labels = np.array([v["label"] for v in vol_rows], dtype=np.int64)

    slice_level = level_metrics(labels, scores, None if thr is None else thr.value, "slices")
    volume_level = level_metrics(v_labels, v_scores, volume_threshold, "volumes")
    skipped_list = _skipped_list(skipped)
    results: dict[str, Any] = {
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
        "slice": slice_level,
        "volume": volume_level,
        "threshold": None if thr is None else thr.to_dict(),
        "volume_threshold": volume_threshold,
        "thresholds": None if thresholds is None else thresholds.to_dict(),
        "aggregation": {"method": aggregation, "kwargs": agg_kw},
        "score_separation": {
            "slice": score_separation(labels, scores),
            "volume": score_separation(v_labels, v_scores),
        },
        "skipped_files": skipped_list,
        "skipped_slices": _skipped_slices_summary(skipped_slices),
        "run_info": dict(run_info or {}),
    }
    if validation_normals:
        results["aucp"] = aucp_at_test_time(validation_normals, scores[finite], v_scores[np.isfinite(v_scores)])
    has_cal = any("calibrated_score" in r for r in rows)
    if has_cal:
        cal = np.array([r.get("calibrated_score", np.nan) for r in rows], dtype=np.float64)
        results["score_separation"]["slice_calibrated"] = score_separation(labels, cal)

    # tables
    not_scored = _skipped_slice_rows(skipped_slices)
    columns = DETAILED_COLUMNS + (("calibrated_score",) if has_cal else ()) + (("skip_reason",) if not_scored else ())
    write_csv(_p("detailed_results.csv"), columns, rows + not_scored)
    write_csv(_p("volume_results.csv"), VOLUME_COLUMNS, vol_rows)

    # figures
    use = finite & ((labels == 0) | (labels == 1))
    figures_failed: list[str] = []
    if slice_level["metrics"] is not None:
        _figure(figures_failed, plot_roc, labels[use], scores[use], _p("roc_curve.png"), title="ROC (slice level)")
        _figure(
            figures_failed,
            plot_pr,
            labels[use],
            scores[use],
            _p("pr_curve.png"),
            title="Precision-recall (slice level)",
        )
    if finite.any():
        _figure(
            figures_failed,
            plot_score_distribution,
            labels,
            scores,
            _p("score_distribution.png"),
            threshold=None if thr is None else thr.value,
        )
    cm_path = os.path.join(output_dir, "confusion_matrix.png")
    if _figure(
        figures_failed,
        plot_confusion_matrix,
        (slice_level["metrics"] or {}).get("confusion_matrix"),
        cm_path,
        title=_threshold_title("Slice level", thr, None),
        volume_matrix=(volume_level["metrics"] or {}).get("confusion_matrix"),
        volume_title=_threshold_title("Volume level", volume_threshold, thresholds),
        suptitle="Confusion matrix (prediction: score >= threshold -> anomalous)",
    ):
        files["confusion_matrix.png"] = cm_path
    if training_log_dir is not None:
        results["training_logs"] = _training_curves(
            figures_failed, files, os.fspath(training_log_dir), output_dir, run_info
        )
    if figures_failed:
        results["figures_not_written"] = figures_failed
    for rank, (i, item) in enumerate(_panel_items(panels, rows, top_k), start=1):
        image, recon, amap = (tuple(item) + (None, None, None))[:3]
        r = rows[i]
        where = os.path.basename(r["path"]) or r["volume_id"]
        title = f"#{rank} {where} slice {r['slice_index']}: score {r['score']:.4g}" + (
            f" (label {r['label']})" if r["label"] >= 0 else ""
        )
        plot_panel(image, recon, amap, _p(f"top_anomaly_{rank}.png"), title=title)
    for vid, (vmap, affine) in (volume_maps or {}).items():
        name = f"anomaly_map_{safe_file_stem(str(vid))}.nii.gz"
        save_map_nifti(vmap, affine, _p(name), overwrite=True)  # folder-level overwrite was checked above

    files["metrics.json"] = os.path.join(output_dir, "metrics.json")
    files["anomaly_report.txt"] = os.path.join(output_dir, "anomaly_report.txt")
    results["files"] = sorted([os.path.basename(p) for p in files.values()] + list(extra_files))
    results = _json_safe(results)
    with open(files["metrics.json"], "w") as f:
        json.dump(results, f, indent=2)
    with open(files["anomaly_report.txt"], "w") as f:
        f.write(report_text(results, thr, volume_threshold, aggregation))
    logger.info("anomaly report written to %s", output_dir)
    return {**results, "output_dir": output_dir, "files": dict(files)}


AUCP_MIN_PER_SIDE = 2  # below this a rank AUC is 0 or 1 by construction
AUCP_FEW_PER_SIDE = 5  # below this the value is reported with a caution


def aucp_at_test_time(
    validation_normals: Mapping[str, Sequence[float]], slice_scores: Sequence[float], volume_scores: Sequence[float]
) -> dict[str, Any]:
    """AUCp at test time (Brainomaly's ``test_aucp``): the known-normal validation scores (class 0) against every
    evaluated score (class 1, labels unused), per slice and per subject (volume). A level without scores on both
    sides gets a reason instead of a value.

    Example:
        >>> r = aucp_at_test_time({"slice": [0.1, 0.2], "volume": []}, [0.15, 0.9], [0.5])
        >>> r["slice"]["value"], "skipped" in r["subject"]
        (0.75, True)
    """
    out: dict[str, Any] = {
        "note": "AUCp at test time (Brainomaly's test_aucp): the known-normal validation samples against every "
        "evaluated sample, labels unused; 0.5: the evaluated set looks like the normals"
    }
    for level, ref_key, evaluated in (("slice", "slice", slice_scores), ("subject", "volume", volume_scores)):
        given = validation_normals.get(ref_key)
        ref = [float(v) for v in ([] if given is None else given) if math.isfinite(float(v))]
        ev = [float(v) for v in evaluated if math.isfinite(float(v))]
        entry: dict[str, Any] = {"n_validation_normals": len(ref), "n_evaluated": len(ev)}
        if not ev:
            entry["skipped"] = "no evaluated score"
        elif not ref:
            what = "volume scores (a model saved before they were kept)" if ref_key == "volume" else "slice scores"
            entry["skipped"] = f"no known-normal validation {what}"
        elif min(len(ref), len(ev)) < AUCP_MIN_PER_SIDE:
            entry["skipped"] = (
                f"too few scores for a rank AUC ({len(ref)} known-normal vs {len(ev)} evaluated; at least "
                f"{AUCP_MIN_PER_SIDE} each)"
            )
        else:
            entry["value"] = pseudo_auc(ref, ev)
            if min(len(ref), len(ev)) < AUCP_FEW_PER_SIDE:
                entry["caution"] = (
                    f"only {len(ref)} known-normal vs {len(ev)} evaluated: a coarse estimate (steps of "
                    f"{1.0 / (len(ref) * len(ev)):.3g})"
                )
        out[level] = entry
    return out


def _figure(failed: list[str], plot: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Draw one figure; a plotting error is a warning (the tables and scores are already written), never a lost run.

    Returns what ``plot`` returns (the path written, or ``None`` when it had nothing to draw), ``None`` on an error.
    """
    path = args[2] if len(args) > 2 else kwargs.get("path", args[1] if len(args) > 1 else "?")
    try:
        return plot(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - a figure is never worth the run's results
        logger.warning("figure %s not written: %s: %s", os.path.basename(str(path)), type(e).__name__, e)
        failed.append(f"{os.path.basename(str(path))}: {type(e).__name__}: {e}")
        return None


def _threshold_title(level: str, threshold: Threshold | float | None, thresholds: DecisionThresholds | None) -> str:
    """A confusion-matrix panel title: the level, the threshold value and how it was made.

    Example:
        >>> _threshold_title("Slice level", Threshold(0.25, "mean_std", "val", {"k": 3.0, "n": 40}), None)
        'Slice level\\nthreshold 0.25 (mean_std, k=3, fitted on val)'
    """
    if threshold is None:
        return level
    if isinstance(threshold, Threshold):
        params = ", ".join(f"{k}={v:g}" for k, v in threshold.params.items() if k in ("k", "q") and _is_number(v))
        how = threshold.method + (f", {params}" if params else "")
        if threshold.method != "manual" and threshold.split not in ("", "given"):
            how += f", fitted on {threshold.split}"
        return f"{level}\nthreshold {threshold.value:.4g} ({how})"
    how = ""
    if thresholds is not None:
        if thresholds.volume_source != "fitted":
            how = thresholds.volume_source.split(" ")[0]
        elif thresholds.volume_rule:
            how = thresholds.volume_rule.split(":")[0].split(" on ")[0].replace(" (", ", ").replace(")", "").strip()
    return f"{level}\nthreshold {float(threshold):.4g}" + (f" ({how})" if how else "")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))


def _training_curves(
    failed: list[str],
    files: dict[str, str],
    log_dir: str,
    output_dir: str,
    run_info: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """Draw ``training_curves.png`` from the training run's own logs; what was found, for ``metrics.json``."""
    scalars = read_training_scalars(log_dir, exclude=[output_dir])
    groups = training_curve_tags(sorted(scalars))
    info: dict[str, Any] = {"log_dir": log_dir, "tags": {k: v for k, v in groups.items() if v}}
    if not any(groups.values()):
        info["not_drawn"] = "no training loss or validation curve logged there"
        logger.info("no training logs in %s: training_curves.png not written", log_dir)
        return info
    name = "training_curves.png"
    path = os.path.join(output_dir, name)
    run = os.path.basename(os.path.dirname(os.path.abspath(log_dir)))
    epoch = (run_info or {}).get("model_epoch")
    title = f"Training curves of {run}" + (f" (evaluated model: epoch {epoch})" if _is_number(epoch) else "")
    if _figure(failed, plot_training_curves, scalars, path, title=title):
        files[name] = path
    else:
        info["not_drawn"] = "no plottable points"
    return info


def _skipped_slice_rows(skipped_slices: Sequence[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """Rows of ``detailed_results.csv`` for slices not scored: no score, no prediction, the reason."""
    rows = []
    for k in skipped_slices or []:
        rows.append(
            {
                "path": safe_text(str(plain_value(k.get("path", "")) or "")),
                "volume_id": safe_text(str(plain_value(k.get("volume_id", "")))),
                "slice_index": int(plain_value(k.get("slice_index", 0)) or 0),
                "label": k.get("label", -1),
                "score": None,
                "prediction": None,
                "skip_reason": safe_text(str(k.get("skip_reason", ""))),
            }
        )
    return sorted(rows, key=lambda r: (r["volume_id"], r["slice_index"]))


def _skipped_slices_summary(skipped_slices: Sequence[Mapping[str, Any]] | None) -> dict[str, Any]:
    """``{"n", "n_labelled_anomalous", "by_reason"}`` of the slices not scored (reasons without their numbers)."""
    rows = list(skipped_slices or [])
    by_reason: dict[str, int] = {}
    for k in rows:
        reason = str(k.get("skip_reason", ""))
        kind = "too little foreground (below min_foreground)" if reason.startswith("foreground ") else reason
        by_reason[kind] = by_reason.get(kind, 0) + 1
    n_anom = sum(1 for k in rows if str(k.get("label", -1)) == "1")
    return {"n": len(rows), "n_labelled_anomalous": n_anom, "by_reason": by_reason}


def _skipped_list(skipped: Any) -> list[dict[str, str]]:
    if skipped is None:
        return []
    if hasattr(skipped, "as_list"):
        return list(skipped.as_list())
    out = []
    for s in skipped:
        if isinstance(s, Mapping):
            out.append({"path": str(s.get("path", "")), "problem": str(s.get("problem", ""))})
        elif hasattr(s, "path"):
            out.append({"path": str(s.path), "problem": str(getattr(s, "problem", ""))})
        else:
            out.append({"path": str(s), "problem": ""})
    return out


# --------------------------------------------------------------------------------------------- plain-python entry
def evaluate_scores(
    scores: Sequence[float] | np.ndarray | torch.Tensor | None = None,
    labels: Sequence[int] | np.ndarray | torch.Tensor | None = None,
    volume_ids: Sequence[Any] | None = None,
    paths: Sequence[str] | None = None,
    slice_indices: Sequence[int] | None = None,
    csv_path: str | os.PathLike | None = None,
    output_dir: str | os.PathLike = "anomaly_report",
    threshold: float | Threshold | Mapping[str, Any] | None = None,
    aggregation: str = "mean",
    overwrite: bool = False,
    **kwargs: Any,
) -> dict[str, Any]:
    """Write a full report from scores you already have (no Ignite, no model): arrays or a CSV.

    Args:
        scores: one anomaly score per image / slice (give either ``scores`` or ``csv_path``).
        labels: 0 normal, 1 anomalous, -1 unknown (optional).
        volume_ids: volume per slice (default: one volume per item, named after ``paths`` or the index).
        paths: file per item (optional).
        slice_indices: slice number per item (default 0).
        csv_path: a CSV with columns ``path, volume_id, slice_index, label, score`` (only ``score`` is required).
        output_dir: the report folder.
        threshold: a fitted :class:`~monai_anomaly.metrics.thresholds.Threshold`, a float, or ``None``.
        aggregation: volume aggregation method.
        overwrite: replace an earlier report in ``output_dir``.
        kwargs: other arguments of :func:`write_report` (``aggregation_kwargs``, ``run_info``, ``top_k`` ...).

    Returns:
        what :func:`write_report` returns.

    Raises:
        ValueError: neither or both of ``scores`` / ``csv_path``, or lengths that differ.
        BadInputError: a bad CSV.

    Example:
        >>> import tempfile
        >>> out = evaluate_scores([0.1, 0.2, 0.8, 0.9], labels=[0, 0, 1, 1], output_dir=tempfile.mkdtemp())
        >>> out["slice"]["metrics"]["auroc"]
        1.0
    """
    if (scores is None) == (csv_path is None):
        raise ValueError("give either scores=... or csv_path=..., not both or neither")
    if csv_path is not None:
        rows = read_scores_csv(csv_path)
        run_info = {"source": os.fspath(csv_path), **dict(kwargs.pop("run_info", None) or {})}
    else:
        s = scores.detach().cpu().numpy() if isinstance(scores, torch.Tensor) else np.asarray(scores, dtype=np.float64)
        s = s.reshape(-1)
        n = s.size
        columns = {"label": labels, "volume_id": volume_ids, "path": paths, "slice_index": slice_indices}
        cols: dict[str, list[Any]] = {}
        for name, col in columns.items():
            if col is None:
                continue
            vals = col.detach().cpu().reshape(-1).tolist() if isinstance(col, torch.Tensor) else list(col)
            if len(vals) != n:
                raise ValueError(f"got {n} scores but {len(vals)} {name} values")
            cols[name] = vals
        rows = []
        for i in range(n):
            row: dict[str, Any] = {"score": float(s[i])}
            for name, vals in cols.items():
                row[name] = vals[i]
            if "volume_id" not in row:
                row["volume_id"] = os.path.basename(str(row["path"])).split(".")[0] if "path" in row else f"item_{i}"
            rows.append(row)
        run_info = dict(kwargs.pop("run_info", None) or {})
    return write_report(
        output_dir, rows, threshold=threshold, aggregation=aggregation, overwrite=overwrite, run_info=run_info, **kwargs
    )
