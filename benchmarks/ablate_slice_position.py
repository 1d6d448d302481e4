"""Slice-position normative calibration of slice scores, measured on the VALIDATION split of a volume set.

A slice's score depends on where it lies in the head: the top and bottom slices (little anatomy, partial volume, the
skull's curvature) leave more residual on every normal scan than mid-brain slices. One published remedy is to
calibrate each slice against normal slices *at the same position*: subtract the mean and divide by the std of the
normal validation scores at that position (here: Gaussian-kernel estimates over the slice's relative position among
its volume's kept slices, bandwidth ``h``; the std floored at 0.1 x the pooled std). This script trains the default
dense autoencoder (``benchmarks/ablate_autoencoder.py``, variant ``base``), scores the validation slices and reports
the slice AUROC of the plain scores and of their position-calibrated z-scores, the latter both
**leave-one-volume-out** (each volume calibrated on the other volumes' normal slices: what a new scan sees) and
in-sample (calibrated on every normal slice, its own included: optimistic).

Example:
    PYTHONPATH=. python benchmarks/ablate_slice_position.py --dataset ../shared/data/brats2018_sample \\
        --min-foreground 0.005 --epochs 100 --out /tmp/position_brats.json
    PYTHONPATH=. python benchmarks/ablate_slice_position.py --site --min-foreground 0.005 --epochs 100 \\
        --out /tmp/position_site.json   # CBICA cases train and validate (benchmarks/run_autoencoder.py's split)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score as auroc

from benchmarks.ablate_autoencoder import load_split, run_variant

__all__ = ["position_z", "main"]

SCORES = ("mse_top1_ero3", "cx_top1_ero3", "mse_top1_fg")


def position_z(
    score: np.ndarray, position: np.ndarray, fit: np.ndarray, bandwidth: float, floor: float = 0.1
) -> np.ndarray:
    """``(score - mean(position)) / std(position)``, the mean and std estimated from the ``fit`` slices with a Gaussian
    kernel over position (on a grid of 101 positions, interpolated); the std is floored at ``floor`` x the pooled std.

    Example:
        >>> pos = np.linspace(0, 1, 50); s = 1 + pos; z = position_z(s, pos, np.ones(50, bool), 0.1)
        >>> bool(np.abs(z).max() < 2)
        True
    """
    grid = np.linspace(0.0, 1.0, 101)
    w = np.exp(-((grid[:, None] - position[fit][None]) ** 2) / (2 * bandwidth**2))
    w /= w.sum(1, keepdims=True)
    mu = (w * score[fit][None]).sum(1)
    sd = np.sqrt((w * (score[fit][None] - mu[:, None]) ** 2).sum(1))
    sd = np.maximum(sd, floor * score[fit].std())
    return (score - np.interp(position, grid, mu)) / np.interp(position, grid, sd)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="", help="a volume set's folder or manifest")
    p.add_argument("--site", action="store_true", help="BraTS split by site (CBICA train/val), as run_autoencoder")
    p.add_argument("--shared", default="../shared/data")
    p.add_argument("--min-foreground", type=float, default=0.005)
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--bandwidths", type=float, nargs="+", default=[0.05, 0.1, 0.2])
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    torch.set_num_threads(2)
    dataset = a.dataset
    if a.site:
        from benchmarks.run_autoencoder import site_manifest

        side = Path(a.out).with_suffix(".files")
        side.mkdir(parents=True, exist_ok=True)
        dataset = str(site_manifest(Path(a.shared).resolve(), side))
    if not dataset:
        p.error("give --dataset or --site")
    tr = {"fixed": load_split(dataset, "train", "fixed", 64, min_foreground=a.min_foreground)}
    va = {"fixed": load_split(dataset, "val", "fixed", 64, min_foreground=a.min_foreground)}
    v = va["fixed"]
    t0 = time.perf_counter()
    r = run_variant("base", tr, va, a.epochs, 64, keep_scores=True)
    sc, lab, pos, groups = r["scores"], r["labels"], v["position"], np.asarray(v["group"])
    res: dict = {"dataset": dataset, "min_foreground": a.min_foreground, "epochs": a.epochs}
    res.update(train_s=round(time.perf_counter() - t0, 1), n_val=int(lab.size), n_abnormal=int(lab.sum()))
    res["n_volumes"] = len(set(groups))
    for key in SCORES:
        s = sc[key]
        res[key] = round(float(auroc(lab, s)), 4)
        for h in a.bandwidths:
            z = np.zeros_like(s)
            for g in sorted(set(groups)):  # leave one volume out
                fold = groups == g
                z[fold] = position_z(s, pos, (~fold) & (lab == 0), h)[fold]
            res[f"{key}_position_z_lovo_h{h}"] = round(float(auroc(lab, z)), 4)
            res[f"{key}_position_z_insample_h{h}"] = round(float(auroc(lab, position_z(s, pos, lab == 0, h))), 4)
    print(json.dumps(res, indent=1))
    Path(a.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
