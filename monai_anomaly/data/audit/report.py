"""The data audit's report: its findings in words, and the files :func:`write_audit_report` writes.

The findings (warnings first) are the sentences that the CLI prints and the report starts with. The report files
are :data:`REPORT_FILES`; :data:`AUDIT` is the audit's output-folder rule for :mod:`monai_anomaly.utils.outputs`.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from monai_anomaly.data.audit.shortcuts import LABEL_NAMES, SHORTCUT_WARNING, finite_values
from monai_anomaly.utils.outputs import OutputKind

if TYPE_CHECKING:
    from monai_anomaly.data.audit.run import AuditResult

__all__ = ["AUDIT", "REPORT_FILES", "check_output_dir", "summarize", "write_audit_report"]

REPORT_FILES = (
    "audit_report.txt",
    "audit.json",
    "audit_images.csv",
    "duplicate_groups.csv",
    "audit_features.png",
    "audit_shortcut.png",
)
# the audit's output folder rule (monai_anomaly.utils.outputs): the files above, an earlier one known by its report
AUDIT = OutputKind("audit", "audit report", REPORT_FILES, legacy_required=("audit_report.txt", "audit.json"))


# ----------------------------------------------------------------------------------------------------------------
# the findings


def _fmt(v: Any, nd: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "-"
        return f"{v:.{nd}g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def summarize(res: AuditResult) -> tuple[list[str], list[str]]:
    """``(warnings, findings)`` sentences; findings start with the warnings."""
    warnings: list[str] = []
    info: list[str] = []
    p = res.params
    sc = res.shortcut
    n_dup_files = sum(g["size"] for g in res.groups)
    cross, both = res.crossing_groups, res.both_class_groups
    if sc.get("warning"):
        top = ", ".join(f"{d['feature']} {d['auroc']:.2f}" for d in sc["single_feature"][:3])
        warnings.append(
            f"WARNING: shortcut AUROC {sc['auroc']:.3f} ({sc['best_model']}) >= {p['warn_auroc']:g}: "
            f"{SHORTCUT_WARNING}. Top features: {top}."
        )
    if both:
        n = sum(g["size"] for g in both)
        warnings.append(
            f"WARNING: {len(both)} near-duplicate group(s) ({n} files) hold both normal and abnormal files: "
            "the same image is labelled normal and abnormal."
        )
    if cross:
        n = sum(g["size"] for g in cross)
        pairs = Counter("/".join(g["splits"]) for g in cross)
        how = ", ".join(f"{k}: {v}" for k, v in pairs.most_common())
        warnings.append(
            f"WARNING: {len(cross)} near-duplicate group(s) ({n} files) cross the train/val/test split the bundles "
            f"use (val {p['val_fraction']:g}, test {p['test_fraction']:g}, seed {p['seed']}) [{how}]: the same "
            "picture is seen in training and scored in evaluation."
        )
    big = res.groups[0] if res.groups else None
    if big is not None and big["size"] > max(20, 0.05 * len(res.records)):
        warnings.append(
            f"WARNING: the largest near-duplicate group holds {big['size']} of {len(res.records)} files (its weakest "
            f"link correlates {_fmt(big['min_link_correlation'])}): hash links are chaining distinct images, so the "
            "group counts above are upper bounds. Re-run with a stricter --hash_threshold or --min_correlation 0.98."
        )
    if res.skipped:
        warnings.append(f"WARNING: {len(res.skipped)} bad file(s) skipped (listed below).")
    info.append(
        f"{len(res.records)} files ({res.kind}, layout {res.layout}): "
        + ", ".join(f"{k} {v}" for k, v in Counter(LABEL_NAMES.get(r["label"], "?") for r in res.records).items())
    )
    info.append(
        f"near-duplicates ({p['hash_method']} {p['hash_bits']}-bit, distance <= {p['hash_threshold']}"
        + (f", thumbnail correlation >= {p['min_correlation']:g}" if p.get("min_correlation") is not None else "")
        + "): "
        f"{len(res.groups)} group(s) of 2+ files covering {n_dup_files} files"
        + (f", largest {res.groups[0]['size']}" if res.groups else "")
        + f"; exact (md5) duplicate sets: {len(res.exact_groups)} "
        f"({sum(g['size'] for g in res.exact_groups)} files)"
    )
    info.append(f"groups crossing the split: {len(cross)}; groups with both classes: {len(both)}")
    if sc.get("computable"):
        models = ", ".join(f"{m} {v['mean']:.3f} +/- {v['std']:.3f}" for m, v in sc["models"].items())
        top = ", ".join(f"{d['feature']} {d['auroc']:.2f} ({d['direction']})" for d in sc["single_feature"][:5])
        info.append(f"shortcut AUROC ({sc['n_splits']}-fold, grouped by near-duplicate group): {models}")
        info.append(f"top single-feature AUROCs: {top}")
        scf = res.shortcut_file
        if scf.get("computable"):
            info.append(
                f"shortcut AUROC on file/acquisition features only ({', '.join(scf['features'])}): "
                + ", ".join(f"{m} {v['mean']:.3f}" for m, v in scf["models"].items())
            )
    else:
        info.append(f"shortcut AUROC: not computed ({sc.get('reason', '')})")
    if not warnings:
        shortcut_note = "no strong acquisition shortcut" if sc.get("computable") else "shortcut AUROC not computable"
        info.insert(0, f"no warning: no near-duplicates across the split or the classes; {shortcut_note}.")
    return warnings, warnings + info


# ----------------------------------------------------------------------------------------------------------------
# the report


def check_output_dir(output_dir: str | os.PathLike, overwrite: bool = False) -> Path:
    """The report folder, refusing to write into an existing non-empty one unless ``overwrite``.

    Raises:
        FileExistsError: ``output_dir`` exists and is not empty, and ``overwrite`` is false.
        NotADirectoryError: ``output_dir`` is a file.
    """
    out = Path(output_dir).expanduser().absolute()
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out}: exists and is not a folder")
    ours = (".monai_anomaly", ".monai_anomaly.lock")  # the marker and lock of utils.outputs
    if out.is_dir() and any(p.name not in ours for p in out.iterdir()) and not overwrite:
        raise FileExistsError(
            f"{out}: already exists and is not empty; pass overwrite=True (--overwrite) or choose another output_dir"
        )
    return out


def _jsonable(o: Any) -> Any:
    if isinstance(o, Mapping):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple, set)):
        return [_jsonable(v) for v in o]
    if isinstance(o, np.generic):
        return _jsonable(o.item())
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return o


_CSV_FIRST = ("rel_path", "label", "cls", "role", "split", "group", "dup_group", "dup_group_size", "kind", "md5")


def _write_images_csv(res: AuditResult, path: Path) -> None:
    keys: list[str] = list(_CSV_FIRST) + ["phash", "dhash"]
    for r in res.records:
        for k in r:
            if k not in keys and k != "path":
                keys.append(k)
    keys.append("path")
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        for r in res.records:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in keys})


def _write_groups_csv(res: AuditResult, path: Path) -> None:
    hk = res.params["hash_method"]
    keys = ["dup_group", "group_size", "exact", "crosses_split", "both_classes", "group_splits", "group_labels"]
    keys += ["rel_path", "label", "cls", "split", "md5", hk, "path"]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for g in res.groups:
            for i in g["members"]:
                r = res.records[i]
                w.writerow(
                    {
                        "dup_group": g["group"],
                        "group_size": g["size"],
                        "exact": int(g["exact"]),
                        "crosses_split": int(g["crosses_split"]),
                        "both_classes": int(g["both_classes"]),
                        "group_splits": "/".join(g["splits"]),
                        "group_labels": "/".join(str(v) for v in g["labels"]),
                        "rel_path": r["rel_path"],
                        "label": r["label"],
                        "cls": r["cls"],
                        "split": r["split"],
                        "md5": r["md5"],
                        hk: r[hk],
                        "path": r["path"],
                    }
                )


def _class_table(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    def ms(v: Sequence[Any]) -> str:
        return "-" if not v or v[0] is None else f"{v[0]:.3g}+/-{v[1]:.2g}"

    def counts(d: Mapping[str, int] | None, limit: int = 3) -> str:
        if not d:
            return "-"
        items = list(d.items())
        s = " ".join(f"{k}:{v}" for k, v in items[:limit])
        return s + (" ..." if len(items) > limit else "")

    header = ["class", "n", "size (w x h median) / shape", "modes / dtype", "formats / spacing", "jpeg q"]
    header += ["brightness", "foreground", "hf energy", "chroma"]
    table = [header]
    for r in rows:
        if "width" in r:
            size = f"{r['width'][1]:.0f}x{r['height'][1]:.0f} ({r['width'][0]:.0f}-{r['width'][2]:.0f} wide)"
            modes, fmts = counts(r.get("modes")), counts(r.get("formats"))
        else:
            size, modes, fmts = counts(r.get("shapes"), 2), counts(r.get("dtypes"), 2), counts(r.get("spacings"), 2)
        table.append(
            [
                r["name"],
                str(r["n"]),
                size,
                modes,
                fmts,
                _fmt(r.get("jpeg_quality_median")),
                ms(r["brightness"]),
                ms(r["foreground"]),
                ms(r["hf_energy"]),
                ms(r["chroma"]),
            ]
        )
    widths = [max(len(row[k]) for row in table) for k in range(len(header))]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table]


def _report_text(res: AuditResult, limit: int = 10) -> str:
    p = res.params
    lines = [f"Data audit of {res.dataset_dir}", ""]
    lines += ["Findings", "--------"] + [f"- {s}" for s in res.findings] + [""]

    def group_block(title: str, groups: Sequence[Mapping[str, Any]]) -> None:
        if not groups:
            return
        lines.extend([f"{title} ({len(groups)}; first {min(limit, len(groups))} shown)", ""])
        for g in groups[:limit]:
            lines.append(
                f"  group {g['group']}: {g['size']} files, splits {'/'.join(g['splits'])}, labels "
                f"{'/'.join(str(v) for v in g['labels'])}{', exact copies' if g['exact'] else ''}, "
                f"max hash distance {g['max_link_distance']}, "
                f"weakest link correlation {_fmt(g['min_link_correlation'])}"
            )
            for i in g["members"][:8]:
                r = res.records[i]
                lines.append(f"    [{r['split'] or '-'}] label {r['label']} {r['cls']}: {r['rel_path']}")
            if g["size"] > 8:
                lines.append(f"    ... {g['size'] - 8} more (duplicate_groups.csv)")
        lines.append("")

    group_block("Groups holding both normal and abnormal files", res.both_class_groups)
    group_block("Groups crossing the train/val/test split", res.crossing_groups)
    lines += ["Split used (as the bundles do)", "------------------------------"]
    lines += [
        f"  {s}: " + ", ".join(f"{k} {v}" for k, v in sorted(d.items())) for s, d in sorted(res.split_counts.items())
    ]
    lines += [f"  (val_fraction {p['val_fraction']:g}, test_fraction {p['test_fraction']:g}, seed {p['seed']})", ""]
    lines += ["Per-class statistics", "--------------------"] + ["  " + s for s in _class_table(res.class_stats)]
    lines.append("")
    sc = res.shortcut
    lines += ["Shortcut classifier (acquisition statistics only, no anatomy)", "-" * 62]
    if sc.get("computable"):
        for m, v in sc["models"].items():
            folds = ", ".join(f"{a:.3f}" for a in v["folds"])
            lines.append(f"  {m}: AUROC {v['mean']:.3f} +/- {v['std']:.3f} ({sc['n_splits']} folds: {folds})")
        scf = res.shortcut_file
        if scf.get("computable"):
            models = ", ".join(f"{m} {v['mean']:.3f} +/- {v['std']:.3f}" for m, v in scf["models"].items())
            lines.append(f"  file/acquisition features only ({', '.join(scf['features'])}): {models}")
    else:
        lines.append(f"  not computed: {sc.get('reason', '')}")
    if sc.get("single_feature"):
        lines.append("  single-feature AUROC (max(a, 1-a)):")
        for d in sc["single_feature"]:
            lines.append(f"    {d['feature']:<16} {d['auroc']:.3f}  {d['direction']}")
    lines.append("")
    if res.skipped:
        lines += ["Skipped bad files", "-----------------"] + [f"  {s['path']}: {s['problem']}" for s in res.skipped]
        lines.append("")
    lines += [
        "Files: audit.json (everything), audit_images.csv (one row per file), duplicate_groups.csv, "
        "audit_features.png, audit_shortcut.png",
    ]
    return "\n".join(lines) + "\n"


def _new_figure(figsize: tuple[float, float]) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _plot_features(res: AuditResult, path: Path) -> None:
    feats = [("brightness", "mean brightness (0-255)"), ("foreground", "foreground fraction")]
    feats += [("hf_energy", "high-frequency energy")]
    fig = _new_figure((12.0, 3.6))
    by_label: dict[int, list[Mapping]] = defaultdict(list)
    for r in res.records:
        by_label[int(r["label"])].append(r)
    for k, (key, title) in enumerate(feats):
        ax = fig.add_subplot(1, len(feats), k + 1)
        allv = finite_values([r.get(key) for r in res.records])
        bins = np.histogram_bin_edges(allv, bins=30) if allv.size and np.ptp(allv) > 0 else 10
        for label in sorted(by_label):
            v = finite_values([r.get(key) for r in by_label[label]])
            if v.size:
                ax.hist(v, bins=bins, alpha=0.5, density=True, label=f"{LABEL_NAMES.get(label, label)} ({v.size})")
        ax.set_title(title)
        ax.set_ylabel("density")
        ax.legend(fontsize=8)
    fig.suptitle(f"Per-class file statistics: {Path(res.dataset_dir).name}")
    fig.tight_layout()
    fig.savefig(path)


def _plot_shortcut(res: AuditResult, path: Path) -> None:
    sc = res.shortcut
    single = sc.get("single_feature") or []
    fig = _new_figure((7.0, max(3.0, 0.35 * len(single) + 1.5)))
    ax = fig.add_subplot(1, 1, 1)
    if single:
        names = [d["feature"] for d in single][::-1]
        vals = [d["auroc"] for d in single][::-1]
        colours = ["tab:red" if v >= res.params["warn_auroc"] else "tab:blue" for v in vals]
        ax.barh(names, vals, color=colours)
        ax.axvline(0.5, color="grey", ls="--", lw=1)
        ax.axvline(res.params["warn_auroc"], color="tab:red", ls=":", lw=1)
        ax.set_xlim(0.4, 1.0)
        ax.set_xlabel("single-feature AUROC, max(a, 1-a)")
    else:
        ax.text(0.5, 0.5, f"not computed: {sc.get('reason', '')}", ha="center", va="center", wrap=True)
        ax.set_axis_off()
    if sc.get("computable"):
        models = ", ".join(f"{m.replace('_', ' ')} {v['mean']:.2f}" for m, v in sc["models"].items())
        ax.set_title(f"Shortcut AUROC (CV): {models}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)


def write_audit_report(result: AuditResult, output_dir: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write the audit's files into ``output_dir``.

    Files: ``audit_report.txt`` (findings first), ``audit.json`` (everything), ``audit_images.csv`` (one row per
    file: statistics, hashes, near-duplicate group, split, label), ``duplicate_groups.csv`` (one row per file of each
    group of two or more), ``audit_features.png`` (per-class histograms of brightness, foreground fraction and
    high-frequency energy) and ``audit_shortcut.png`` (single-feature AUROCs).

    Args:
        result: what :func:`~monai_anomaly.data.audit.run.audit_dataset` returned.
        output_dir: the folder to write (created).
        overwrite: write into an existing non-empty folder (the audit's own files are replaced).

    Returns:
        the folder written.

    Raises:
        FileExistsError: ``output_dir`` exists, is not empty, and ``overwrite`` is false.
    """
    out = check_output_dir(output_dir, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    (out / "audit_report.txt").write_text(_report_text(result))
    doc = result.as_dict()
    doc["report_files"] = list(REPORT_FILES)
    (out / "audit.json").write_text(json.dumps(_jsonable(doc), indent=1))
    _write_images_csv(result, out / "audit_images.csv")
    _write_groups_csv(result, out / "duplicate_groups.csv")
    _plot_features(result, out / "audit_features.png")
    _plot_shortcut(result, out / "audit_shortcut.png")
    return out
