"""Per-bundle GPU check: training images/s, seconds per 155-slice 240 x 240 volume at inference, peak memory.

Each bundle's own ``train#trainer`` (its real training step: the autoencoder's, the GANs' critic and generator
steps, the diffusion models') runs on the embedded 2D sample (``monai_anomaly/sample_data``) for ``--train-iters``
iterations at the bundle's defaults; images/s is timed over the iterations after ``--warmup``. Then the bundle's
inference network and slice inferer (``inference.json``, the weights just trained) score a random
``(1, 240, 240, 155)`` volume ``--repeats`` times. Both run in fp32 and, where a CUDA device has bf16, in bf16
(``amp``: the bundles' autocast setting for training, ``torch.autocast(bfloat16)`` around inference). Peak memory is
``torch.cuda.max_memory_allocated`` on a GPU, the process's peak RSS on the CPU (which only grows: read it per
process, not per row).

Writes ``<out>/gpu_check.json`` and ``<out>/gpu_check.md``. ``--tiny`` (tiny networks, 32 px, a 64 x 64 x 16
volume, a few iterations) is the CPU fallback the tests run.

    bash benchmarks/gpu_check.sh --out /tmp/gpu_check            # on a GPU machine, < 10 min
    python benchmarks/gpu_check.py --tiny --out /tmp/gpu_tiny     # CPU smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# healthy_gan before diffusion_refined: the refiner starts from a healthy-translation GAN (its coarse_ckpt)
BUNDLES = (
    "autoencoder_anomaly",
    "healthy_gan_anomaly",
    "diffusion_refined_anomaly",
    "anoddpm_anomaly",
    "cyclegan_anomaly",
    "supervised_resnet18",
)
TINY = {  # the CPU fallback: the tests' tiny settings (tests/conftest.py TINY_BY_BUNDLE)
    "autoencoder_anomaly": {"image_size": 32, "channels": [4, 8], "strides": [2, 2], "num_res_units": 0},
    "healthy_gan_anomaly": {"image_size": 32, "channels": [8, 8, 16, 32, 64, 8], "critic_channels": [8, 16, 32]},
    "anoddpm_anomaly": {
        "image_size": 32,
        "channels": [8, 16],
        "diffusion": {"timesteps": 200, "schedule": "linear_beta", "t0": 50, "steps": 2, "seed": 0},
    },
    "diffusion_refined_anomaly": {
        "image_size": 32,
        "channels": [8, 16],
        "diffusion_options": {"timesteps": 200, "schedule": "linear_beta", "t0": 50, "steps": 2, "seed": 0},
    },
    "cyclegan_anomaly": {"image_size": 32, "channels": [8, 16], "res_blocks": 1, "disc_channels": 8, "disc_layers": 2},
    "supervised_resnet18": {"image_size": 32},
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def time_training(
    bundle: str, out: Path, device: torch.device, bf16: bool, iters: int, warmup: int, settings: dict[str, Any]
) -> dict[str, Any]:
    """Images/s of the bundle's own trainer over ``iters`` iterations (the first ``warmup`` not timed)."""
    from ignite.engine import Events
    from monai.bundle import ConfigParser

    root = REPO / "bundles" / bundle
    parser = ConfigParser()
    parser.read_meta(str(root / "configs" / "metadata.json"))
    parser.read_config(str(root / "configs" / "train.json"))
    parser.update(
        {
            "bundle_root": str(root),
            "dataset_dir": str(REPO / "monai_anomaly" / "sample_data"),
            "output_dir": str(out),
            "device": f"$torch.device('{device}')",
            "amp": bool(bf16),
            "max_epochs": 1,
            "val_interval": 1,
            "train#trainer#epoch_length": int(iters),
            "train#dataloader#num_workers": 0,
            **settings,
        }
    )
    parser.get_parsed_content("initialize")
    trainer = parser.get_parsed_content("train#trainer")
    batch = int(parser.get_parsed_content("batch_size"))
    marks: list[float] = []

    def mark(_engine: Any) -> None:
        _sync(device)
        marks.append(time.perf_counter())

    trainer.add_event_handler(Events.ITERATION_COMPLETED, mark)
    _reset_peak(device)
    parser.get_parsed_content("run")  # the bundle's own run: its late handlers attached, then trainer.run()
    timed = marks[warmup:]
    if len(timed) < 2:
        raise RuntimeError(f"{bundle}: only {len(marks)} iterations ran; raise --train-iters")
    seconds = timed[-1] - timed[0]
    return {
        "batch_size": batch,
        "image_size": int(parser.get_parsed_content("image_size")),
        "iterations_timed": len(timed) - 1,
        "train_images_per_s": (len(timed) - 1) * batch / seconds,
        "train_peak_mib": _peak_mib(device),
    }


@torch.no_grad()
def time_inference(
    bundle: str, ckpt: Path, device: torch.device, bf16: bool, shape: tuple[int, int, int], repeats: int
) -> dict[str, Any]:
    """Seconds per volume of the bundle's inference network + slice inferer on a random volume (best of repeats)."""
    from monai.bundle import ConfigParser

    root = REPO / "bundles" / bundle
    parser = ConfigParser()
    parser.read_meta(str(root / "configs" / "metadata.json"))
    parser.read_config(str(root / "configs" / "inference.json"))
    parser.update({"bundle_root": str(root), "ckpt_path": str(ckpt), "device": f"$torch.device('{device}')"})
    net = parser.get_parsed_content("network").eval()
    if ckpt.is_file():
        from monai_anomaly.utils.checkpoints import load_checkpoint

        state = load_checkpoint(ckpt, map_location=device)
        net.load_state_dict(state["model"])
    inferer = parser.get_parsed_content("inferer")
    g = torch.Generator().manual_seed(0)
    vol = torch.rand((1, 1, *shape), generator=g).to(device)
    times = []
    _reset_peak(device)
    for i in range(repeats + 1):
        _sync(device)
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            inferer(vol, net)
        _sync(device)
        if i:  # the first call warms up
            times.append(time.perf_counter() - t0)
    return {"volume_shape": list(shape), "seconds_per_volume": min(times), "infer_peak_mib": _peak_mib(device)}


def _markdown(result: dict[str, Any]) -> str:
    lines = [
        f"GPU check: {result['device_name']}, torch {result['torch']}, {result['date']}",
        "",
        "| bundle | precision | image size | batch | train images/s | train peak MiB | s / volume "
        f"{'x'.join(map(str, result['volume_shape']))} | infer peak MiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        if "error" in r:
            lines.append(f"| {r['bundle']} | {r['precision']} | | | error: {r['error']} | | | |")
            continue
        lines.append(
            f"| {r['bundle']} | {r['precision']} | {r['image_size']} | {r['batch_size']} | "
            f"{r['train_images_per_s']:.1f} | {r['train_peak_mib']:.0f} | {r['seconds_per_volume']:.3f} | "
            f"{r['infer_peak_mib']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="/tmp/monai_anomaly_gpu_check")
    ap.add_argument("--bundles", nargs="+", default=list(BUNDLES))
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--train-iters", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tiny", action="store_true", help="CPU fallback: tiny networks, 32 px, a 64x64x16 volume")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    shape = (64, 64, 16) if args.tiny else (240, 240, 155)
    iters, warmup, repeats = (4, 1, 1) if args.tiny else (args.train_iters, args.warmup, args.repeats)
    precisions = ["fp32"] + (["bf16"] if device.type == "cuda" and torch.cuda.is_bf16_supported() else [])
    result: dict[str, Any] = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
        "tiny": bool(args.tiny),
        "volume_shape": list(shape),
        "precisions": precisions,
        "rows": [],
    }
    coarse: Path | None = None
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        for bundle in [b for b in BUNDLES if b in args.bundles]:
            for precision in precisions:
                run_dir = Path(tmp) / f"{bundle}_{precision}"
                settings = dict(TINY.get(bundle, {})) if args.tiny else {}
                if bundle == "diffusion_refined_anomaly":
                    if coarse is None:
                        why = "needs the healthy_gan_anomaly run first (its model.pt is the coarse model)"
                        result["rows"].append({"bundle": bundle, "precision": precision, "error": why})
                        continue
                    settings["coarse_ckpt"] = str(coarse)
                row: dict[str, Any] = {"bundle": bundle, "precision": precision}
                t0 = time.perf_counter()
                try:
                    row.update(time_training(bundle, run_dir, device, precision == "bf16", iters, warmup, settings))
                    ckpt = run_dir / "models" / "model.pt"
                    if bundle == "healthy_gan_anomaly" and precision == "fp32" and ckpt.is_file():
                        coarse = Path(tmp) / "coarse_model.pt"
                        coarse.write_bytes(ckpt.read_bytes())
                    row.update(time_inference(bundle, ckpt, device, precision == "bf16", shape, repeats))
                except Exception as e:  # noqa: BLE001 - one bundle's failure is a row, not a lost check
                    row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
                row["wall_s"] = time.perf_counter() - t0
                result["rows"].append(row)
                print(json.dumps(row), flush=True)
    (out / "gpu_check.json").write_text(json.dumps(result, indent=2))
    (out / "gpu_check.md").write_text(_markdown(result))
    print((out / "gpu_check.md").read_text())
    return result


if __name__ == "__main__":
    res = main()
    raise SystemExit(1 if any("error" in r for r in res["rows"]) else 0)
