"""Compare anomaly-map and slice-score variants of a trained autoencoder on the VALIDATION split.

Reconstruction-error scores can be computed many ways (absolute / squared / SSIM residual; mean / max / top-k /
percentile; over the whole slice or the foreground only). Choosing among them on the test split would leak; this
script scores the labelled validation split of the same seeded, group-aware split the bundle trained with, so the
choice can be made there. It prints a table of slice AUROC per variant and writes it as JSON.

With an unannotated mixed set (Brainomaly layout or a manifest with roles), ``--aucp`` also ranks the variants by
AUCp, the AUROC of the known-healthy validation images against the mixed set, which needs no label at all.

Usage:
    python benchmarks/score_variants.py --run runs/ae --dataset ../shared/data/brain_tumor_mri_4class \
        [--image_size 64] [--out score_variants.json]
    python benchmarks/score_variants.py --bundle healthy_gan_anomaly --run runs/gan --dataset manifest.csv --aucp \
        --set allow_outside=True
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from monai.bundle import ConfigParser
from sklearn.metrics import roc_auc_score

from monai_anomaly.cli import _coerce_override
from monai_anomaly.scoring.maps import MAP_METHODS, compute_anomaly_map
from monai_anomaly.scoring.slice_scores import SLICE_SCORE_METHODS, slice_scores

BUNDLES = Path(__file__).resolve().parents[1] / "bundles"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="output_dir of a training run (holds models/model.pt)")
    ap.add_argument("--dataset", required=True, help="the dataset_dir it was trained on")
    ap.add_argument("--image_size", type=int, default=64)
    ap.add_argument("--split", default="validate", choices=["validate"], help="only the validation split")
    ap.add_argument("--out", default=None, help="JSON file for the table")
    ap.add_argument("--bundle", default="autoencoder_anomaly", help="the bundle the run was trained with")
    ap.add_argument("--aucp", action="store_true", help="also AUCp: known-healthy validation images vs the mixed set")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides the run used")
    args = ap.parse_args()

    bundle = BUNDLES / args.bundle
    parser = ConfigParser()
    parser.read_config([str(bundle / "configs" / "train.json")])
    parser.update(
        {"bundle_root": str(bundle), "dataset_dir": args.dataset, "output_dir": args.run, "image_size": args.image_size}
    )
    for kv in args.set:
        k, v = kv.split("=", 1)
        parser[k] = _coerce_override(v)
    net = parser.get_parsed_content("network")
    state = torch.load(Path(args.run) / "models" / "model.pt", map_location="cpu", weights_only=True)["model"]
    net.load_state_dict(state)
    net.eval()
    ds = parser.get_parsed_content(f"{args.split}#dataset")
    items = [ds[i] for i in range(len(ds))]
    x = torch.stack([it["image"].as_tensor() for it in items])
    fg = torch.stack([it["foreground"].as_tensor() for it in items]) > 0
    y = np.array([int(it["label"]) for it in items])
    roles = np.array([str(it.get("role", "")) for it in items])
    labelled = y >= 0  # the mixed set's labels are hidden (-1)
    has_labels = len(set(y[labelled].tolist())) == 2
    # AUCp: known-healthy (role normal, label 0) against the unannotated mixed images
    known, mixed = (roles == "normal") & (y == 0), roles == "mixed"
    if args.aucp and not (known.any() and mixed.any()):
        raise SystemExit(f"{args.dataset}: --aucp needs known-healthy validation images and a mixed set")
    if not has_labels and not args.aucp:
        raise SystemExit(f"{args.dataset}: the validation split has one class only; nothing to compare")
    with torch.no_grad():
        recon = torch.cat([net.reconstruct(x[i : i + 64]) for i in range(0, len(x), 64)])
    table, aucp = {}, {}
    for mm in MAP_METHODS:
        maps = compute_anomaly_map(x, recon, method=mm)
        for sm in SLICE_SCORE_METHODS:
            for where, mask in (("slice", None), ("foreground", fg)):
                sc = np.asarray(slice_scores(maps, method=sm, mask=mask), dtype=float)
                key = f"{mm} / {sm} / {where}"
                if has_labels:
                    table[key] = float(roc_auc_score(y[labelled], sc[labelled]))
                if args.aucp:
                    sel = known | mixed
                    aucp[key] = float(roc_auc_score(mixed[sel].astype(int), sc[sel]))
    print(f"validation split: {int(labelled.sum())} labelled ({int(y[labelled].sum())} anomalous), {int(mixed.sum())} "
          "unannotated\n")  # fmt: skip
    print("| map / slice score / pixels | val slice AUROC | AUCp |\n|---|---|---|")
    order = aucp if args.aucp else table
    for k in sorted(order, key=lambda k: -order[k]):
        a, p = table.get(k), aucp.get(k)
        print(f"| {k} | {'n/a' if a is None else f'{a:.3f}'} | {'n/a' if p is None else f'{p:.3f}'} |")
    if args.out:
        out = {"n": int(labelled.sum()), "n_anomalous": int(y[labelled].sum()), "auroc": table, "aucp": aucp}
        Path(args.out).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
