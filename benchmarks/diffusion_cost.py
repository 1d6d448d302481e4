"""AUROC against cost for a trained diffusion model: noise level t0, DDIM steps, single-step estimate.

Loads a trained ``anoddpm_anomaly`` or ``diffusion_refined_anomaly`` model (``<run>/models/model.pt``), rebuilds its
network from the settings stored in it, and for each ``(t0, steps)`` in the grid:

- scores the labelled **validation** split of the same seeded, group-aware split the bundle trained on (never the
  test split: the defaults are picked from this table), with the model's own map, slice score and foreground rule;
- times :class:`~monai_anomaly.inferers.slice.AnomalySliceInferer` on one 240 x 240 x 155 volume (resize in and
  out, all 155 slices; the noise, the network and the DDIM loop included), the median of ``--repeats``.

``steps = 0`` is the single-step estimate of ``x0`` from ``x_t0`` (one network pass per slice).

Example:
    PYTHONPATH=. python benchmarks/diffusion_cost.py --run /tmp/bench/brats_ddpm \
        --dataset ../shared/data/brats2018_sample --grid 100:0 100:5 250:0 250:5 250:10 500:10 --out cost.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from monai.bundle import ConfigParser
from sklearn.metrics import average_precision_score, roc_auc_score

from monai_anomaly.inferers.slice import AnomalySliceInferer
from monai_anomaly.scoring.maps import compute_anomaly_map
from monai_anomaly.scoring.slice_scores import slice_scores
from monai_anomaly.utils.settings import load_model_settings

REPO = Path(__file__).resolve().parents[1]
_CONFIG_IDS = ("image_size", "intensity_range", "model_type", "channels", "num_res_units", "diffusion", "map_method",
               "score_method", "score_region", "min_foreground", "slice_axis")  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="output_dir of a training run (holds models/model.pt)")
    ap.add_argument("--dataset", required=True, help="the dataset_dir it was trained on")
    ap.add_argument("--bundle", default=None, help="default: from the model's model_type")
    ap.add_argument("--grid", nargs="+", default=["250:0", "250:5"], metavar="T0:STEPS")
    ap.add_argument("--repeats", type=int, default=3, help="timed volume passes per setting (median)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None, help="JSON file for the table")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    ckpt = Path(args.run) / "models" / "model.pt"
    settings = load_model_settings(ckpt)
    mt = settings.get("model_type")
    if mt not in ("anoddpm", "gan_refined"):
        raise SystemExit(f"{ckpt}: model_type {mt!r} is not a diffusion model")
    bundle = REPO / "bundles" / (args.bundle or ("anoddpm_anomaly" if mt == "anoddpm" else "diffusion_refined_anomaly"))
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "train.json"))
    parser.update({"bundle_root": str(bundle), "dataset_dir": args.dataset, "output_dir": args.run,
                   "intensity_mode": settings.get("intensity_mode", "auto"),
                   **{k: settings[k] for k in _CONFIG_IDS if k in settings}})  # fmt: skip
    if "coarse_ckpt" in parser.config:
        parser["coarse_ckpt"] = None  # stage 1 comes with everything else from model.pt
    net = parser.get_parsed_content("network_def")
    net.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True)["model"])
    net.eval()
    model = net.model
    ds = parser.get_parsed_content("validate#dataset")
    items = [ds[i] for i in range(len(ds))]
    items = [it for it in items if int(it["label"]) in (0, 1)]
    x = torch.stack([it["image"].as_tensor() for it in items])
    fg = torch.stack([it["foreground"].as_tensor() for it in items]) > 0
    y = np.array([int(it["label"]) for it in items])
    if len(set(y.tolist())) < 2:
        raise SystemExit(f"{args.dataset}: the validation split has one class only")
    mask = fg if settings.get("score_region", "image") == "foreground" else None
    size = int(settings.get("image_size", 64))
    volume = torch.rand(1, 1, 240, 240, 155) * 2 - 1
    inferer = AnomalySliceInferer(size, spatial_dim=2, sw_batch_size=32)
    rows = []
    for spec in args.grid:
        t0, steps = (int(v) for v in spec.split(":"))
        model.t0, model.steps = t0, steps
        with torch.no_grad():
            recon = torch.cat([model(x[i : i + 32]) for i in range(0, len(x), 32)])
        maps = compute_anomaly_map(x, recon, method=settings.get("map_method", "squared")) * fg
        s = slice_scores(maps, method=settings.get("score_method", "mean"), mask=mask)
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            with torch.no_grad():
                inferer(volume, net)
            times.append(time.perf_counter() - t)
        row = {"t0": t0, "steps": steps, "network_passes_per_slice": max(1, steps),
               "val_auroc": round(float(roc_auc_score(y, s)), 4),
               "val_auprc": round(float(average_precision_score(y, s)), 4),
               "s_per_volume_240x240x155": round(statistics.median(times), 2)}  # fmt: skip
        rows.append(row)
        print(json.dumps(row), flush=True)
    res = {"run": str(args.run), "model_type": mt, "n_val": int(len(y)), "n_val_anomalous": int(y.sum()),
           "threads": args.threads, "device": "cpu", "rows": rows}  # fmt: skip
    print(f"\nvalidation split: {len(y)} slices ({int(y.sum())} anomalous)\n")
    print("| t0 | DDIM steps (0: single step) | val slice AUROC | val AUPRC | s per 240x240x155 volume (CPU) |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['t0']} | {r['steps']} | {r['val_auroc']:.3f} | {r['val_auprc']:.3f} | "
              f"{r['s_per_volume_240x240x155']:.1f} |")  # fmt: skip
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
