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

__all__ = ["METHODS", "aggregate_all", "small_lesion_curve", "tumour_slices", "main"]

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


def tumour_slices(mask_path: str, axis: int = 2) -> np.ndarray:
    """Per axial slice (RAS, as inference indexes them): does the lesion mask touch it."""
    from monai_anomaly.transforms.io import LoadScan

    m = np.asarray(LoadScan(allow_constant=True)(mask_path))[0] > 0
    return m.any(axis=tuple(i for i in range(3) if i != axis))


def small_lesion_curve(scans: list[dict], masks: dict[str, str], ks=(1, 2, 3, 5, 10, 20), seed: int = 0) -> dict:
    """Same modality, same subjects: how well each aggregation tells a volume with only ``k`` lesion slices from the
    same volume without any (its lesion-free scored slices), averaged over random picks of the ``k`` slices.

    A volume-level AUROC over (lesion-free stack, stack + k lesion slices) pairs of every scan: the mean dilutes a
    small lesion in many healthy slices, the max is noisy; this measures that trade-off without the modality shift
    of the only healthy volumes available (IXI / DICOM T1 vs BraTS FLAIR).
    """
    rng = np.random.default_rng(seed)
    out: dict = {}
    for k in ks:
        per_method: dict[str, list[float]] = {}
        for _ in range(20):
            labels, values = [], {}
            for sc in scans:
                vid = sc["volume_id"].removesuffix("_flair")
                if vid not in masks:
                    continue
                s = np.asarray(sc["slice_scores"], dtype=float)
                scored = np.zeros(len(s), dtype=bool)
                scored[sc["scored_slices"]] = True
                lesion = tumour_slices(masks[vid])[: len(s)]
                healthy, sick = s[scored & ~lesion], s[scored & lesion]
                if len(sick) < k or len(healthy) == 0:
                    continue
                with_lesion = np.concatenate([healthy, rng.choice(sick, size=k, replace=False)])
                for lab, stack in ((0, healthy), (1, with_lesion)):
                    labels.append(lab)
                    for name, kw in METHODS.items():
                        values.setdefault(name, []).append(aggregate_scores(stack, name.split("_")[0], **kw))
            if len(set(labels)) == 2:
                for name, v in values.items():
                    per_method.setdefault(name, []).append(float(roc_auc_score(labels, v)))
        out[str(k)] = {name: float(np.mean(v)) for name, v in per_method.items()}
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
    p.add_argument("--masks", default="", help="lesion masks folder (<case>_wt.nii.gz) for the small-lesion curve")
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
    if a.masks:
        masks = {f.name.removesuffix("_wt.nii.gz"): str(f) for f in Path(a.masks).glob("*_wt.nii.gz")}
        curve = small_lesion_curve(bad, masks)
        result["small_lesion_auroc"] = curve
        print("\nlesion slices k | " + " | ".join(METHODS) + "\n|---" * (len(METHODS) + 1) + "|")
        for k, row in curve.items():
            print(f"| {k} | " + " | ".join(f"{row.get(m, float('nan')):.3f}" for m in METHODS) + " |")
    (out / "volume_aggregation.json").write_text(json.dumps(result, indent=2))
    print("| aggregation | volume AUROC |\n|---|---|")
    for k, v in table.items():
        print(f"| {k} | {v:.3f} |")
    print(f"scans: {len(rows)} ({int(labels.sum())} anomalous); details in {out / 'volume_aggregation.json'}")
    return result


if __name__ == "__main__":
    main()
