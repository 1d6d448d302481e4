"""Throughput and memory of the ``autoencoder_anomaly`` bundle's network; pixel-level metrics on BraTS test volumes.

Measures, on the current device (CPU unless CUDA is available and ``--device`` says otherwise):

1. training step throughput (forward + L1 loss + backward + AdamW step) on batches of random ``(1, S, S)`` slices;
2. inference throughput of the anomaly-map network on batches of slices;
3. whole-volume inference with :class:`~monai_anomaly.inferers.slice.AnomalySliceInferer` on real BraTS FLAIR volumes
   (load + normalise excluded, network + resize in and out included): seconds per volume and slices/s;
4. optionally the end-to-end ``python -m monai_anomaly infer`` command on those volumes (load, normalise, infer,
   write the NIfTI maps and CSVs), its wall time and peak RSS;
5. with a trained checkpoint: pixel AUROC / AUPRC / best Dice of the maps against the whole-tumour masks
   (``monai_anomaly.metrics.pixel.pixel_metrics``, inside the brain).

The network and the transforms come from the bundle's own configs, so the numbers describe what the bundle runs.

Example:
    PYTHONPATH=. python benchmarks/throughput.py --ckpt /tmp/ae_bench/brats2018_sample/models/model.pt \
        --out /tmp/ae_throughput --cli-infer
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

__all__ = ["bundle_parts", "time_training", "time_network", "time_volumes", "main"]

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundles" / "autoencoder_anomaly" / "configs"


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def bundle_parts(image_size: int, device: str) -> dict[str, Any]:
    """The bundle's inference network, inferer, training loss and train-time preprocessing (image + mask)."""
    from monai.bundle import ConfigParser

    inf = ConfigParser()
    inf.read_config(str(BUNDLE / "inference.json"))
    inf.update({"image_size": image_size, "device": f"$torch.device('{device}')"})
    tr = ConfigParser()
    tr.read_config(str(BUNDLE / "train.json"))
    tr.update({"image_size": image_size, "device": f"$torch.device('{device}')"})
    return {
        "network": inf.get_parsed_content("network"),
        "inferer": inf.get_parsed_content("inferer"),
        "loss": tr.get_parsed_content("loss"),
        "lr": tr.get_parsed_content("learning_rate"),
        "preprocessing": tr.get_parsed_content("preprocessing"),
    }


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_training(parts: dict, image_size: int, batch_size: int, steps: int, device: str) -> dict[str, float]:
    """Slices per second of full training steps on random data (after 3 warm-up steps)."""
    model = parts["network"].model
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=parts["lr"], weight_decay=1e-5)
    x = torch.rand(batch_size, 1, image_size, image_size, device=device)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = parts["loss"](model(x), x)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    dt = time.perf_counter() - t0
    return {"batch_size": batch_size, "steps": steps, "seconds": dt, "slices_per_s": steps * batch_size / dt}


@torch.no_grad()
def time_network(parts: dict, image_size: int, batch_size: int, steps: int, device: str) -> dict[str, float]:
    """Slices per second of the anomaly-map network (reconstruction + map) in eval mode."""
    net = parts["network"].eval()
    x = torch.rand(batch_size, 1, image_size, image_size, device=device)
    for _ in range(3):
        net(x)
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        net(x)
    _sync(device)
    dt = time.perf_counter() - t0
    return {"batch_size": batch_size, "steps": steps, "seconds": dt, "slices_per_s": steps * batch_size / dt}


@torch.no_grad()
def time_volumes(parts: dict, volumes: list[dict], device: str, repeats: int, with_pixel: bool) -> dict[str, Any]:
    """Per-volume time of AnomalySliceInferer + network (data already loaded), and pixel metrics against masks."""
    from monai_anomaly.metrics.pixel import pixel_metrics

    net = parts["network"].eval()
    inferer = parts["inferer"]
    per_volume, pixel, maps_all, masks_all, fg_all = [], [], [], [], []
    for item in volumes:
        d = parts["preprocessing"]({"image": item["image"], "mask": item["mask"]})
        img = d["image"].as_tensor().unsqueeze(0).to(device)  # (1, 1, H, W, D)
        inferer(img, net)  # warm-up
        _sync(device)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            amap = inferer(img, net)
            _sync(device)
            times.append(time.perf_counter() - t0)
        n_slices = int(img.shape[-1])
        best = min(times)
        row: dict[str, Any] = {
            "volume_id": item["volume_id"],
            "shape": list(img.shape[2:]),
            "seconds_min": best,
            "seconds_median": sorted(times)[len(times) // 2],
            "slices_per_s": n_slices / best,
        }
        if with_pixel:
            amap = amap.detach().cpu().numpy()[0, 0]
            mask = d["mask"].detach().cpu().numpy()[0] if hasattr(d["mask"], "detach") else d["mask"][0]
            fg = d["foreground"].detach().cpu().numpy()[0] if hasattr(d["foreground"], "detach") else d["foreground"][0]
            row["pixel"] = pixel_metrics(amap, mask, foreground=fg)
            maps_all.append(amap.reshape(-1))
            masks_all.append(mask.reshape(-1))
            fg_all.append(fg.reshape(-1))
        per_volume.append(row)
        print(f"  {item['volume_id']}: {best:.2f} s/volume, {n_slices / best:.1f} slices/s", flush=True)
    out: dict[str, Any] = {"volumes": per_volume}
    out["seconds_per_volume_mean"] = sum(r["seconds_min"] for r in per_volume) / len(per_volume)
    out["slices_per_s_mean"] = sum(r["slices_per_s"] for r in per_volume) / len(per_volume)
    if with_pixel and maps_all:
        import numpy as np

        pixel = pixel_metrics(np.concatenate(maps_all), np.concatenate(masks_all), foreground=np.concatenate(fg_all))
        out["pixel_pooled"] = pixel
    return out


def _brats_volumes(shared: Path, ids: list[str] | None, n: int) -> list[dict]:
    ds = shared / "brats2018_sample"
    rows = list(csv.DictReader(open(ds / "labels.csv")))
    if ids:
        rows = [r for r in rows if r["case_id"] in ids]
    rows = rows[:n] if not ids else rows
    return [{"volume_id": r["case_id"], "image": str(ds / r["image"]), "mask": str(ds / r["mask"])} for r in rows]


def _cli_infer(volumes: list[dict], ckpt: Path, out: Path, image_size: int) -> dict[str, Any]:
    sys.path.insert(0, str(REPO / "benchmarks"))
    from run_autoencoder import run_stage

    src = Path(tempfile.mkdtemp(prefix="brats_infer_in_"))
    for v in volumes:
        os.symlink(v["image"], src / Path(v["image"]).name)
    args = ["infer", str(src), "--output_dir", str(out / "cli_infer"), "--ckpt", str(ckpt), "--overwrite", "True"]
    args += ["--image_size", str(image_size)]
    print("python -m monai_anomaly " + " ".join(args), flush=True)
    res = run_stage(args, out / "cli_infer.log")
    res["command"] = "python -m monai_anomaly " + " ".join(args)
    res["n_volumes"] = len(volumes)
    res["seconds_per_volume_incl_startup"] = res.get("wall_s", float("nan")) / len(volumes)
    return res


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shared-data", default="../shared/data")
    p.add_argument("--out", default="/tmp/monai_anomaly_bench/throughput")
    p.add_argument("--ckpt", default=None, help="trained models/model.pt (BraTS run); without it: random weights")
    p.add_argument("--device", default="cpu")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--train-steps", type=int, default=20)
    p.add_argument("--infer-steps", type=int, default=20)
    p.add_argument("--volumes", nargs="*", default=None, help="BraTS case ids (default: the first --n-volumes)")
    p.add_argument("--n-volumes", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--cli-infer", action="store_true", help="also time `python -m monai_anomaly infer` on the volumes")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    out = Path(a.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    shared = Path(a.shared_data).resolve()
    parts = bundle_parts(a.image_size, a.device)
    res: dict[str, Any] = {
        "device": a.device,
        "cpu": next(
            (ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "unknown"
        )
        if os.path.exists("/proc/cpuinfo")
        else "unknown",
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
        "image_size": a.image_size,
        "n_parameters": sum(p.numel() for p in parts["network"].parameters()),
    }
    if a.ckpt:
        state = torch.load(a.ckpt, map_location=a.device, weights_only=True)
        parts["network"].load_state_dict(state["model"] if "model" in state else state)
        res["ckpt"] = str(a.ckpt)
    print("training steps ...", flush=True)
    res["train"] = time_training(parts, a.image_size, a.batch_size, a.train_steps, a.device)
    if a.ckpt:  # time_training changed the weights: reload them
        parts["network"].load_state_dict(state["model"] if "model" in state else state)
    print("inference network ...", flush=True)
    res["infer_network"] = time_network(parts, a.image_size, a.batch_size, a.infer_steps, a.device)
    vols = _brats_volumes(shared, a.volumes, a.n_volumes)
    print(f"volumes ({len(vols)}) ...", flush=True)
    res["infer_volume"] = time_volumes(parts, vols, a.device, a.repeats, with_pixel=bool(a.ckpt))
    res["max_rss_mb_this_process"] = _rss_mb()
    if a.cli_infer and a.ckpt:
        res["cli_infer"] = _cli_infer(vols, Path(a.ckpt).resolve(), out, a.image_size)
    (out / "throughput.json").write_text(json.dumps(res, indent=2, default=str))
    iv = res["infer_volume"]
    lines = [
        "| measure | value |",
        "|---|---|",
        f"| device | {a.device} ({res['cpu']}, {res['cpu_count']} cores, torch threads {res['torch_threads']}) |",
        f"| parameters | {res['n_parameters']:,} |",
        f"| training, batch {a.batch_size} x 1 x {a.image_size}^2 | {res['train']['slices_per_s']:.1f} slices/s |",
        f"| inference network, batch {a.batch_size} | {res['infer_network']['slices_per_s']:.1f} slices/s |",
        f"| AnomalySliceInferer, 240x240x155 volume | {iv['seconds_per_volume_mean']:.2f} s/volume "
        f"({iv['slices_per_s_mean']:.1f} slices/s) |",
        f"| peak RSS (this process) | {res['max_rss_mb_this_process']:.0f} MB |",
    ]
    if "cli_infer" in res:
        c = res["cli_infer"]
        lines.append(
            f"| `monai_anomaly infer`, {c['n_volumes']} volumes end to end | {c.get('wall_s', float('nan')):.1f} s "
            f"({c['seconds_per_volume_incl_startup']:.1f} s/volume incl. start-up), peak RSS "
            f"{c.get('vm_hwm_mb') or c.get('max_rss_mb', float('nan')):.0f} MB |"
        )
    if "pixel_pooled" in iv:
        px = iv["pixel_pooled"]
        lines.append(
            f"| pixel AUROC / AUPRC / best Dice ({len(iv['volumes'])} volumes pooled, in brain) | "
            f"{px['pixel_auroc']:.3f} / {px['pixel_auprc']:.3f} / {px['best_dice']:.3f} |"
        )
    print("\n".join(lines))
    print(f"results: {out / 'throughput.json'}")
    return res


if __name__ == "__main__":
    main()
