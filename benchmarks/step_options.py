"""The default autoencoder's training step under what PyTorch offers: attained FLOP/s and whether results change.

One fixed batch of real training slices (the bundle's own dataset of ``DATASET``) and the bundle's network, loss and
optimiser; each option runs ``--steps`` steps from the same weights and reports images/s, attained GFLOP/s (FLOPs of
one step counted with ``torch.utils.flop_counter.FlopCounterMode``) and the largest weight difference from the
baseline after those steps (0: bit for bit the same training). Options: ``channels_last`` memory format, Adam's
``foreach=False`` / ``fused=True`` implementations, ``bf16`` autocast (CPUs with AVX-512 BF16 / AMX) and
``torch.compile`` of the network.

    python benchmarks/step_options.py ../shared/data/brain_tumor_mri_4class --out /tmp/w/step_options.json

Compare the GFLOP/s with the CPU's fp32 ceiling from the peers harness (``../shared/peers/time_matmul.py``).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _parts(dataset: str) -> dict[str, Any]:
    from monai.bundle import ConfigParser

    root = REPO / "bundles" / "autoencoder_anomaly"
    p = ConfigParser()
    p.read_meta(str(root / "configs" / "metadata.json"))
    p.read_config(str(root / "configs" / "train.json"))
    p.update({"bundle_root": str(root), "dataset_dir": dataset, "output_dir": tempfile.mkdtemp(), "device": "cpu"})
    batch = next(iter(p.get_parsed_content("train#dataloader")))
    return {
        "model": p.get_parsed_content("network").model,
        "loss": p.get_parsed_content("loss"),
        "lr": float(p.get_parsed_content("learning_rate")),
        "x": batch["image"].as_tensor() if hasattr(batch["image"], "as_tensor") else batch["image"],
    }


def _run(parts: dict[str, Any], option: str, steps: int) -> dict[str, Any]:
    model = copy.deepcopy(parts["model"]).train()
    x = parts["x"].clone()
    kw: dict[str, Any] = {}
    if option == "adam_fused":
        kw["fused"] = True
    if option == "adam_for_loop":
        kw["foreach"] = False
    if option == "channels_last":
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    net = torch.compile(model) if option == "compile" else model
    opt = torch.optim.Adam(model.parameters(), lr=parts["lr"], **kw)

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=option == "bf16"):
            out = net(x)
        loss = parts["loss"](out.float() if isinstance(out, torch.Tensor) else out, x)
        loss.backward()
        opt.step()
        return float(loss)

    t0 = time.perf_counter()
    step()  # warm-up (and compilation)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    losses = [step() for _ in range(steps)]
    seconds = time.perf_counter() - t0
    return {"option": option, "first_step_s": first, "images_per_s": steps * x.shape[0] / seconds,
            "step_s": seconds / steps, "last_loss": losses[-1],
            "weights": {k: v.detach().float().clone() for k, v in model.state_dict().items()}}  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset")
    ap.add_argument("--steps", type=int, default=10)
    options = ["baseline", "channels_last", "adam_for_loop", "adam_fused", "bf16", "compile"]
    ap.add_argument("--options", nargs="+", default=options)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    parts = _parts(args.dataset)
    model, x = copy.deepcopy(parts["model"]).train(), parts["x"]
    with FlopCounterMode(display=False) as counter:
        parts["loss"](model(x), x).backward()
    flops = counter.get_total_flops()  # forward + backward of one batch (the optimiser's few FLOPs not counted)
    rows, base = [], None
    for option in args.options:
        try:
            r = _run(parts, option, args.steps)
        except Exception as e:  # noqa: BLE001 - an option this machine lacks is a row, not a lost run
            rows.append({"option": option, "error": f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"})
            continue
        w = r.pop("weights")
        if base is None:
            base = w
        r["max_weight_diff_vs_baseline"] = max(float((w[k] - base[k]).abs().max()) for k in base)
        r["attained_gflops"] = flops * r["images_per_s"] / x.shape[0] / 1e9
        rows.append(r)
        print(json.dumps(r), flush=True)
    res = {
        "dataset": args.dataset,
        "batch": list(x.shape),
        "gflop_per_step": flops / 1e9,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
        "rows": rows,
    }
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
