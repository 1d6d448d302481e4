"""Time the diffusion bundles' denoiser with the peer harness's protocol (``../shared/peers/time_anoddpm.py``).

One denoiser pass at batch 16 under ``no_grad`` (2 warm-ups, then the median of ``--iters``), reported as images
per second per step and extrapolated to a chain of ``--chain`` steps (AnoDDPM's default: 250), plus one DDPM
training step at ``--train-batch``. The network is the bundles' default ``DiffusionModelUNet`` (channels 32-64-64,
attention at the deepest level), not AnoDDPM's 100M+-parameter UNet: the ratio compares what each project runs by
default at the same image size and chain length.

Example (right after the peer script, nothing else running):
    PYTHONPATH=. python benchmarks/time_diffusion.py --size 256 --train-batch 1
    PYTHONPATH=. python benchmarks/time_diffusion.py --size 128 --train-batch 4
    PYTHONPATH=. python benchmarks/time_diffusion.py --size 256 --train-batch 1 --noise simplex
"""

from __future__ import annotations

import argparse
import json

import torch
from _timing import median_seconds

from monai_anomaly.networks.diffusion import DDPMObjective, DiffusionReconstruction, diffusion_unet


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--channels", type=int, nargs="+", default=[32, 64, 64])
    p.add_argument("--infer-batch", type=int, default=16)
    p.add_argument("--train-batch", type=int, default=1)
    p.add_argument("--chain", type=int, default=250)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--noise", default="gaussian", choices=["gaussian", "simplex"],
                   help="training noise (simplex: as the peer script); also timed alone")  # fmt: skip
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    net = DiffusionReconstruction(diffusion_unet(2, 1, a.channels), t0=a.chain, steps=1, noise=a.noise)
    g = torch.Generator().manual_seed(0)
    s_noise = median_seconds(lambda: net.draw_noise((1, 1, a.size, a.size), g), a.warmup, max(a.iters, 5))
    x = torch.rand(a.infer_batch, 1, a.size, a.size) * 2 - 1
    tt = torch.full((a.infer_batch,), a.chain, dtype=torch.long)
    net.eval()

    def step():
        with torch.no_grad():
            net.unet(x, tt)

    s_step = median_seconds(step, a.warmup, a.iters)
    net.train()
    obj = DDPMObjective(net)
    opt = torch.optim.Adam(net.unet.parameters(), 1e-4)
    xt = torch.rand(a.train_batch, 1, a.size, a.size) * 2 - 1

    def train():
        loss = obj(xt)
        opt.zero_grad()
        loss.backward()
        opt.step()

    s_train = median_seconds(train, a.warmup, a.iters)
    img_s = a.infer_batch / s_step
    res = {
        "setting": f"1x{a.size}x{a.size}", "threads": a.threads,
        "params": sum(q.numel() for q in net.unet.parameters()),
        "infer_img_per_s_one_step": round(img_s, 3), "s_per_image_chain": round(a.chain / img_s, 2),
        "chain": a.chain, "train_s_per_iter": round(s_train, 3), "train_batch": a.train_batch,
        "noise": a.noise, "noise_ms_per_image": round(1000 * s_noise, 2),
    }  # fmt: skip
    print(json.dumps(res))
    return res


if __name__ == "__main__":
    main()
