"""Train and evaluate the ``autoencoder_anomaly`` bundle on the shared datasets; report slice/volume AUROC and AUPRC.

Every run goes through the CLI (``python -m monai_anomaly train`` then ``evaluate``), each in its own process, so the
wall time and the peak memory (``resource.getrusage`` max RSS) of each stage are measured separately. Nothing is tuned
on the test split: the settings are fixed before the run, and the validation history printed during training
(``val_normal_loss``, validation slice AUROC) is kept in the JSON for model selection.

Example:
    PYTHONPATH=. python benchmarks/run_autoencoder.py --out /tmp/ae_bench --epochs brats2018_sample=25
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_EPOCHS", "peak_mb", "run_stage", "parse_train_log", "run_dataset", "markdown_table", "main"]

REPO = Path(__file__).resolve().parents[1]
# chosen a priori to fit ~35 min on 2 shared CPU cores (see docs/experiments.md)
DEFAULT_EPOCHS = {
    "brats2018_sample": 25,
    "brats2018_sample@site": 25,
    "brain_tumor_mri_4class": 10,
    "alzheimer_mri_4class": 6,
}
DEFAULT_VAL_INTERVAL = {
    "brats2018_sample": 5,
    "brats2018_sample@site": 5,
    "brain_tumor_mri_4class": 2,
    "alzheimer_mri_4class": 2,
}

# runs the CLI in this child process and records its wall time and peak RSS, even when it fails
_CHILD = """
import json, resource, sys, time
t0 = time.perf_counter()
rc = 0
try:
    from monai_anomaly.cli import main
    main(sys.argv[2:])
except SystemExit as e:
    rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
except BaseException:
    import traceback; traceback.print_exc(); rc = 1
finally:
    # VmHWM is this process's own peak; Linux's getrusage max RSS also counts the parent's peak before exec
    hwm = None
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024.0
    except OSError:
        pass
    with open(sys.argv[1], "w") as f:
        json.dump({"wall_s": time.perf_counter() - t0, "rc": rc, "vm_hwm_mb": hwm,
                   "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}, f)
sys.exit(rc)
"""

_TIME = r"(\d+):(\d+):(\d+(?:\.\d+)?)"


def _secs(h: str, m: str, s: str) -> float:
    return int(h) * 3600 + int(m) * 60 + float(s)


def run_stage(args: list[str], log: Path, python: str = sys.executable) -> dict[str, Any]:
    """Run ``python -m monai_anomaly <args>`` in a child process, its output in ``log``; return wall time and RSS."""
    stats = log.with_suffix(".stats.json")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    with open(log, "w") as f:
        proc = subprocess.run([python, "-c", _CHILD, str(stats), *args], stdout=f, stderr=subprocess.STDOUT, env=env)
    out = json.loads(stats.read_text()) if stats.is_file() else {"rc": proc.returncode}
    out["rc"] = proc.returncode
    return out


def parse_train_log(text: str) -> dict[str, Any]:
    """Validation history, per-epoch times and iterations per epoch from a ``train`` log."""
    history = []
    for m in re.finditer(r"Epoch\[(\d+)\] Metrics -- (.*)", text):
        vals = dict(re.findall(r"(\w+): ([-\d.eE+naif]+)", m.group(2)))
        history.append({"epoch": int(m.group(1)), **{k: float(v) for k, v in vals.items()}})
    trainer = [
        _secs(*m.groups())
        for m in re.finditer(r"\w*Trainer - INFO - Epoch\[\d+\] Complete\. Time taken: " + _TIME, text)
    ]
    val = [
        _secs(*m.groups())
        for m in re.finditer(r"AnomalyEvaluator - INFO - Epoch\[\d+\] Complete\. Time taken: " + _TIME, text)
    ]
    iters = [int(x) for x in re.findall(r"train \[\d+/\d+\]: \[\d+/(\d+)\]", text)]
    started = re.search(r"(\d+-\d+-\d+ \d+:\d+:\d+),\d+ - ignite\.engine\.engine\.\w*Trainer - INFO - Engine run", text)
    first = re.search(r"(\d+-\d+-\d+ \d+:\d+:\d+),\d+ - INFO - --- input summary", text)
    prep = None
    if started and first:
        fmt = "%Y-%m-%d %H:%M:%S"
        prep = time.mktime(time.strptime(started.group(1), fmt)) - time.mktime(time.strptime(first.group(1), fmt))
    return {
        "val_history": history,
        "epoch_s": trainer,
        "val_s": val,
        "iters_per_epoch": max(iters) if iters else None,
        "epochs_run": len(trainer),
        "preprocess_s": prep,
    }


def _metrics(level: dict[str, Any] | None) -> dict[str, Any]:
    if not level:
        return {}
    m = level.get("metrics") or {}
    return {
        "n": level.get("n"),
        "auroc": m.get("auroc"),
        "auprc": m.get("auprc"),
        "skipped_reason": level.get("skipped_reason"),
    }


def site_manifest(shared: Path, out: Path, val_cases: int = 2) -> Path:
    """A manifest of ``brats2018_sample`` split by site: CBICA cases train (``val_cases`` of them validate), TCIA test.

    The case ids name their institution, so this tests whether the defaults hold on a site never seen in training.
    """
    src = shared / "brats2018_sample"
    with open(src / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    cbica = sorted(r["case_id"] for r in rows if "_CBICA_" in r["case_id"])
    val = set(cbica[-val_cases:])
    path = out / "brats_site_manifest.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "volume_id", "split", "mask", "group"])
        for r in rows:
            cid = r["case_id"]
            split = "test" if "_TCIA" in cid else ("val" if cid in val else "train")
            w.writerow([str(src / r["image"]), 1, cid, split, str(src / r["mask"]), cid])
    return path


def run_dataset(
    name: str,
    shared: Path,
    out: Path,
    epochs: int,
    image_size: int,
    batch_size: int | None,
    val_interval: int,
    seed: int,
    config: str = "",
    extra: list[str] | None = None,
    eval_extra: list[str] | None = None,
    tag: str = "",
) -> dict[str, Any]:
    """Train then evaluate on one dataset; return the measured numbers (see ``main``).

    ``name`` ``brats2018_sample@site`` trains on the CBICA cases and tests on the TCIA cases (:func:`site_manifest`).
    """
    run_dir = out / (tag or name.replace("@", "_"))
    # the run folder holds only what `train` / `evaluate` write (it is theirs: monai_anomaly refuses a folder holding
    # other files); the harness's logs and manifests go beside it
    side = out / f"{run_dir.name}.files"
    side.mkdir(parents=True, exist_ok=True)
    ds = site_manifest(shared, side) if name == "brats2018_sample@site" else shared / name
    common = ["--image_size", str(image_size), "--seed", str(seed), "--num_workers", "0"]
    if name == "brats2018_sample@site":  # the manifest in the run folder lists the shared files by absolute path
        common += ["--allow_outside", "True"]
    if batch_size:
        common += ["--batch_size", str(batch_size)]
    if config:
        common += ["--config", config]
    for kv in extra or []:
        k, v = kv.split("=", 1)
        common += [f"--{k}", v]
    train_args = ["train", str(ds), "--output_dir", str(run_dir), "--max_epochs", str(epochs), "--overwrite", "True"]
    train_args += ["--val_interval", str(val_interval), *common]
    print(f"[{name}] train: python -m monai_anomaly {' '.join(train_args)}", flush=True)
    train = run_stage(train_args, side / "train.log")
    res: dict[str, Any] = {"dataset": name, "tag": tag, "epochs": epochs, "image_size": image_size}
    res["config"], res["extra"], res["eval_extra"] = config, list(extra or []), list(eval_extra or [])
    res["train_command"] = "python -m monai_anomaly " + " ".join(train_args)
    res["train"] = {**train, **parse_train_log((side / "train.log").read_text(errors="replace"))}
    if train["rc"] != 0:
        res["error"] = f"train failed (rc {train['rc']}), see {side / 'train.log'}"
        return res
    t = res["train"]
    if t["iters_per_epoch"] and t["epoch_s"]:
        # the trainer's epoch time includes its validation runs; subtract them for the training-only rate
        train_only = sum(t["epoch_s"]) - sum(t["val_s"])
        t["train_only_s"] = train_only
        t["train_slices_per_s_approx"] = (
            t["iters_per_epoch"] * (batch_size or 64) * t["epochs_run"] / max(train_only, 1e-9)
        )
    eval_args = ["evaluate", str(ds), "--output_dir", str(run_dir), "--overwrite", "True", *common]
    for kv in eval_extra or []:
        k, v = kv.split("=", 1)
        eval_args += [f"--{k}", v]
    print(f"[{name}] evaluate: python -m monai_anomaly {' '.join(eval_args)}", flush=True)
    res["evaluate_command"] = "python -m monai_anomaly " + " ".join(eval_args)
    res["evaluate"] = run_stage(eval_args, side / "evaluate.log")
    mfile = run_dir / "eval" / "metrics.json"
    if res["evaluate"]["rc"] != 0 or not mfile.is_file():
        res["error"] = f"evaluate failed (rc {res['evaluate']['rc']}), see {side / 'evaluate.log'}"
        return res
    m = json.loads(mfile.read_text())
    res["slice"] = _metrics(m.get("slice"))
    res["volume"] = _metrics(m.get("volume"))
    res["threshold"] = m.get("threshold")
    res["slice_threshold_metrics"] = (m.get("slice") or {}).get("metrics")
    res["eval_dir"] = str(run_dir / "eval")
    return res


def peak_mb(stage: dict[str, Any]) -> float | None:
    """Peak memory of a stage's process: VmHWM when recorded, else getrusage max RSS."""
    return stage.get("vm_hwm_mb") or stage.get("max_rss_mb")


def _f(x: Any, nd: int = 3) -> str:
    return "n/a" if x is None else (f"{x:.{nd}f}" if isinstance(x, float) else str(x))


def markdown_table(results: list[dict[str, Any]]) -> str:
    """One row per dataset: test-split metrics, best validation numbers, times and peak memory."""
    head = (
        "| dataset | epochs | test slices (n) | slice AUROC | slice AUPRC | volume AUROC "
        "| best val_normal_loss (epoch) | val slice AUROC at best | train wall s | train slices/s | eval wall s "
        "| peak RSS train / eval MB |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    rows = [head]
    for r in results:
        if "error" in r:
            rows.append(f"| {r['dataset']} | {r['epochs']} | {r['error']} |" + " |" * 9)
            continue
        key = "val_normal_loss"  # the evaluator's key metric (logs of old runs: val_recon_loss)
        if not any(key in h for h in r["train"]["val_history"]):
            key = "val_recon_loss"
        hist = [h for h in r["train"]["val_history"] if key in h]
        best = min(hist, key=lambda h: h[key]) if hist else {}
        vol = r["volume"]
        vol_s = _f(vol.get("auroc")) if vol.get("auroc") is not None else "n/a (one class)"
        rows.append(
            f"| {r['dataset']} | {r['train']['epochs_run']} | {_f(r['slice'].get('n'))} "
            f"| {_f(r['slice'].get('auroc'))} "
            f"| {_f(r['slice'].get('auprc'))} | {vol_s} | {_f(best.get(key), 4)} ({best.get('epoch')}) "
            f"| {_f(best.get('slice_auroc'))} | {_f(r['train'].get('wall_s'), 0)} "
            f"| {_f(r['train'].get('train_slices_per_s_approx'), 1)} | {_f(r['evaluate'].get('wall_s'), 0)} "
            f"| {_f(peak_mb(r['train']), 0)} / {_f(peak_mb(r['evaluate']), 0)} |"
        )
    return "\n".join(rows)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shared-data", default="../shared/data", help="folder holding the shared datasets")
    p.add_argument("--out", default="/tmp/monai_anomaly_bench/autoencoder", help="run folder (checkpoints, reports)")
    p.add_argument(
        "--datasets", nargs="+", default=list(DEFAULT_EPOCHS), help="dataset folder names under --shared-data"
    )
    p.add_argument("--epochs", nargs="*", default=[], metavar="NAME=N", help="per-dataset max_epochs overrides")
    p.add_argument("--val-interval", nargs="*", default=[], metavar="NAME=N", help="per-dataset val_interval")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=None, help="default: the bundle's")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--config", default="", help="extra bundle configs for train and evaluate (e.g. variants/dae.json)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides for train and evaluate")
    p.add_argument("--eval-set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides for evaluate only")
    p.add_argument("--tag", default="", help="run folder name under --out (one dataset)")
    a = p.parse_args(argv)
    epochs = {**DEFAULT_EPOCHS, **{k: int(v) for k, v in (e.split("=") for e in a.epochs)}}
    vint = {**DEFAULT_VAL_INTERVAL, **{k: int(v) for k, v in (e.split("=") for e in a.val_interval)}}
    shared, out = Path(a.shared_data).resolve(), Path(a.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    results = []
    t0 = time.time()
    for name in a.datasets:
        r = run_dataset(
            name,
            shared,
            out,
            epochs.get(name, 10),
            a.image_size,
            a.batch_size,
            vint.get(name, 2),
            a.seed,
            a.config,
            a.set,
            a.eval_set,
            a.tag,
        )
        results.append(r)
        summary = {
            "machine": {"cpu": _cpu_model(), "cpu_count": os.cpu_count(), "python": platform.python_version()},
            "date": time.strftime("%Y-%m-%d"),
            "total_wall_s": time.time() - t0,
            "results": results,
        }
        (out / f"results{'_' + a.tag if a.tag else ''}.json").write_text(json.dumps(summary, indent=2, default=str))
    print(markdown_table(results))
    print(f"results: {out / 'results.json'}")
    return results


if __name__ == "__main__":
    main()
