"""Write a Brainomaly-style manifest (known-healthy + unannotated mixed set) from a normal/abnormal data set.

Brainomaly (WACV 2024) trains on a known-healthy set plus an unannotated mixed set whose labels are never used,
and picks its checkpoint by AUCp. This script builds that setting from a shared set with a train/test column
(`orig_split`, e.g. `alzheimer_mri_4class`): the test split is kept as the test set (role `eval`); without a test
split in `orig_split`, a random `--test` share of the files is held out as the test set (`alzheimer_mri_4class` has
no subject ids, so slices of one subject can fall on both sides). Of the training split's normals, a fraction
`--known` is the known-healthy set (role `normal`, a further `--val` of it held out as validation normals); the rest
of the normals and every training anomaly form the mixed set (role `mixed`, their true labels kept only for
evaluation). Paths are absolute, so train with `--allow_outside True`.

Example:
    python benchmarks/make_brainomaly_manifest.py ../shared/data/alzheimer_mri_4class /tmp/alz_brainomaly.csv
"""

from __future__ import annotations

import argparse
import csv
import random
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dataset", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--known", type=float, default=0.5, help="share of training normals that are known healthy")
    p.add_argument("--val", type=float, default=0.15, help="share of the known-healthy set held out for validation")
    p.add_argument("--test", type=float, default=0.3, help="share held out as test when orig_split has no test")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    rows = list(csv.DictReader(open(a.dataset / "labels.csv", newline="")))
    rng = random.Random(a.seed)
    if not any(r.get("orig_split") == "test" for r in rows):  # e.g. alzheimer_mri_4class: train split only
        order = list(range(len(rows)))
        rng.shuffle(order)
        test = set(order[: int(round(a.test * len(rows)))])
        rows = [{**r, "orig_split": "test" if i in test else "train"} for i, r in enumerate(rows)]
    train_normal = [r for r in rows if r["orig_split"] == "train" and r["label"] == "0"]
    rng.shuffle(train_normal)
    n_known = int(round(a.known * len(train_normal)))
    known, mixed_normal = train_normal[:n_known], train_normal[n_known:]
    n_val = int(round(a.val * len(known)))
    out = []
    for i, r in enumerate(known):
        out.append((r, "normal", "val" if i < n_val else "train"))
    out += [(r, "mixed", "train") for r in mixed_normal]
    out += [(r, "mixed", "train") for r in rows if r["orig_split"] == "train" and r["label"] == "1"]
    out += [(r, "eval", "test") for r in rows if r["orig_split"] == "test"]
    a.out.parent.mkdir(parents=True, exist_ok=True)
    with open(a.out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "role", "split", "cls"])
        for r, role, split in out:
            w.writerow([str((a.dataset / r["path"]).resolve()), r["label"], role, split, r["cls"]])
    n_mixed = sum(1 for _, role, _ in out if role == "mixed")
    n_mixed_normal = len(mixed_normal)
    print(
        f"wrote {a.out}: known healthy {len(known) - n_val} train + {n_val} val; mixed {n_mixed} "
        f"({n_mixed_normal / max(n_mixed, 1):.2f} normal); test {sum(1 for _, role, _ in out if role == 'eval')}"
    )


if __name__ == "__main__":
    main()
