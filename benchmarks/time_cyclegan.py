"""Time one CycleGAN training iteration of ours (``CycleGANTrainer.train_step``) with the peer harness's protocol.

Same settings as ``../shared/peers/time_cyclegan.py`` (PyTorch-GAN): 64-wide ResNet generators with 2 downsamplings
and 9 residual blocks, PatchGAN discriminators, Adam(2e-4, 0.5, 0.999), replay buffers, batch 4 at 128 px; 2 threads,
2 warm-up iterations, then the median of 10. Run it right after the peer script, with nothing else running.

Example:
    PYTHONPATH=. python benchmarks/time_cyclegan.py --channels 3 --size 128 --batch 4
"""

from __future__ import annotations

import argparse
import json

import torch
from _timing import median_seconds

from monai_anomaly.engines.cyclegan import CycleGANTrainer
from monai_anomaly.engines.multi import training_amp
from monai_anomaly.networks.cyclegan import ResNetGenerator, patch_discriminator


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--res-blocks", type=int, default=9)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--precision", default="float32", choices=["float32", "bfloat16"],
                   help="bfloat16: autocast on a CPU with native bfloat16 (the bundles' train_precision)")  # fmt: skip
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    c = a.channels
    g_ab = ResNetGenerator(2, c, c, features=64, n_down=2, n_res_blocks=a.res_blocks)
    g_ba = ResNetGenerator(2, c, c, features=64, n_down=2, n_res_blocks=a.res_blocks)
    d_a, d_b = (
        patch_discriminator(2, c, channels=64, num_layers_d=3),
        patch_discriminator(2, c, channels=64, num_layers_d=3),
    )
    og = torch.optim.Adam(list(g_ab.parameters()) + list(g_ba.parameters()), 2e-4, betas=(0.5, 0.999))
    oa = torch.optim.Adam(d_a.parameters(), 2e-4, betas=(0.5, 0.999))
    ob = torch.optim.Adam(d_b.parameters(), 2e-4, betas=(0.5, 0.999))
    x = torch.rand(a.batch, c, a.size, a.size) * 2 - 1
    t = CycleGANTrainer(
        "cpu",
        1,
        [{"image": x}],
        g_ab,
        g_ba,
        d_a,
        d_b,
        og,
        oa,
        ob,
        mode="identity",
        seed=0,
        amp=training_amp(["generators", "disc_a", "disc_b"], "cpu", a.precision),
    )
    for net in t.networks.values():
        net.train()
    s_iter = median_seconds(lambda: t.train_step({"image": x}), a.warmup, a.iters)
    n_gen = sum(p.numel() for p in g_ab.parameters())
    n_disc = sum(p.numel() for p in d_a.parameters())
    print(json.dumps({"setting": f"{c}x{a.size}x{a.size}_b{a.batch}", "res_blocks": a.res_blocks,
                      "train_s_per_iter_median": round(s_iter, 3), "gen_params": n_gen,
                      "disc_params": n_disc, "threads": a.threads,
                      "precision": a.precision, "autocast": {k: str(v) for k, v in t.amp_dtypes.items()}}))  # fmt: skip


if __name__ == "__main__":
    main()
