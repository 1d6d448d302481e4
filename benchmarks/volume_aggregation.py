"""Measure volume aggregations (mean, max, top-k, percentile, fraction above) on whole scans, and empty-slice effects.

Runs ``python -m monai_anomaly infer`` once per scan set with a trained model (so the real inference path is
measured: slice selection, foreground maps), then re-aggregates each scan's per-slice scores (``scores.json``:
``slice_scores`` and ``scored_slices``) with every method and reports the volume AUROC of anomalous vs healthy scans,
plus, per scan, whether the top-scoring slices hold brain (the issue that empty slices used to dominate).

Example (the BraTS model of ``run_autoencoder.py``; IXI T1 and the DICOM MPRAGE as the only healthy volumes, with
the modality caveat: they are T1, BraTS is FLAIR):
    PYTHONPATH=. python benchmarks/volume_aggregation.py --ckpt /tmp/bench/brats2018_sample/models/model.pt \
        --anomalous ../shared/data/brats2018_sample/volumes --healthy ../shared/data/ixi_t1_2mm_sample/volumes \
        ../shared/data/dicom_mr_t1_mprage --out /tmp/volagg
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from monai_anomaly.scoring.aggregation import aggregate_scores

__all__ = ["METHODS", "aggregate_all", "main"]

METHODS = {
    "mean": {},
    "max": {},
    "topk_0.05": {"k": 0.05},
    "topk_0.1": {"k": 0.1},
    "topk_0.2": {"k": 0.2},
    "percentile_90": {"q": 90.0},
}


def aggregate_all(scan: dict) -> dict[str, float]:
    """Every aggregation of one scan's scored slices (``fraction_above`` needs the slice threshold)."""
    s = np.asarray(scan["slice_scores"], dtype=float)
    kept = s[scan.get("scored_slices", list(range(len(s))))]
    out = {}
    for name, kw in METHODS.items():
        method = name.split("_")[0]
        out[name] = aggregate_scores(kept, method, **kw)
    thr = (scan.get("threshold") or {}).get("value")
    if thr is not None:
        out["fraction_above"] = aggregate_scores(kept, "fraction_above", threshold=float(thr))
    out["mean_all_slices"] = float(s.mean())  # the old default: every slice, empty ones included
    return out


def _infer(inputs: list[str], ckpt: str, out: Path) -> list[dict]:
    scans: list[dict] = []
    for i, path in enumerate(inputs):
        dst = out / f"infer_{i}"
        cmd = [sys.executable, "-m", "monai_anomaly", "infer", path, "--ckpt", ckpt, "--output_dir", str(dst)]
        cmd += ["--overwrite", "True"]
        print(" ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        scans += json.loads((dst / "scores.json").read_text())["scans"]
    return scans


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", required=True)
    p.add_argument("--anomalous", nargs="+", required=True, help="files or folders of anomalous scans")
    p.add_argument("--healthy", nargs="+", required=True, help="files or folders of healthy scans")
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    bad = _infer(a.anomalous, a.ckpt, out / "anomalous")
    good = _infer(a.healthy, a.ckpt, out / "healthy")
    rows = []
    for label, scans in ((1, bad), (0, good)):
        for sc in scans:
            agg = aggregate_all(sc)
            s = np.asarray(sc["slice_scores"])
            top = int(np.argmax(s))
            rows.append(
                {
                    "volume_id": sc["volume_id"],
                    "label": label,
                    "n_slices": len(s),
                    "n_scored": len(sc.get("scored_slices", s)),
                    "top_slice": top,
                    "top_slice_scored": top in set(sc.get("scored_slices", range(len(s)))),
                    **agg,
                }
            )
    labels = np.array([r["label"] for r in rows])
    table = {}
    for name in rows[0]:
        if name in ("volume_id", "label", "n_slices", "n_scored", "top_slice", "top_slice_scored"):
            continue
        vals = np.array([r.get(name, np.nan) for r in rows], dtype=float)
        if labels.min() != labels.max() and np.isfinite(vals).all():
            table[name] = float(roc_auc_score(labels, vals))
    result = {"volume_auroc": table, "scans": rows, "ckpt": a.ckpt}
    (out / "volume_aggregation.json").write_text(json.dumps(result, indent=2))
    print("| aggregation | volume AUROC |\n|---|---|")
    for k, v in table.items():
        print(f"| {k} | {v:.3f} |")
    print(f"scans: {len(rows)} ({int(labels.sum())} anomalous); details in {out / 'volume_aggregation.json'}")
    return result


if __name__ == "__main__":
    main()
