"""Time the healthy-translation GAN's training iteration (``HealthyGANTrainer.train_step``) with the peer protocol.

Mirrors ``../shared/peers/time_brainomaly.py`` (the official Brainomaly code): a batch of ``--batch`` mixed images
and ``--batch`` known-healthy images per iteration, WGAN-GP critic step every iteration, generator step every
``n_critic`` = 2 iterations, Adam(1e-4, 0.5, 0.999), 2 threads, 2 warm-ups then the median of 10. Reported like the
peer: ``full`` (a critic step and a generator step), ``d_step`` (a critic step alone) and the solver average
``d_step + (full - d_step) / 2``, what one iteration costs on average with n_critic 2. Our networks are the bundle's
defaults (generator ``BasicUNet`` 32-256, critic MONAI ``Critic`` 32-256) at ``--channels`` input channels.

Example (run right after the peer script, nothing else running):
    PYTHONPATH=. python benchmarks/time_healthy_gan.py --channels 3 --size 128 --batch 4
"""

from __future__ import annotations

import argparse
import json

import torch
from _timing import median_seconds
from torch.utils.flop_counter import FlopCounterMode

from monai_anomaly.engines.gan import HealthyGANTrainer
from monai_anomaly.networks.gan import HealthyTranslationGenerator, wgan_critic


class _GlobalOnly:
    parents = {"Global"}

    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch", type=int, default=4, help="images per domain (mixed and known-healthy), as the peer")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    c, bs = a.channels, a.batch
    gen = HealthyTranslationGenerator(2, c)
    critic = wgan_critic((c, a.size, a.size), channels=(32, 64, 128, 256))
    og = torch.optim.Adam(gen.parameters(), 1e-4, betas=(0.5, 0.999))
    oc = torch.optim.Adam(critic.parameters(), 1e-4, betas=(0.5, 0.999))
    x = torch.rand(2 * bs, c, a.size, a.size) * 2 - 1
    batch = {"image": x, "role": ["normal"] * bs + ["mixed"] * bs}
    t = HealthyGANTrainer("cpu", 1, [batch], gen, critic, og, oc, n_critic=2, seed=0)
    for net in t.networks.values():
        net.train()

    def at(iteration: int):
        def fn():
            t.state.iteration = iteration  # 1: critic + generator step; 2: critic step only (n_critic 2)
            t.train_step(batch)

        return fn

    # FLOPs of one whole iteration, counted as the peer harness does: the counter's module tracker is replaced by a
    # global-only one, because its backward hooks refuse the gradient penalty's autograd.grad on a leaf input
    fc = FlopCounterMode(display=False)
    fc.mod_tracker = _GlobalOnly()
    with fc:
        at(1)()
    train_flops = fc.get_total_flops()
    full = median_seconds(at(1), a.warmup, a.iters)
    d_only = median_seconds(at(2), a.warmup, a.iters)
    with torch.no_grad(), FlopCounterMode(display=False) as fg:
        gen(x[:1])
    print(json.dumps({
        "setting": f"{c}x{a.size}x{a.size}_b{bs}", "threads": a.threads,
        "s_per_iter_full": round(full, 3), "s_d_step": round(d_only, 3),
        "s_per_solver_iter_avg": round(d_only + (full - d_only) / 2, 3),
        "train_flops_per_iter_full": train_flops, "gen_fwd_flops_b1": fg.get_total_flops(),
        "gen_params": sum(q.numel() for q in gen.parameters()),
        "critic_params": sum(q.numel() for q in critic.parameters()),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
