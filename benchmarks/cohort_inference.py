"""Streaming inference over a synthetic cohort: volumes/hour and peak RSS as the cohort grows.

Writes N small synthetic "head" volumes (a smooth ellipsoid of tissue with texture, some with a bright blob) and a
manifest CSV, then runs ``python -m monai_anomaly infer <manifest.csv>`` in a child process per cohort size and
reads that child's peak resident memory (``resource.getrusage(RUSAGE_CHILDREN)`` in a wrapper process).

    python benchmarks/cohort_inference.py --ckpt monai_anomaly_demo/models/model.pt --sizes 500 1000 \
        --out /tmp/cohort

Prints and writes ``<out>/cohort_inference.json``: per size, seconds, volumes/hour, peak RSS (MiB).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np


def make_cohort(dst: str | os.PathLike, n: int, shape: tuple[int, int, int] = (48, 48, 12), seed: int = 0) -> Path:
    """``n`` synthetic volumes ``case_NNNNN.nii.gz`` in ``dst`` and ``dst/manifest.csv`` listing them (column
    ``image``, relative paths); every 5th volume has a bright blob. Returns the manifest's path."""
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    head = ((zz / 0.85) ** 2 + (yy / 0.75) ** 2 + (xx / 1.1) ** 2) < 1.0
    rows = []
    for i in range(n):
        vol = head * (0.6 + 0.1 * np.sin(6 * zz + i) * np.cos(5 * yy)) + 0.03 * rng.standard_normal(shape)
        if i % 5 == 4:
            c = rng.uniform(-0.4, 0.4, 3)
            vol += 0.5 * (((zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2) < 0.04)
        name = f"case_{i:05d}.nii.gz"
        nib.save(nib.Nifti1Image((vol * head).astype(np.float32), np.diag([1.0, 1.0, 3.0, 1.0])), dst / name)
        rows.append({"image": name})
    manifest = dst / "manifest.csv"
    with open(manifest, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["image"])
        w.writeheader()
        w.writerows(rows)
    return manifest


_MEASURE = (
    "import resource, subprocess, sys\n"
    "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
)


def run_one(manifest: Path, ckpt: str, out: Path) -> dict[str, float]:
    """One ``infer`` over the manifest in a child process: seconds and that child's peak RSS (read by a wrapper
    process whose only child it is)."""
    cmd = [sys.executable, "-m", "monai_anomaly", "infer", str(manifest), "--ckpt", ckpt, "--output_dir", str(out)]
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _MEASURE, *cmd], check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "peak_rss_mib": int(done.stdout.split()[-1]) / 1024.0}  # KiB on Linux


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--sizes", type=int, nargs="+", default=[500, 1000])
    ap.add_argument("--out", default="/tmp/cohort")
    args = ap.parse_args(argv)
    out = Path(args.out)
    results = {"machine": f"{platform.node()} {os.cpu_count()} CPU", "date": time.strftime("%Y-%m-%d"), "runs": []}
    for n in sorted(args.sizes):
        manifest = make_cohort(out / f"cohort_{n}", n)
        r = run_one(manifest, args.ckpt, out / f"infer_{n}")
        with open(out / f"infer_{n}" / "volume_results.csv") as f:
            scored = sum(1 for _ in csv.DictReader(f))
        row = {"n_volumes": n, "scored": scored, **r, "volumes_per_hour": n / r["seconds"] * 3600}
        results["runs"].append(row)
        print(json.dumps(row))
    (out / "cohort_inference.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
