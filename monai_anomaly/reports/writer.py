"""Write an evaluation / inference report folder: CSVs, metrics JSON, a text summary, figures and NIfTI maps.

This is pure code (no Ignite): :class:`monai_anomaly.handlers.report.AnomalyReportHandler` calls
:func:`write_report` at the end of a run, and :func:`evaluate_scores` is the entry for users who already have scores
(arrays or a CSV) and want the same report.
"""

from __future__ import annotations

import csv
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

from monai_anomaly.metrics.classification import binary_metrics
from monai_anomaly.metrics.thresholds import DecisionThresholds, Threshold
from monai_anomaly.reports.nifti import save_map_nifti
from monai_anomaly.reports.plots import plot_panel, plot_pr, plot_roc, plot_score_distribution
from monai_anomaly.scoring.aggregation import aggregate_by_volume
from monai_anomaly.utils.errors import BadInputError
from monai_anomaly.utils.outputs import EVALUATE, INFER, REPORT_FILES, REPORT_PATTERNS, OutputNotOursError, owned_files
from monai_anomaly.utils.text import safe_file_stem, safe_text

__all__ = [
    "DETAILED_COLUMNS",
    "VOLUME_COLUMNS",
    "as_threshold",
    "evaluate_scores",
    "read_scores_csv",
    "score_separation",
    "write_report",
]

logger = logging.getLogger("monai_anomaly")

DETAILED_COLUMNS = ("path", "volume_id", "slice_index", "label", "score", "prediction")
VOLUME_COLUMNS = ("volume_id", "n_slices", "label", "volume_score", "prediction")

PanelSource = Mapping[int, Sequence[Any]] | Callable[[dict[str, Any]], Sequence[Any] | None]


# ----------------------------------------------------------------------------------------------------------- helpers
def as_threshold(threshold: float | Threshold | Mapping[str, Any] | None, split: str = "given") -> Threshold | None:
    """A :class:`Threshold` from a float (recorded as ``method="manual"``), a threshold dict, or a Threshold."""
    if threshold is None or isinstance(threshold, Threshold):
        return threshold
    if isinstance(threshold, Mapping):
        return Threshold.from_dict(dict(threshold))
    value = float(threshold)
    if not math.isfinite(value):
        raise ValueError(f"threshold must be finite, got {threshold}")
    return Threshold(value, "manual", split, {})


def _plain(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        v = v.detach().cpu()
        return v.item() if v.numel() == 1 else v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.item() if v.size == 1 else v.tolist()
    return v


def _json_safe(v: Any) -> Any:
    """Plain JSON values: NaN / Inf become ``None``, numpy / torch values become python ones."""
    v = _plain(v)
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, Mapping):
        return {str(k): _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    if isinstance(v, (str, int, bool)) or v is None:
        return v
    return str(v)


def _label(v: Any) -> int:
    v = _plain(v)
    if v is None or v == "":
        return -1
    try:
        f = float(v)
    except (TypeError, ValueError):
        return -1
    return int(f) if math.isfinite(f) and int(f) in (0, 1) else -1


def _normalise_rows(slice_rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for i, r in enumerate(slice_rows):
        if "score" not in r:
            raise ValueError(f"slice row {i} has no 'score': {dict(r)}")
        path = safe_text(str(_plain(r.get("path", "")) or ""))
        vid = _plain(r.get("volume_id"))
        if vid is None or vid == "":
            vid = os.path.basename(path).split(".")[0] if path else f"item_{i}"
        row = {
            "path": path,
            "volume_id": safe_text(str(vid)),
            "slice_index": int(_plain(r.get("slice_index", 0)) or 0),
            "label": _label(r.get("label", -1)),
            "score": float(_plain(r["score"])),
        }
        if r.get("calibrated_score") is not None:
            row["calibrated_score"] = float(_plain(r["calibrated_score"]))
        rows.append(row)
    return rows


def score_separation(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray) -> dict[str, Any]:
    """Means, standard deviations and Cohen's d between normal (0) and anomalous (1) scores (-1 ignored).

    Cohen's d uses the pooled sample standard deviation (``ddof=1``); it is ``None`` unless both groups have at least
    two samples and a non-zero pooled spread.

    Example:
        >>> round(score_separation([0, 0, 1, 1], [0.0, 2.0, 4.0, 6.0])["cohens_d"], 4)
        2.8284
    """
    lab = np.asarray(labels).reshape(-1).astype(np.int64)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    ok = np.isfinite(s)
    n0, n1 = s[(lab == 0) & ok], s[(lab == 1) & ok]
    out: dict[str, Any] = {"n_normal": int(n0.size), "n_anomalous": int(n1.size)}
    for name, g in (("normal", n0), ("anomalous", n1)):
        out[f"mean_{name}"] = float(g.mean()) if g.size else None
        out[f"std_{name}"] = float(g.std(ddof=1)) if g.size > 1 else None
    d = None
    if n0.size > 1 and n1.size > 1:
        pooled = math.sqrt(((n0.size - 1) * n0.var(ddof=1) + (n1.size - 1) * n1.var(ddof=1)) / (n0.size + n1.size - 2))
        if pooled > 0:
            d = float((n1.mean() - n0.mean()) / pooled)
    out["cohens_d"] = d
    return out


def _level_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float | None, what: str) -> dict[str, Any]:
    """Metrics of one level (slices or volumes), or the reason they were skipped."""
    finite = np.isfinite(scores)
    known = (labels == 0) | (labels == 1)
    use = known & finite
    out: dict[str, Any] = {
        "n": int(labels.size),
        "n_labelled": int(known.sum()),
        "n_unlabelled": int((~known).sum()),
        "n_nonfinite": int((~finite).sum()),
        "metrics": None,
        "skipped_reason": None,
    }
    if threshold is not None:
        out["n_predicted_anomalous"] = int((scores[finite] >= threshold).sum())
    n0, n1 = int((labels[use] == 0).sum()), int((labels[use] == 1).sum())
    if n0 + n1 == 0:
        out["skipped_reason"] = f"no labelled {what} (labels are unknown, e.g. an inference-only run)"
    elif n0 == 0 or n1 == 0:
        only = "anomalous (1)" if n0 == 0 else "normal (0)"
        out["skipped_reason"] = (
            f"all {n0 + n1} labelled {what} are {only}: AUROC/AUPRC and threshold metrics need both classes"
        )
    else:
        out["metrics"] = binary_metrics(labels[use], scores[use], threshold=threshold)
    return out


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


def _write_csv(path: str, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({c: ("" if r.get(c) is None else r.get(c)) for c in columns})


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return "nan" if not math.isfinite(v) else f"{v:.{digits}f}"
    return str(v)


def _metrics_lines(title: str, level: Mapping[str, Any]) -> list[str]:
    lines = [title, "-" * len(title)]
    lines.append(
        f"items: {level['n']} ({level['n_labelled']} labelled, {level['n_unlabelled']} with unknown label"
        + (f", {level['n_nonfinite']} with NaN/Inf score" if level["n_nonfinite"] else "")
        + ")"
    )
    if "n_predicted_anomalous" in level:
        lines.append(f"predicted anomalous at the threshold: {level['n_predicted_anomalous']}")
    m = level["metrics"]
    if m is None:
        lines.append(f"metrics skipped: {level['skipped_reason']}")
        return lines
    lines.append(f"normal: {m['n_normal']}, anomalous: {m['n_anomalous']}")
    lines.append(f"AUROC: {_fmt(m['auroc'])}   AUPRC (average precision): {_fmt(m['auprc'])}")
    if "threshold" in m:
        lines.append(
            f"at threshold {_fmt(m['threshold'], 6)}: sensitivity {_fmt(m['sensitivity'])}, specificity "
            f"{_fmt(m['specificity'])}, precision {_fmt(m['precision'])}, F1 {_fmt(m['f1'])}, accuracy "
            f"{_fmt(m['accuracy'])}, balanced accuracy {_fmt(m['balanced_accuracy'])}"
        )
        (tn, fp), (fn, tp) = m["confusion_matrix"]
        lines.append(f"confusion matrix: TN {tn}  FP {fp}  FN {fn}  TP {tp}")
    return lines


def _separation_lines(title: str, sep: Mapping[str, Any]) -> list[str]:
    return [
        f"{title}: normal mean {_fmt(sep['mean_normal'])} (std {_fmt(sep['std_normal'])}, n={sep['n_normal']}), "
        f"anomalous mean {_fmt(sep['mean_anomalous'])} (std {_fmt(sep['std_anomalous'])}, n={sep['n_anomalous']}), "
        f"Cohen's d {_fmt(sep['cohens_d'], 3)}"
    ]


def _threshold_lines(
    thr: Threshold | None, volume_thr: float | None, aggregation: str, decision: Mapping[str, Any] | None = None
) -> list[str]:
    lines = ["Threshold", "---------"]
    if thr is None:
        lines.append("none given: no predictions (scores only). Fit one on validation normals with fit_threshold.")
        return lines
    how = {
        "manual": "given by the user",
        "mean_std": "mean + k * std of normal validation scores",
        "percentile": "a percentile of normal validation scores",
        "youden": "maximum of Youden's J (sensitivity + specificity - 1) on labelled validation data",
        "equal_error": "equal sensitivity and specificity on labelled validation data",
        "f1_max": "maximum F1 on labelled validation data",
    }.get(thr.method, thr.method)
    params = ", ".join(f"{k}={_fmt(v, 4)}" for k, v in thr.params.items())
    lines.append(f"slice threshold: {thr.value:.6g} (method {thr.method!r}: {how}; fitted on split {thr.split!r})")
    if params:
        lines.append(f"threshold parameters: {params}")
    lines.append("prediction rule: score >= threshold -> anomalous")
    if volume_thr is None:
        lines.append(f"volume threshold: none (aggregation {aggregation!r}); no volume predictions")
    else:
        lines.append(f"volume threshold: {volume_thr:.6g} on the {aggregation!r} volume score")
    if decision:
        lines.append(f"slice threshold source: {decision.get('slice_source')}")
        lines.append(f"volume threshold rule: {decision.get('volume_rule') or 'not recorded'}")
        lines.append(f"volume threshold source: {decision.get('volume_source')}")
        lines.append(f"model epoch the thresholds were fitted at: {decision.get('model_epoch')}")
        lines.append(f"scan verdict decided by: {decision.get('decided_by')}")
    return lines


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
) -> dict[str, Any]:
    """Write the full report of a run into one folder.

    Files written:

    - ``detailed_results.csv``: one row per image / slice: path, volume_id, slice_index, label, score, prediction
      (1 / 0, empty without threshold) and ``calibrated_score`` when the rows carry one;
    - ``volume_results.csv``: one row per volume: volume_id, n_slices, label (max of its slices), volume_score,
      prediction;
    - ``metrics.json``: slice- and volume-level :func:`~monai_anomaly.metrics.classification.binary_metrics` (or the
      reason they were skipped), the threshold (value, method, split it was fitted on), score separation, skipped
      files and ``run_info``;
    - ``anomaly_report.txt``: the same in words;
    - ``roc_curve.png``, ``pr_curve.png`` (slice level, only when both classes are labelled) and
      ``score_distribution.png``;
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

    Returns:
        the content of ``metrics.json`` plus ``"files"`` (name -> path of every file written).

    Raises:
        FileExistsError: ``output_dir`` already holds report files and ``overwrite`` is False.
        ValueError: no rows, a row without score, or bad aggregation arguments.
    """
    output_dir = os.fspath(output_dir)
    rows = _normalise_rows(slice_rows)
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
        vol_rows = [{**v, "volume_id": safe_text(str(_plain(v["volume_id"])))} for v in volume_rows]
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

    slice_level = _level_metrics(labels, scores, None if thr is None else thr.value, "slices")
    volume_level = _level_metrics(v_labels, v_scores, volume_threshold, "volumes")
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
        "run_info": dict(run_info or {}),
    }
    has_cal = any("calibrated_score" in r for r in rows)
    if has_cal:
        cal = np.array([r.get("calibrated_score", np.nan) for r in rows], dtype=np.float64)
        results["score_separation"]["slice_calibrated"] = score_separation(labels, cal)

    # tables
    _write_csv(_p("detailed_results.csv"), DETAILED_COLUMNS + (("calibrated_score",) if has_cal else ()), rows)
    _write_csv(_p("volume_results.csv"), VOLUME_COLUMNS, vol_rows)

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
        f.write(_report_text(results, thr, volume_threshold, aggregation))
    logger.info("anomaly report written to %s", output_dir)
    return {**results, "output_dir": output_dir, "files": dict(files)}


def _figure(failed: list[str], plot: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """Draw one figure; a plotting error is a warning (the tables and scores are already written), never a lost run."""
    path = args[2] if len(args) > 2 else kwargs.get("path", "?")
    try:
        plot(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - a figure is never worth the run's results
        logger.warning("figure %s not written: %s: %s", os.path.basename(str(path)), type(e).__name__, e)
        failed.append(f"{os.path.basename(str(path))}: {type(e).__name__}: {e}")


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


def _report_text(results: Mapping[str, Any], thr: Threshold | None, volume_thr: float | None, aggregation: str) -> str:
    lines = ["Anomaly detection report", "========================", f"created: {results['created']}"]
    warns = results["run_info"].get("warnings") or []
    if warns:
        lines += ["", "WARNINGS (read before trusting the numbers)"]
        lines += [f"- {w}" for w in warns]
        lines.append("")
    for k, v in results["run_info"].items():
        if k != "warnings":
            lines.append(f"{k}: {v}")
    lines.append("")
    lines += _metrics_lines("Slice / image level", results["slice"])
    lines.append("")
    lines += _metrics_lines(f"Volume level (aggregation: {aggregation})", results["volume"])
    lines.append("")
    lines += _threshold_lines(thr, volume_thr, aggregation, results.get("thresholds"))
    lines += ["", "Score separation (normal vs anomalous)", "--------------------------------------"]
    lines += _separation_lines("slices", results["score_separation"]["slice"])
    lines += _separation_lines("volumes", results["score_separation"]["volume"])
    if "slice_calibrated" in results["score_separation"]:
        lines += _separation_lines("slices, calibrated", results["score_separation"]["slice_calibrated"])
    lines += ["", "Files skipped as bad input", "--------------------------"]
    if results["skipped_files"]:
        lines += [f"{s['path']}: {s['problem']}" for s in results["skipped_files"]]
    else:
        lines.append("none")
    lines += ["", "Files in this folder: " + ", ".join(results["files"]), ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- plain-python entry
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
