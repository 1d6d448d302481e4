"""Diffusion reconstruction: DDIM from t0 is exact with an oracle denoiser, deterministic, single step = one pass;
the refiner keeps stage 1 frozen; the DDPM trainer lowers its loss."""

from __future__ import annotations

import pytest
import torch

from monai_anomaly.engines.diffusion import DiffusionTrainer
from monai_anomaly.networks.diffusion import (
    DDPMObjective,
    DiffusionReconstruction,
    RefinedReconstruction,
    ddim_timesteps,
    diffusion_unet,
    load_coarse_weights,
    refiner_settings,
)
from monai_anomaly.networks.factory import reconstruction_network
from monai_anomaly.utils.errors import BadInputError


class Oracle(torch.nn.Module):
    """Predicts the exact noise of ``x_t`` for a known clean image ``x0``; counts its calls."""

    def __init__(self, x0: torch.Tensor, alphas_cumprod: torch.Tensor) -> None:
        super().__init__()
        self.x0, self.ac, self.calls = x0, alphas_cumprod, 0
        self.w = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x_t, t):
        self.calls += 1
        a = self.ac[t].view(-1, 1, 1, 1)
        return (x_t - a.sqrt() * self.x0) / (1 - a).sqrt()


def _brain(n=2, size=32):
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    disc = (((yy - size / 2) ** 2 + (xx - size / 2) ** 2) < (size / 3) ** 2).float()
    return (disc * 0.6 + 0.05 * torch.randn(n, 1, size, size, generator=torch.Generator().manual_seed(1))).clamp(-1, 1)


@pytest.mark.parametrize("steps", [0, 1, 5])
def test_ddim_from_t0_recovers_the_image_with_an_oracle_denoiser(steps):
    x0 = _brain()
    net = DiffusionReconstruction(torch.nn.Identity(), timesteps=1000, t0=400, steps=steps)
    oracle = Oracle(x0, net.alphas_cumprod)
    net.unet = oracle
    out = net(x0)
    torch.testing.assert_close(out, x0, atol=1e-4, rtol=1e-4)
    assert oracle.calls == max(1, steps)  # steps 0: the single-step estimate, one pass per slice


def test_ddim_timesteps_are_evenly_spaced_from_t0():
    assert ddim_timesteps(250, 5) == [250, 200, 150, 100, 50]
    assert ddim_timesteps(10, 50) == list(range(10, 0, -1))  # never more steps than t0
    with pytest.raises(ValueError):
        ddim_timesteps(0, 3)


def test_scores_are_deterministic_across_calls_and_instances():
    unet = diffusion_unet(2, 1, channels=(8, 16), num_head_channels=8)
    a = DiffusionReconstruction(unet, timesteps=200, t0=60, steps=3, seed=7).eval()
    x = _brain(3)
    first = a(x)
    torch.manual_seed(123)  # the global RNG does not matter
    torch.testing.assert_close(a(x), first, rtol=0, atol=0)
    b = DiffusionReconstruction(
        diffusion_unet(2, 1, channels=(8, 16), num_head_channels=8), 200, t0=60, steps=3, seed=7
    )
    b.load_state_dict(a.state_dict())
    torch.testing.assert_close(b.eval()(x), first, rtol=0, atol=0)
    c = DiffusionReconstruction(unet, timesteps=200, t0=60, steps=3, seed=8).eval()
    assert not torch.equal(c(x), first)  # another seed, other noise


def test_noise_level_must_be_inside_the_chain():
    with pytest.raises(ValueError, match="t0"):
        DiffusionReconstruction(torch.nn.Identity(), timesteps=100, t0=100)


def test_ddpm_trainer_lowers_the_noise_prediction_loss():
    torch.manual_seed(0)
    net = DiffusionReconstruction(diffusion_unet(2, 1, channels=(8, 16), num_head_channels=8), timesteps=100, t0=50)
    data = [{"image": _brain(8)}] * 30
    opt = torch.optim.Adam(net.unet.parameters(), 3e-3)
    t = DiffusionTrainer("cpu", 1, data, DDPMObjective(net), opt)
    hist = []
    from ignite.engine import Events

    t.add_event_handler(Events.ITERATION_COMPLETED, lambda e: hist.append(float(e.state.output["loss"])))
    t.run()
    assert sum(hist[-5:]) / 5 < 0.6 * sum(hist[:5]) / 5


def _tiny_gan():
    return reconstruction_network("healthy_gan", 32, channels=(8, 8, 16, 32, 64, 8))


def test_refiner_is_conditioned_on_the_coarse_image_and_keeps_stage_1_frozen():
    coarse = _tiny_gan()
    net = RefinedReconstruction(coarse, diffusion_unet(2, 2, channels=(8, 16), num_head_channels=8), timesteps=100,
                                t0=30, steps=2)  # fmt: skip
    before = {k: v.clone() for k, v in coarse.state_dict().items()}
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], 1e-3)
    DiffusionTrainer("cpu", 1, [{"image": _brain(4)}] * 3, DDPMObjective(net), opt).run()
    assert all(torch.equal(before[k], v) for k, v in coarse.state_dict().items())
    assert not coarse.training and net.training  # stage 1 stays in inference mode
    x = _brain(2)
    torch.testing.assert_close(net.eval()(x), net(x), rtol=0, atol=0)
    assert net.unet.conv_in.conv.in_channels == 2  # noisy image + coarse image


def test_refiner_reads_stage_1_from_a_checkpoint_and_refuses_mismatches(tmp_path):
    from monai_anomaly.networks.anomaly_net import AnomalyMapNet
    from monai_anomaly.utils.settings import ModelSettings

    gan = AnomalyMapNet(_tiny_gan())
    torch.nn.init.normal_(next(gan.parameters()))
    ckpt = tmp_path / "model.pt"
    settings = ModelSettings(model_type="healthy_gan", image_size=32, intensity_range=[-1.0, 1.0],
                             channels=[8, 8, 16, 32, 64, 8], gan_mask=False)  # fmt: skip
    torch.save({"model": gan.state_dict(), "settings": settings.state_dict()}, ckpt)
    d = refiner_settings({"timesteps": 100, "t0": 30, "steps": 2}, str(ckpt))
    assert d["coarse"]["model_type"] == "healthy_gan" and d["t0"] == 30 and d["condition"] is True
    net = AnomalyMapNet(reconstruction_network("gan_refined", 32, channels=(8, 16), diffusion=d))
    load_coarse_weights(net, str(ckpt), 32, [-1.0, 1.0])
    got = net.model.coarse.state_dict()
    assert all(torch.equal(got[k], v) for k, v in _strip(gan.state_dict()).items())
    with pytest.raises(BadInputError, match="image_size"):
        load_coarse_weights(net, str(ckpt), 64, [-1.0, 1.0])
    with pytest.raises(BadInputError, match="coarse_ckpt"):
        refiner_settings({}, None)
    with pytest.raises(BadInputError, match="not found"):
        refiner_settings({}, str(tmp_path / "nope.pt"))
    with pytest.raises(ValueError, match="coarse"):
        reconstruction_network("gan_refined", 32, channels=(8, 16))


def _strip(state):
    return {k[len("model.") :]: v for k, v in state.items()}


class _FirstChannel(torch.nn.Module):
    def forward(self, inp, t):
        return inp[:, :1]


class _Halve(torch.nn.Module):
    """A 'coarse reconstruction' that loses half the contrast."""

    def forward(self, x):
        return 0.5 * x


def test_residual_refiner_adds_the_sampled_correction_to_the_coarse_image():
    """Brainomaly-Diff's residual mode: DDIM samples the correction r = x_healthy - coarse (an oracle knows it here)
    from the seeded noise at t0, conditioned on the coarse image only, and the refined image is coarse + r."""
    healthy = _brain(2)
    net = RefinedReconstruction(_Halve(), torch.nn.Identity(), refine="residual", timesteps=1000, t0=400, steps=3)
    seen = []

    class ResidualOracle(Oracle):
        def forward(self, inp, t):
            seen.append(inp.shape[1])
            return super().forward(inp[:, :1], t)

    net.unet = ResidualOracle(healthy - 0.5 * healthy, net.alphas_cumprod)
    torch.testing.assert_close(net.eval()(healthy), healthy, atol=1e-4, rtol=1e-4)
    assert set(seen) == {2}  # the noisy correction + the coarse image: the input itself is never shown
    # training: the DDPM target is the correction, not the image
    targets = []
    net.training_pair = lambda x, generator=None: targets.append(x) or (x, torch.zeros(len(x), dtype=torch.long), x)
    net.unet = _FirstChannel()
    net.training_loss(healthy)
    torch.testing.assert_close(targets[0], healthy - 0.5 * healthy)
    with pytest.raises(ValueError, match="needs condition=True"):
        RefinedReconstruction(_Halve(), torch.nn.Identity(), refine="residual", condition=False)
    with pytest.raises(ValueError, match="refine must be one of"):
        RefinedReconstruction(_Halve(), torch.nn.Identity(), refine="both")


def test_refiner_default_is_residual_and_a_model_saved_without_the_option_stays_image():
    from monai_anomaly.networks.diffusion import DIFFUSION_DEFAULTS

    assert DIFFUSION_DEFAULTS["refine"] == "residual"
    coarse = {"model_type": "healthy_gan", "channels": [8, 8, 16, 32, 64, 8]}
    common = {"model_type": "gan_refined", "image_size": 32, "channels": [8, 16]}
    legacy = reconstruction_network(**common, diffusion={"t0": 50, "coarse": coarse})  # saved before 0.5.0
    new = reconstruction_network(**common, diffusion={"t0": 50, "refine": "residual", "coarse": coarse})
    assert legacy.refine == "image" and new.refine == "residual"
