"""Time our coarse-noise denoising autoencoder the way ../shared/peers/time_dae.py times the public DenoisingAE.

Same harness (``../shared/peers/_bench.py``: 2 threads, each job in a fresh process, 2 warm-ups then the median of 10
iterations, FLOPs by ``torch.utils.flop_counter``, inference at batch 16 under ``no_grad``) and the same settings
(1 x 128 x 128, batch 4; 4 x 128 x 128, batch 16). The training iteration is ours: ``RandCoarseNoise`` (16 x 16 grid
at 128 px, std 0.2, random roll, foreground only) through ``PrepareBatchDenoising``, masked MSE, Adam. Two networks:
the bundle's ``variants/dae.json`` (MONAI ``BasicUNet``, features 16..256) and the same at the peer's width (base 64).

Run beside the peer, one process at a time (nothing else running):
    export PEERS_DIR=/tmp/peers BENCH_RESULTS=/tmp/peer_results
    python ../shared/peers/time_dae.py && PYTHONPATH=. python benchmarks/time_dae.py
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HARNESS = Path(os.environ.get("PEERS_HARNESS", Path(__file__).resolve().parents[2] / "shared" / "peers"))
sys.path.insert(0, str(HARNESS))
import _bench as B  # noqa: E402
import torch  # noqa: E402
from monai.networks.nets import BasicUNet  # noqa: E402

from monai_anomaly.engines.utils import PrepareBatchDenoising  # noqa: E402
from monai_anomaly.transforms.noise import RandCoarseNoise  # noqa: E402

__all__ = ["SETTINGS", "NETS", "run_job"]

SETTINGS = {
    "default_4x128x128_b16": dict(C=4, H=128, W=128, bs=16),
    "common_1x128x128_b4": dict(C=1, H=128, W=128, bs=4),
}
NETS = {"ours_dae_default": (16, 32, 64, 128, 256, 16), "ours_dae_peer_width": (64, 64, 128, 256, 512, 64)}
JOBS = [dict(setting=s, mode=m, net=n) for s in SETTINGS for n in NETS for m in ("train", "infer")]


def fake_slices(bs: int, c: int, h: int, w: int) -> torch.Tensor:
    """The peer harness's stand-in: random intensities inside a disc."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    disc = ((xx**2 + yy**2) < 0.8).float()
    return (torch.rand(bs, c, h, w) * 0.9 + 0.1) * disc


def run_job(job: dict) -> None:
    s = SETTINGS[job["setting"]]
    c, h, w = s["C"], s["H"], s["W"]
    model = BasicUNet(2, c, c, features=NETS[job["net"]], norm=("group", {"num_groups": 8}))
    out = dict(job, peer="monai_anomaly", C=c, H=h, W=w, gen_params=B.nparams(model))
    out["train_params_total"] = out["gen_params"]
    x1 = fake_slices(1, c, h, w)
    with torch.no_grad():
        model.eval()
        out["gen_out_shape"] = list(model(x1).shape)
        out["gen_fwd_flops_b1"] = B.count_flops(lambda: model(x1))
    if job["mode"] == "train":
        bs = s["bs"]
        model.train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        clean = fake_slices(bs, c, h, w)
        prep = PrepareBatchDenoising(RandCoarseNoise(std=0.2, resolution=16, fg_threshold=0.01, batched=True))

        def step() -> None:
            noisy, target = prep({"image": clean})
            opt.zero_grad()
            mask = (target.sum(dim=1, keepdim=True) > 0.01).float()
            loss = (((model(noisy) - target) ** 2) * mask).mean()
            loss.backward()
            opt.step()

        out["train_flops_per_iter"] = B.count_flops(step)
        t = B.time_it(step)
        out.update(batch=bs, s_per_iter=t["median_s"], t=t, img_per_s_train=bs / t["median_s"])
    else:
        bs = B.INFER_BATCH
        model.eval()
        x = fake_slices(bs, c, h, w)

        def infer() -> torch.Tensor:
            with torch.no_grad():
                mask = x.sum(dim=1, keepdim=True) > 0.01
                return (((x - model(x)) ** 2) * mask).mean(dim=1, keepdim=True).flatten(1).mean(1)

        t = B.time_it(infer)
        out.update(batch=bs, s_per_batch=t["median_s"], t=t, img_per_s_infer=bs / t["median_s"])
    B.emit(out)


if __name__ == "__main__":
    B.main("monai_anomaly_dae", JOBS, run_job)
