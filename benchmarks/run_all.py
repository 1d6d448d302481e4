"""Run every bundle on the same splits of the shared data sets and write ``docs/benchmarks.md`` from scratch.

Each method trains and evaluates through the CLI (``python -m monai_anomaly train`` / ``evaluate``), one process per
stage, one at a time, so that wall time and peak memory are its own (``run_autoencoder.run_stage``). Every method of a
data set uses the same seed, split fractions and image size, so they are tested on the same images. Nothing is tuned
here: the budgets below are fixed a priori to fit the whole run in about an hour on 2 CPU cores (``--full``: the
bundles' own lengths, for a GPU). The supervised reference trains first on each data set; its ``models/model.pt`` is
then the feature network for FID / Inception Score of the generative methods (``evaluate --quality True``).

Usage:
    PYTHONPATH=. python benchmarks/run_all.py                       # everything, ~1 h on 2 CPU cores
    PYTHONPATH=. python benchmarks/run_all.py --full                # the bundles' own lengths, 128 px (GPU)
    PYTHONPATH=. python benchmarks/run_all.py --from-results /tmp/monai_anomaly_bench/all/results.json
    PYTHONPATH=. python benchmarks/run_all.py --datasets /path/to/set --methods autoencoder --tiny --no-docs
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_autoencoder import REPO, _cpu_model, _f, peak_mb, run_dataset  # noqa: E402

__all__ = ["METHODS", "QUICK", "PUBLISHED", "run", "write_markdown", "auroc_vs_time_plot", "main"]

# method -> (bundle, extra --config, what it is); the order is the run order (supervised first: FID features)
METHODS: dict[str, dict[str, str]] = {
    "supervised": {"bundle": "supervised_resnet18", "config": "", "what": "supervised reference (labels used)"},
    "autoencoder": {"bundle": "autoencoder_anomaly", "config": "", "what": "dense-latent autoencoder (default)"},
    "dae": {"bundle": "autoencoder_anomaly", "config": "variants/dae.json", "what": "denoising AE, coarse noise"},
    "aeu": {"bundle": "autoencoder_anomaly", "config": "variants/aeu.json", "what": "AE-U (mean + log-variance)"},
    "healthy_gan": {"bundle": "healthy_gan_anomaly", "config": "", "what": "healthy-translation GAN"},
    "diffusion_refined": {"bundle": "diffusion_refined_anomaly", "config": "", "what": "GAN + diffusion refiner"},
    "anoddpm": {"bundle": "anoddpm_anomaly", "config": "", "what": "AnoDDPM-style partial diffusion"},
    "cyclegan": {"bundle": "cyclegan_anomaly", "config": "", "what": "CycleGAN normal -> normal"},
}
GENERATIVE = [m for m in METHODS if m != "supervised"]

# (epochs, validation interval, iterations-per-epoch cap or None) per data set and method, fixed a priori from
# the per-epoch costs measured before (docs/experiments.md) so that the whole run fits about an hour on 2 CPU cores
QUICK: dict[str, dict[str, tuple[int, int, int | None]]] = {
    "brats2018_sample": {
        "supervised": (10, 2, None),
        "autoencoder": (50, 5, None),
        "dae": (30, 5, None),
        "aeu": (50, 5, None),
        "healthy_gan": (12, 3, None),
        "diffusion_refined": (12, 3, None),
        "anoddpm": (12, 3, None),
        "cyclegan": (1, 1, None),
    },
    "brain_tumor_mri_4class": {
        "supervised": (4, 2, None),
        "autoencoder": (20, 5, None),
        "dae": (10, 5, None),
        "aeu": (20, 5, None),
        "healthy_gan": (4, 2, None),
        "diffusion_refined": (3, 3, None),
        "anoddpm": (3, 3, None),
        "cyclegan": (1, 1, 20),
    },
}
DEFAULT_DATASETS = list(QUICK)
FULL_EPOCHS = {  # --full: the bundles' own lengths (early stopping still applies)
    "supervised": 50, "autoencoder": 100, "dae": 100, "aeu": 100, "healthy_gan": 40, "diffusion_refined": 40,
    "anoddpm": 40, "cyclegan": 20,
}  # fmt: skip

# published numbers on the same public data, with what differs from our protocol (only what the papers report)
PUBLISHED: dict[tuple[str, str], str] = {
    ("brain_tumor_mri_4class", "autoencoder"): "0.859 / 0.871 slice AUROC, AE latent 16 / 32 (MedIAnomaly / AE4AD, "
    "MICCAI 2024): Kaggle Training/Testing split, pituitary left out, 600 epochs",
    ("brain_tumor_mri_4class", "aeu"): "0.938 slice AUROC, AE-U (MedIAnomaly, MICCAI 2024 benchmark): Kaggle "
    "Training/Testing split, pituitary left out, its own budget",
    ("brats2018_sample", "dae"): "0.859 slice AUROC, DAE with coarse noise (Kascenas et al., MIDL 2022): BraTS 2021, "
    "128 px, its own split; ours is a 10-volume BraTS 2018 sample",
}

# what to keep in mind when reading a data set's rows (from the audit and the SOURCE.md of each set)
DATASET_NOTES: dict[str, str] = {
    "brats2018_sample": (
        "10 FLAIR volumes, every one with a tumour: slice labels come from the masks, lesion-free slices are the "
        "normals, and volume-level AUROC needs normal volumes, which this set has none of. 3 test volumes: a few "
        "hundred correlated slices, so differences of a few hundredths are within the noise. The supervised "
        "reference learns from the labels of 5 training volumes and half the validation volumes: few labelled "
        "volumes."
    ),
    "brain_tumor_mri_4class": (
        "Normals and tumours come from different sources: `python -m monai_anomaly audit` finds them separable by "
        "image statistics alone (shortcut AUROC up to 0.99, docs/audit.md). The supervised reference can use that "
        "shortcut; a raw reconstruction residual scores texture first, which is higher in the normals, and ranked "
        "tumours below normals (AUROC 0.24-0.34, the refiner 0.53, at these budgets before bundle 0.7.0 / 0.4.0). "
        "The autoencoder's "
        "map is now divided by each image's own detail energy (`map_normalisation: auto`, `complexity` for 2D "
        "image sets), and every map is "
        "masked by the eroded foreground; but sharpness alone (`1 / detail energy`, no network) separates this "
        "set's validation classes with AUROC 0.80, so these rows are not evidence of detection by themselves: "
        "read docs/experiments.md, Part F (the same scores compared within quintiles of sharpness). The published "
        "autoencoder protocol reaches its number only after hundreds of epochs (reproduced through the bundle: "
        "0.917 at 300 epochs, docs/experiments.md, A4)."
    ),
}

SPLIT_NOTE = "the bundles' split (`val_fraction` 0.15, `test_fraction` 0.3, grouped by `group` / volume)"


def _args_for(method: str, dataset: str, tiny: bool, full: bool) -> tuple[int, int, int | None]:
    if tiny:
        return 1, 1, 2
    if full:
        return FULL_EPOCHS[method], 5, None
    return QUICK.get(dataset, QUICK["brain_tumor_mri_4class"])[method]


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _aucp(res: dict[str, Any]) -> float | None:
    """The AUCp of the chosen checkpoint (best ``val_aucp`` in the validation history), when a mixed set existed."""
    hist = [h for h in (res.get("train") or {}).get("val_history", []) if "val_aucp" in h]
    return max(h["val_aucp"] for h in hist) if hist else None


def run(
    datasets: list[str],
    methods: list[str],
    out: Path,
    shared: Path,
    image_size: int,
    seed: int,
    tiny: bool = False,
    full: bool = False,
    quality: bool = True,
    command: str = "",
    reuse: bool = False,
) -> dict[str, Any]:
    """Train and evaluate ``methods`` on ``datasets``; return (and write to ``out/results.json``) every number."""
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {
        "machine": {
            "cpu": _cpu_model(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "torch": _version("torch"),
            "monai": _version("monai"),
            "gpu": _gpu(),
        },
        "date": time.strftime("%Y-%m-%d"),
        "mode": "tiny" if tiny else ("full" if full else "quick"),
        "image_size": image_size,
        "seed": seed,
        "command": command or "python benchmarks/run_all.py",
        "results": [],
    }
    earlier = {}
    if reuse and (out / "results.json").is_file():  # keep the successful runs of an interrupted or partly failed run
        prev = json.loads((out / "results.json").read_text())
        earlier = {(r["dataset"], r["method"]): r for r in prev.get("results", []) if "error" not in r}
        summary["reused_from"] = prev.get("date")
    t0 = time.time()
    for ds in datasets:
        path = Path(ds) if Path(ds).is_dir() else shared / ds
        name = path.name
        sup_ckpt = None
        for method in methods:
            spec = METHODS[method]
            if (name, method) in earlier:
                res = earlier[(name, method)]
                print(f"=== {name}__{method}: kept from the earlier run", flush=True)
                res = {**res, "reused": True}
                if method == "supervised":
                    sup_ckpt = out / f"{name}__{method}" / "models" / "model.pt"
                summary["results"].append(res)
                continue
            epochs, vint, cap = _args_for(method, name, tiny, full)
            extra = [f"bundle={spec['bundle']}"]
            if cap:
                extra.append(f"train#trainer#epoch_length={cap}")
            if tiny:
                extra += [f"batch_size={8}", "val_batch_size=8"]
            if method == "diffusion_refined":
                stage1 = out / f"{name}__healthy_gan" / "models" / "model.pt"
                if not stage1.is_file():
                    summary["results"].append(
                        {"dataset": name, "method": method, "error": "needs the healthy_gan run of this data set first"}
                    )
                    continue
                extra.append(f"coarse_ckpt={stage1}")
            eval_extra = []
            if quality and method != "supervised":
                eval_extra.append("quality=True")
                if sup_ckpt is not None:
                    eval_extra.append(f"quality_features={sup_ckpt}")
            tag = f"{name}__{method}"
            print(f"=== {tag}: {epochs} epochs (validation every {vint}, cap {cap})", flush=True)
            res = run_dataset(
                str(path.resolve()), shared, out, epochs, image_size, None, vint, seed, spec["config"], extra,
                eval_extra, tag,
            )  # fmt: skip
            res.update({"dataset": name, "method": method, "bundle": spec["bundle"], "iteration_cap": cap})
            res["aucp"] = _aucp(res)
            eval_dir = out / tag / "eval"
            metrics = _read_json(eval_dir / "metrics.json") or {}
            res["volume_full"] = metrics.get("volume")
            res["n_test_volumes"] = (metrics.get("volume") or {}).get("n")
            res["quality"] = _read_json(eval_dir / "quality.json")
            if method == "supervised" and "error" not in res:
                sup_ckpt = out / tag / "models" / "model.pt"
            summary["results"].append(res)
            summary["total_wall_s"] = time.time() - t0
            (out / "results.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def _version(mod: str) -> str:
    try:
        return __import__(mod).__version__
    except Exception:  # noqa: BLE001 - reported, not needed
        return "n/a"


def _gpu() -> str:
    try:
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    except Exception:  # noqa: BLE001
        return "n/a"


def _slice_row(r: dict[str, Any]) -> dict[str, str]:
    tm = r.get("slice_threshold_metrics") or {}
    vol = r.get("volume_full") or {}
    vm = vol.get("metrics") or {}
    vol_s = (
        f"{_f(vm.get('auroc'))} / {_f(vm.get('auprc'))}" if vm else "n/a (" + _short(vol.get("skipped_reason")) + ")"
    )
    n_vol = r.get("n_test_volumes") or 0
    ev = r.get("evaluate") or {}
    per_vol = ev.get("wall_s") / n_vol if n_vol and ev.get("wall_s") else None
    return {
        "auroc": _f((r.get("slice") or {}).get("auroc")),
        "auprc": _f((r.get("slice") or {}).get("auprc")),
        "sens_spec": f"{_f(tm.get('sensitivity'), 2)} / {_f(tm.get('specificity'), 2)}",
        "volume": vol_s,
        "aucp": _f(r.get("aucp")) if r.get("aucp") is not None else "no mixed set",
        "train_s": _f((r.get("train") or {}).get("wall_s"), 0),
        "eval_s": _f(ev.get("wall_s"), 0),
        "per_vol": _f(per_vol, 2),
        "mem": f"{_f(peak_mb(r.get('train') or {}), 0)} / {_f(peak_mb(ev), 0)}",
    }


def _short(reason: Any) -> str:
    if not reason:
        return "one class"
    reason = str(reason)
    return "one class" if "both classes" in reason else reason[:40]


def _quality_cells(q: dict[str, Any] | None) -> list[str]:
    """SSIM, MS-SSIM, PSNR of normals; FIDs against real normals (recon of normals, translated abnormals, real
    abnormals as the reference gap); IS of the translated abnormals (``quality.json`` of ``handlers/quality.py``)."""
    if not q:
        return ["n/a"] * 7

    def num(d: Any, key: str) -> str:
        v = d.get(key) if isinstance(d, dict) else None
        if isinstance(v, dict):
            v = v.get("value")
        return _f(float(v), 3) if isinstance(v, (int, float)) else "n/a"

    rec, fid, inc = q.get("reconstruction_normal") or {}, q.get("fid") or {}, q.get("inception_score") or {}
    return [
        num(rec, "ssim"),
        num(rec, "ms_ssim"),
        num(rec, "psnr"),
        num(fid, "reconstructed_normal_vs_real_normal"),
        num(fid, "translated_abnormal_vs_real_normal"),
        num(fid, "real_abnormal_vs_real_normal"),
        num(inc, "generated_abnormal"),
    ]


def auroc_vs_time_plot(summary: dict[str, Any], path: Path) -> Path | None:
    """Slice AUROC against training wall time, one marker per method, one panel per data set."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in summary["results"] if "error" not in r and (r.get("slice") or {}).get("auroc") is not None]
    if not rows:
        return None
    names = list(dict.fromkeys(r["dataset"] for r in rows))
    fig, axes = plt.subplots(1, len(names), figsize=(5.5 * len(names), 4.2), squeeze=False)
    markers = dict(zip(METHODS, "s o D ^ v P X".split()))
    for ax, ds in zip(axes[0], names):
        for r in (r for r in rows if r["dataset"] == ds):
            ax.scatter(r["train"]["wall_s"] / 60.0, r["slice"]["auroc"], marker=markers.get(r["method"], "o"), s=60)
            ax.annotate(r["method"], (r["train"]["wall_s"] / 60.0, r["slice"]["auroc"]), fontsize=8,
                        xytext=(4, 4), textcoords="offset points")  # fmt: skip
        ax.axhline(0.5, color="grey", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.set_ylim(0.0, 1.0)
        ax.set_xlabel("training wall time (min, log)")
        ax.set_ylabel("test slice AUROC")
        ax.set_title(ds)
    fig.suptitle(f"AUROC against training time ({summary['mode']} budgets, {summary['machine']['cpu_count']} cores)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


COST_DIR = Path(__file__).resolve().parent / "results"


def cost_tables(cost_dir: Path | None = COST_DIR) -> list[str]:
    """Markdown of the diffusion AUROC-against-cost tables kept in ``cost_dir`` (``diffusion_cost_*.json``, written by
    ``benchmarks/diffusion_cost.py``): validation AUROC and seconds per 240 x 240 x 155 volume per (t0, DDIM steps)."""
    files = sorted(Path(cost_dir).glob("diffusion_cost_*.json")) if cost_dir else []
    if not files:
        return []
    lines = [
        "## Diffusion: AUROC against inference cost",
        "",
        "Validation split (nothing chosen on a test split), the trained models of "
        "[experiments.md, Part D](experiments.md#part-d-the-diffusion-methods-measured-2026-12-01); seconds: one "
        "240 x 240 x 155 volume (155 slices) through `AnomalySliceInferer`, on the CPU threads given; steps 0 = the "
        "single-step estimate of x0 (one network pass per slice). The bundles' default is `t0` 250 with 5 steps.",
        "",
    ]
    for f in files:
        d = json.loads(f.read_text())
        lines += [
            f"**{d.get('dataset', '?')}, {d.get('method', d.get('model_type', '?'))}** ({d.get('n_val', '?')} "
            f"validation slices, {d.get('n_val_anomalous', '?')} anomalous; {d.get('machine', '?')}, "
            f"{d.get('threads', '?')} threads, {d.get('date', '?')}): `{d.get('command', '')}`",
            "",
            "| t0 | DDIM steps | network passes / slice | val AUROC (AUPRC) | s / volume |",
            "|---|---|---|---|---|",
        ]
        for r in d.get("rows", []):
            lines.append(
                f"| {r['t0']} | {r['steps']} | {r['network_passes_per_slice']} | {_f(r['val_auroc'])} "
                f"({_f(r['val_auprc'])}) | {_f(r['s_per_volume_240x240x155'], 1)} |"
            )
        lines.append("")
    return lines


def write_markdown(summary: dict[str, Any], path: Path, plot: Path | None, cost_dir: Path | None = COST_DIR) -> str:
    """``docs/benchmarks.md``, entirely from ``summary``."""
    m = summary["machine"]
    lines = [
        "# Benchmarks",
        "",
        "<!-- Written by benchmarks/run_all.py: do not edit by hand, run it again. -->",
        "",
        f"Every bundle, trained and tested on the same splits of the shared data sets by one command "
        f"(`{summary['command'].strip()}`), on {summary['date']}.",
        "",
        f"- Machine: {m['cpu']}, {m['cpu_count']} cores, GPU: {m['gpu']}; Python {m['python']}, torch {m['torch']}, "
        f"MONAI {m['monai']}. Whole run: {_f(summary.get('total_wall_s', 0) / 60.0, 1)} min"
        + (
            f"; some rows were redone later with `--reuse` (`reused` in results.json marks the rows kept from the "
            f"run of {summary['reused_from']})."
            if summary.get("reused_from")
            else "."
        ),
        f"- Budgets: **{summary['mode']}** (`QUICK` in `benchmarks/run_all.py`: fixed before the run to fit about an "
        "hour on 2 CPU cores; `--full` uses the bundles' own lengths). Short budgets favour the cheap methods: read "
        "the AUROC-against-time plot, not only the table. Image size "
        f"{summary['image_size']} px; split: {SPLIT_NOTE}, seed {summary['seed']}.",
        "- Model selection: each bundle's own rule on the validation split (validation loss, AUCp on an unannotated "
        "mixed set for the healthy GAN, validation AUROC for the supervised reference). The test split is evaluated "
        "once. The supervised reference trains on labelled abnormal images (half the validation groups): it shows "
        "what labels buy on the same test images, not a competitor.",
        "- Threshold: the label-free one each bundle fits on normal validation slices (mean + 3 std); sensitivity and "
        "specificity are at that threshold.",
        "- Train s of `diffusion_refined` is the refiner's alone: its stage 1 is the `healthy_gan` run of the same "
        "set (add that row's time).",
        "- Evaluate s / volume: the whole `evaluate` stage (load, slice, score, report) divided by the test volumes "
        "(2D sets: one image is one volume).",
        "- FID / IS use the supervised reference's penultimate features and softmax of the same data set (no Inception "
        "weights can be downloaded here): comparable between our methods, not with Inception FID in papers. IS of a "
        "2-class network lies in [1, 2].",
        "- One-off experiments (ablations, protocol reproductions, peer timings, cost curves) are in "
        "[experiments.md](experiments.md), each with its own command.",
        "",
    ]
    names = list(dict.fromkeys(r["dataset"] for r in summary["results"]))
    for ds in names:
        rows = [r for r in summary["results"] if r["dataset"] == ds]
        first = next((r for r in rows if "slice" in r), {})
        sl = first.get("slice_threshold_metrics") or {}
        lines += [
            f"## {ds}",
            "",
            f"Test split: {_f((first.get('slice') or {}).get('n'))} slices ({_f(sl.get('n_normal'))} normal, "
            f"{_f(sl.get('n_anomalous'))} abnormal).",
            "",
            *([f"Read with: {DATASET_NOTES[ds]}", ""] if ds in DATASET_NOTES else []),
            "| method | bundle | epochs (iteration cap) | slice AUROC | slice AUPRC | sens / spec at threshold "
            "| volume AUROC / AUPRC | AUCp (val) | train s | evaluate s | evaluate s / volume | peak MB train / eval |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            ep = f"{r.get('epochs', 'n/a')}" + (f" ({r['iteration_cap']} it)" if r.get("iteration_cap") else "")
            if "error" in r:
                lines.append(f"| {r['method']} | {r.get('bundle', '')} | {ep} | failed: {r['error']} |" + " |" * 8)
                continue
            c = _slice_row(r)
            lines.append(
                f"| {r['method']} | `{r['bundle']}` | {ep} | {c['auroc']} | {c['auprc']} | {c['sens_spec']} "
                f"| {c['volume']} | {c['aucp']} | {c['train_s']} | {c['eval_s']} | {c['per_vol']} | {c['mem']} |"
            )
        qrows = [r for r in rows if r.get("method") in GENERATIVE and "error" not in r]
        if any(r.get("quality") for r in qrows):
            lines += [
                "",
                "Reconstruction of normal test slices, and FID / IS of the reconstructions (features: this data set's "
                "supervised reference):",
                "",
                "| method | SSIM | MS-SSIM | PSNR dB | FID recon normal vs real normal "
                "| FID translated abnormal vs real normal | FID real abnormal vs real normal (gap to close) "
                "| IS translated abnormal |",
                "|---|---|---|---|---|---|---|---|",
            ]
            for r in qrows:
                lines.append(f"| {r['method']} | " + " | ".join(_quality_cells(r.get("quality"))) + " |")
        pubs = [(meth, txt) for (d, meth), txt in PUBLISHED.items() if d == ds]
        if pubs:
            lines += ["", "Published on the same data:", ""]
            lines += [f"- {meth}: {txt}." for meth, txt in pubs]
        lines.append("")
    if plot is not None:
        rel = os.path.relpath(plot, path.parent)
        lines += ["## AUROC against training time", "", f"![AUROC against training time]({rel})", ""]
    lines += cost_tables(cost_dir)
    scale = REPO / "benchmarks" / "results" / "scale.md"  # measured apart (cohorts, pipeline, GPU), with commands
    if scale.is_file():
        lines += scale.read_text().rstrip("\n").splitlines() + [""]
    lines += [
        "## Measured apart from this run",
        "",
        "Each with its own command, machine and date, in [experiments.md](experiments.md):",
        "",
        "- Diffusion: how the cost tables above were chosen from, Gaussian against simplex noise, and the public "
        "AnoDDPM code timed beside ours: [Part D](experiments.md#part-d-the-diffusion-methods-measured-2026-12-01).",
        "- GANs: the Brainomaly-style Alzheimer setting (AUCp, inductive and transductive AUROC) for the healthy GAN "
        "and the two-domain CycleGAN, AUCp against the true AUROC, and the PyTorch-GAN CycleGAN and official "
        "Brainomaly code timed beside ours: [Part C](experiments.md#part-c-the-gan-methods-measured-2026-12-01).",
        "- Autoencoder defaults, their ablations on validation splits, site-held-out BraTS and the published "
        "autoencoder protocol: [Part A](experiments.md#part-a-detection-defaults-of-bundle-v020-measured-2026-12-01).",
        "",
        "## Reproduce",
        "",
        "```bash",
        "PYTHONPATH=. python benchmarks/run_all.py            # writes this file and the plot",
        "PYTHONPATH=. python benchmarks/run_all.py --full     # the bundles' own lengths at 128 px (GPU)",
        "```",
        "",
        "Per-run commands (train and evaluate) are in the `results.json` the command writes beside the runs.",
        "",
    ]
    text = "\n".join(lines)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return text


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shared-data", default=str(REPO.parent / "shared" / "data"))
    p.add_argument("--out", default="/tmp/monai_anomaly_bench/all", help="run folder (checkpoints, reports)")
    p.add_argument("--datasets", nargs="+", default=DEFAULT_DATASETS, help="shared set names or folders")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--image-size", type=int, default=None, help="default 64 px, 128 px with --full")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--full", action="store_true", help="the bundles' own training lengths (for a GPU)")
    p.add_argument("--tiny", action="store_true", help="1 epoch of 2 iterations per method (tests)")
    p.add_argument("--no-quality", action="store_true", help="skip FID / IS / SSIM / PSNR")
    p.add_argument("--reuse", action="store_true", help="keep the successful runs of --out/results.json, redo the rest")
    p.add_argument("--docs", default=str(REPO / "docs" / "benchmarks.md"), help="markdown file to write")
    p.add_argument("--no-docs", action="store_true", help="only write results.json")
    p.add_argument("--from-results", default=None, help="rewrite the docs from an earlier results.json, no run")
    a = p.parse_args(argv)
    if a.from_results:
        summary = json.loads(Path(a.from_results).read_text())
    else:
        methods = [m for m in METHODS if m in a.methods]  # the run order: supervised first
        summary = run(
            a.datasets, methods, Path(a.out).resolve(), Path(a.shared_data).resolve(),
            a.image_size or (128 if a.full else 64), a.seed,
            tiny=a.tiny, full=a.full, quality=not a.no_quality,
            command=" ".join(["python benchmarks/run_all.py", *(sys.argv[1:] if argv is None else argv)]),
            reuse=a.reuse,
        )  # fmt: skip
    if not a.no_docs:
        docs = Path(a.docs)
        plot = auroc_vs_time_plot(summary, docs.parent / "images" / "benchmarks_auroc_vs_time.png")
        write_markdown(summary, docs, plot)
        print(f"wrote {docs}" + (f" and {plot}" if plot else ""))
    for r in summary["results"]:
        auc = (r.get("slice") or {}).get("auroc")
        print(
            f"{r['dataset']:>24} {r['method']:>18}: slice AUROC {_f(auc)}"
            + (f"  ERROR {r['error']}" if "error" in r else "")
        )
    return summary


if __name__ == "__main__":
    main()
