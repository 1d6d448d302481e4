"""Build the small embedded demo sample from ../shared/data/brain_tumor_mri_4class (CC0-1.0).

Picks whole ``dhash_group`` groups (so near-duplicates stay together) until it has about ``--normals`` notumor and
``--tumours`` tumour images (a third per tumour class), converts each to one grey channel, resizes to 128 x 128 and
writes PNGs plus ``labels.csv`` (with the group column, so splits stay group-aware) and ``ATTRIBUTION.md``.

Usage:
    python tools/make_demo_sample.py --src ../shared/data/brain_tumor_mri_4class --dst monai_anomaly/sample_data
"""

from __future__ import annotations

import argparse
import csv
import random
from collections import defaultdict
from pathlib import Path

from PIL import Image

ATTRIBUTION = """# Demo sample: brain MRI with and without tumour

{n_normal} normal (`notumor`) and {n_tumour} tumour (glioma, meningioma, pituitary) axial brain MRI slices, converted to
one grey channel and resized to 128 x 128 PNG by `tools/make_demo_sample.py`. Whole `dhash_group` near-duplicate
groups were taken (seed 0), and `labels.csv` keeps the group column so that splits stay group-aware.

- Source: "Brain Tumor MRI Dataset", Masoud Nickparvar, Kaggle
  (kaggle.com/datasets/masoudnickparvar/brain-tumor-mri-dataset), as copied in GitHub KomalChaudhari8/BRAIN_TUMOR_APP
  @ 1fac2c3 (resized to 224 x 224 there).
- License: CC0-1.0 as listed on Kaggle; its figshare part (Cheng et al., tumour images) is CC BY 4.0: cite
  J. Cheng et al., "Enhanced Performance of Brain Tumor Classification via Tumor Region Augmentation and
  Partition", PLoS ONE 10(10), 2015.
- Caveat: normals (Br35H) and tumours (figshare, T1-CE) come from different sources, so a model can separate them by
  acquisition rather than by tumour. This sample is for demonstrating the pipeline, not for benchmarking.
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src", type=Path, default=Path("../shared/data/brain_tumor_mri_4class"))
    p.add_argument("--dst", type=Path, default=Path("monai_anomaly/sample_data"))
    p.add_argument("--normals", type=int, default=200)
    p.add_argument("--tumours", type=int, default=100)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    with open(args.src / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    rng = random.Random(args.seed)
    targets = {"notumor": args.normals}
    tumour_classes = sorted({r["cls"] for r in rows} - {"notumor"})
    for i, c in enumerate(tumour_classes):
        targets[c] = args.tumours // len(tumour_classes) + (1 if i < args.tumours % len(tumour_classes) else 0)

    chosen = []
    for cls, target in targets.items():
        groups = defaultdict(list)
        for r in rows:
            if r["cls"] == cls:
                groups[r["dhash_group"]].append(r)
        keys = sorted(groups)
        rng.shuffle(keys)
        picked = []
        for k in keys:
            if len(picked) >= target:
                break
            if len(picked) + len(groups[k]) <= target:
                picked.extend(groups[k])
        chosen.extend(picked)

    out_rows = []
    for r in chosen:
        label = int(r["label"])
        sub = Path("normal") if label == 0 else Path("abnormal") / r["cls"]
        out = args.dst / sub / (Path(r["path"]).stem + ".png")
        out.parent.mkdir(parents=True, exist_ok=True)
        img = Image.open(args.src / r["path"]).convert("L").resize((args.size, args.size), Image.BILINEAR)
        img.save(out, optimize=True)
        out_rows.append(
            {
                "path": str(sub / out.name),
                "label": label,
                "cls": r["cls"],
                "dhash_group": r["dhash_group"],
                "source_path": r["source_path"],
            }
        )
    with open(args.dst / "labels.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(out_rows[0]))
        w.writeheader()
        w.writerows(out_rows)
    n_normal = sum(r["label"] == 0 for r in out_rows)
    (args.dst / "ATTRIBUTION.md").write_text(ATTRIBUTION.format(n_normal=n_normal, n_tumour=len(out_rows) - n_normal))
    print(f"wrote {len(out_rows)} images ({n_normal} normal) to {args.dst}")


if __name__ == "__main__":
    main()
