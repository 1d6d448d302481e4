"""The text of ``anomaly_report.txt``: metrics, threshold, score separation and skipped files in words."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from monai_anomaly.metrics.thresholds import Threshold

__all__: list[str] = ["report_text"]


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


def report_text(results: Mapping[str, Any], thr: Threshold | None, volume_thr: float | None, aggregation: str) -> str:
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
    aucp = results.get("aucp")
    if aucp:
        lines += ["", "AUCp at test time (no labels used)", "----------------------------------"]
        for level in ("slice", "subject"):
            e = aucp.get(level) or {}
            shown = f"{e['value']:.4f}" if "value" in e else f"n/a ({e.get('skipped')})"
            lines.append(
                f"{level}: {shown} ({e.get('n_validation_normals', 0)} known-normal validation {level}s vs "
                f"{e.get('n_evaluated', 0)} evaluated)"
            )
            if e.get("caution"):
                lines.append(f"  caution: {e['caution']}")
        lines.append(f"  {aucp['note']}")
    lines += ["", "Slices not scored", "-----------------"]
    sk = results.get("skipped_slices") or {"n": 0}
    if sk["n"]:
        lines.append(
            f"{sk['n']} slice(s) not scored, listed in detailed_results.csv with the reason (column skip_reason)"
            + (f"; {sk['n_labelled_anomalous']} of them labelled anomalous" if sk.get("n_labelled_anomalous") else "")
        )
        lines += [f"  {reason}: {n}" for reason, n in sk.get("by_reason", {}).items()]
    else:
        lines.append("none: every slice with anatomy was scored")
    logs = results.get("training_logs")
    if logs:
        lines += ["", "Training curves", "---------------"]
        if "training_curves.png" in results["files"]:
            lines.append(
                f"training_curves.png: the loss and validation curves the training run logged in {logs['log_dir']}"
            )
        else:
            lines.append(f"not drawn: {logs.get('not_drawn')} ({logs['log_dir']})")
    lines += ["", "Files skipped as bad input", "--------------------------"]
    if results["skipped_files"]:
        lines += [f"{s['path']}: {s['problem']}" for s in results["skipped_files"]]
    else:
        lines.append("none")
    lines += ["", "Files in this folder: " + ", ".join(results["files"]), ""]
    return "\n".join(lines)
