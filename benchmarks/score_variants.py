"""Compare anomaly-map and slice-score variants of a trained autoencoder on the VALIDATION split.

Reconstruction-error scores can be computed many ways (absolute / squared / SSIM residual; mean / max / top-k /
percentile; over the whole slice or the foreground only). Choosing among them on the test split would leak; this
script scores the labelled validation split of the same seeded, group-aware split the bundle trained with, so the
choice can be made there. It prints a table of slice AUROC per variant and writes it as JSON.

Usage:
    python benchmarks/score_variants.py --run runs/ae --dataset ../shared/data/brain_tumor_mri_4class \
        [--image_size 64] [--out score_variants.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from monai.bundle import ConfigParser
from sklearn.metrics import roc_auc_score

from monai_anomaly.scoring.maps import MAP_METHODS, compute_anomaly_map
from monai_anomaly.scoring.slice_scores import SLICE_SCORE_METHODS, slice_scores

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "autoencoder_anomaly"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="output_dir of a training run (holds models/model.pt)")
    ap.add_argument("--dataset", required=True, help="the dataset_dir it was trained on")
    ap.add_argument("--image_size", type=int, default=64)
    ap.add_argument("--split", default="validate", choices=["validate"], help="only the validation split")
    ap.add_argument("--out", default=None, help="JSON file for the table")
    args = ap.parse_args()

    parser = ConfigParser()
    parser.read_config([str(BUNDLE / "configs" / "train.json")])
    parser.update(
        {"bundle_root": str(BUNDLE), "dataset_dir": args.dataset, "output_dir": args.run, "image_size": args.image_size}
    )
    net = parser.get_parsed_content("network")
    state = torch.load(Path(args.run) / "models" / "model.pt", map_location="cpu", weights_only=True)["model"]
    net.load_state_dict(state)
    net.eval()
    ds = parser.get_parsed_content(f"{args.split}#dataset")
    items = [ds[i] for i in range(len(ds))]
    x = torch.stack([it["image"].as_tensor() for it in items])
    fg = torch.stack([it["foreground"].as_tensor() for it in items]) > 0
    y = np.array([int(it["label"]) for it in items])
    if len(set(y.tolist())) < 2:
        raise SystemExit(f"{args.dataset}: the validation split has one class only; nothing to compare")
    with torch.no_grad():
        recon = torch.cat([net.reconstruct(x[i : i + 64]) for i in range(0, len(x), 64)])
    table = {}
    for mm in MAP_METHODS:
        maps = compute_anomaly_map(x, recon, method=mm)
        for sm in SLICE_SCORE_METHODS:
            for where, mask in (("slice", None), ("foreground", fg)):
                table[f"{mm} / {sm} / {where}"] = float(roc_auc_score(y, slice_scores(maps, method=sm, mask=mask)))
    print(f"validation split: {len(y)} slices ({int(y.sum())} anomalous)\n")
    print("| map / slice score / pixels | val slice AUROC |\n|---|---|")
    for k, v in sorted(table.items(), key=lambda kv: -kv[1]):
        print(f"| {k} | {v:.3f} |")
    if args.out:
        Path(args.out).write_text(json.dumps({"n": len(y), "n_anomalous": int(y.sum()), "auroc": table}, indent=2))


if __name__ == "__main__":
    main()
