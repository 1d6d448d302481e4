from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
from ignite.engine import Events
from monai.handlers import CheckpointLoader, CheckpointSaver

from monai_anomaly.engines.gan import HealthyGANTrainer, known_healthy_flags
from monai_anomaly.engines.multi import MultiNetworkTrainer, cpu_has_native_bf16, training_amp
from monai_anomaly.networks.gan import HealthyTranslationGenerator, wgan_critic

S = 32


def _image(rng: np.random.Generator, lesion: bool) -> np.ndarray:
    """A bright disc (a 'brain') on -1; a lesion is a 5x5 square at +0.9 inside it."""
    yy, xx = np.mgrid[:S, :S]
    r = rng.uniform(9, 13)
    x = np.where((yy - S / 2) ** 2 + (xx - S / 2) ** 2 <= r * r, 0.2 + 0.1 * rng.standard_normal((S, S)), -1.0)
    if lesion:
        cy, cx = rng.integers(10, 18, 2)
        x[cy : cy + 5, cx : cx + 5] = 0.9
    return np.clip(x, -1, 1).astype(np.float32)


def _batches(n_batches: int, seed: int = 0, size: int = 8) -> list[dict]:
    """Half known-healthy, half an unannotated mixed set (half of it with lesions)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_batches):
        imgs = [_image(rng, False) for _ in range(size // 2)] + [_image(rng, True) for _ in range(size // 2)]
        out.append(
            {"image": torch.tensor(np.stack(imgs))[:, None], "role": ["normal"] * (size // 2) + ["mixed"] * (size // 2)}
        )
    return out


def _trainer(
    max_epochs: int, data, lr: float = 1e-3, n_critic: int = 2, mask: bool = False, seed: int = 0, lambda_rec: float = 0
):
    torch.manual_seed(seed)
    g = HealthyTranslationGenerator(2, features=(8, 8, 16, 32, 64, 8), mask=mask)
    c = wgan_critic((1, S, S), channels=(8, 16, 32))
    og = torch.optim.Adam(g.parameters(), lr, betas=(0.5, 0.999))
    oc = torch.optim.Adam(c.parameters(), lr, betas=(0.5, 0.999))
    return HealthyGANTrainer("cpu", max_epochs, data, g, c, og, oc, n_critic=n_critic, seed=seed, lambda_rec=lambda_rec)


def _steps(opt: torch.optim.Optimizer) -> int:
    states = list(opt.state.values())
    return int(states[0]["step"]) if states else 0


def test_known_healthy_flags():
    assert known_healthy_flags({"role": ["normal", "mixed", "normal"]}, 3, torch.device("cpu")).tolist() == [
        True,
        False,
        True,
    ]
    assert known_healthy_flags({}, 2, torch.device("cpu")).tolist() == [True, True]  # normals alone


def test_critic_steps_every_iteration_and_the_generator_every_n_critic():
    t = _trainer(1, _batches(5), n_critic=2)
    t.run()
    assert _steps(t.optimizers["critic"]) == 5 and _steps(t.optimizers["generator"]) == 3  # iterations 1, 3, 5
    out = t.state.output
    names = {"loss", "critic_loss", "gradient_penalty", "wasserstein", "gen_adv_loss", "identity_loss", "focus_loss"}
    names |= {"reconstruction_loss"}
    assert set(out) == names and all(torch.isfinite(v) for v in out.values())


def test_the_critic_learns_to_tell_healthy_from_the_mixed_translations():
    """Early on G(mixed) still holds the lesions (and tanh lifts the -1 background): on held-out batches the trained
    critic must score known-healthy images above the generator's translations (a positive Wasserstein estimate)."""
    t = _trainer(6, _batches(10), lr=3e-3, n_critic=1000)  # the generator steps once: the critic's side only
    gp = []
    t.add_event_handler(Events.ITERATION_COMPLETED, lambda e: gp.append(float(e.state.output["gradient_penalty"])))
    t.run()
    g, c = t.networks["generator"], t.networks["critic"]
    real, fake = [], []
    with torch.no_grad():
        for b in _batches(4, seed=5):
            x = b["image"]
            real.append(c(x[:4]).mean())
            fake.append(c(g(x[4:])["healthy"]).mean())
    assert float(torch.stack(real).mean() - torch.stack(fake).mean()) > 0.5
    assert np.mean(gp[-5:]) < 0.5 * np.mean(gp[:3])  # the penalty brought the critic's gradient norm towards 1


def test_mask_variant_reports_the_focus_loss():
    t = _trainer(1, _batches(2), mask=True, n_critic=1)
    t.run()
    assert 0 < float(t.state.output["focus_loss"]) <= 0.25


def test_reconstruction_term_is_in_the_generator_loss_and_keeps_the_mixed_images_close_to_their_input():
    """AnomalyPro's fourth term, lambda_rec |G(x) - x|_1 over every image (mixed ones included): it is added to the
    generator's loss with its weight, and a generator trained with it changes the mixed images less."""
    t = _trainer(1, _batches(1), n_critic=1, lambda_rec=2.0)
    t.run()
    out = t.state.output
    expected = out["gen_adv_loss"] + 1.0 * out["identity_loss"] + 2.0 * out["reconstruction_loss"]
    assert torch.allclose(out["loss"], expected, atol=1e-6) and float(out["reconstruction_loss"]) > 0
    held_out = torch.cat([b["image"][4:] for b in _batches(3, seed=7)])
    change = {}
    for lam in (0.0, 10.0):
        t = _trainer(4, _batches(6), lr=3e-3, n_critic=1, lambda_rec=lam)
        t.run()
        with torch.no_grad():
            change[lam] = float((t.networks["generator"](held_out)["healthy"] - held_out).abs().mean())
    assert change[10.0] < 0.7 * change[0.0]


def test_checkpoint_restores_both_networks_both_optimizers_and_the_iteration(tmp_path):
    data = _batches(3)
    t = _trainer(2, data)
    CheckpointSaver(str(tmp_path), t.checkpoint_dict(), save_interval=1, n_saved=1).attach(t)
    t.run()
    (ckpt,) = tmp_path.glob("checkpoint_epoch=2.pt")
    t2 = _trainer(3, data, seed=1)
    before = {k: v.clone() for k, v in t2.networks["generator"].state_dict().items()}
    CheckpointLoader(str(ckpt), t2.checkpoint_dict(), map_location="cpu").attach(t2)
    seen = {}
    t2.add_event_handler(Events.STARTED, lambda e: seen.update(iteration=e.state.iteration))
    t2.run()
    assert seen["iteration"] == 6  # resumed after epoch 2 (3 iterations per epoch), then ran epoch 3
    assert _steps(t2.optimizers["critic"]) == 9
    saved = torch.load(ckpt, weights_only=True)
    assert {"net_generator", "net_critic", "opt_generator", "opt_critic", "trainer"} <= set(saved)
    assert any(not torch.equal(before[k], saved["net_generator"][k]) for k in before)  # seed-1 weights replaced


def test_multi_network_trainer_checks_its_arguments():
    a = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match="no network of the same name"):
        MultiNetworkTrainer("cpu", 1, [], {"a": a}, {"b": torch.optim.SGD(a.parameters(), 0.1)})
    with pytest.warns(UserWarning, match="needs bfloat16 and a CPU with native bfloat16"):
        t = MultiNetworkTrainer(
            "cpu", 1, [], {"a": a}, {"a": torch.optim.SGD(a.parameters(), 0.1)}, amp={"a": torch.float16}
        )
    assert t.amp_dtypes == {} and t.scalers == {}
    with pytest.raises(ValueError, match="bfloat16 or torch.float16"):
        MultiNetworkTrainer("cpu", 1, [], {"a": a}, {"a": torch.optim.SGD(a.parameters(), 0.1)}, amp={"a": torch.int8})


def test_training_precision_setting_and_bfloat16_on_a_cpu():
    assert training_amp(["g", "d"], "cpu", "auto") == {}  # auto: float32 on a CPU, the precision results used
    assert training_amp(["g"], "cpu", "float32") == {}
    assert training_amp(["g", "d"], "cpu", "bfloat16") == {"g": torch.bfloat16, "d": torch.bfloat16}
    with pytest.raises(ValueError, match="precision"):
        training_amp(["g"], "cpu", "fp8")
    torch.manual_seed(0)
    a = torch.nn.Conv2d(1, 4, 3)
    ctx = contextlib.nullcontext() if cpu_has_native_bf16() else pytest.warns(UserWarning, match="native bfloat16")
    with ctx:
        t = _Square("cpu", 1, [], {"a": a}, {"a": torch.optim.SGD(a.parameters(), 0.1)}, amp={"a": torch.bfloat16})
    assert t.amp_dtypes == ({"a": torch.bfloat16} if cpu_has_native_bf16() else {})
    t.state.device = torch.device("cpu")
    out = t.train_step({"image": torch.rand(2, 1, 8, 8)})
    assert torch.isfinite(out["a_loss"]) and out["a_loss"].dtype == torch.float32
    assert a.weight.grad is not None and a.weight.grad.dtype == torch.float32  # weights and grads stay float32
    assert t.seen_dtype == (torch.bfloat16 if cpu_has_native_bf16() else torch.float32)


class _Square(MultiNetworkTrainer):
    def train_step(self, batch):
        with self.autocast("a"):
            y = self.networks["a"](batch["image"])
        self.seen_dtype = y.dtype
        loss = y.float().pow(2).mean()
        self.step("a", loss)
        return {"a_loss": loss.detach()}


def test_training_without_a_mixed_set_is_warned_about(caplog):
    with caplog.at_level("WARNING", logger="monai_anomaly.engines.gan"):
        _trainer(1, _batches(1)).run()  # half the batch is mixed
    assert "no image has role 'mixed'" not in caplog.text
    normals_only = [{"image": b["image"]} for b in _batches(1)]  # no roles: all known-healthy
    with caplog.at_level("WARNING", logger="monai_anomaly.engines.gan"):
        t = _trainer(2, normals_only)
        t.run()
    assert caplog.text.count("no image has role 'mixed'") == 1 and t.mixed_seen == 0


def test_linear_decay_holds_then_decays_every_optimizer_and_resumes(tmp_path):
    from monai_anomaly.engines.multi import LinearDecayLR

    params = [torch.nn.Parameter(torch.zeros(1)) for _ in range(2)]
    opts = [torch.optim.Adam([params[0]], 2e-4), torch.optim.Adam([params[1]], 1e-4)]
    s = LinearDecayLR(opts, max_epochs=6, decay_start=3)
    seen = []
    for _ in range(6):
        seen.append(s.get_last_lr())
        s.step()
    assert [round(a / 2e-4, 3) for a, _ in seen] == [1.0, 1.0, 1.0, 1.0, 0.667, 0.333]
    assert all(abs(b / a - 0.5) < 1e-9 for a, b in seen)  # both optimizers follow the same curve
    torch.save(s.state_dict(), tmp_path / "s.pt")
    fresh = LinearDecayLR([torch.optim.Adam([params[0]], 2e-4), torch.optim.Adam([params[1]], 1e-4)], 6, 3)
    fresh.load_state_dict(torch.load(tmp_path / "s.pt", weights_only=True))
    assert fresh.get_last_lr() == s.get_last_lr()
    # resumed with a longer run: the rate follows the new curve, not the 0 the finished one ended at
    ended = LinearDecayLR([torch.optim.SGD([params[0]], 1.0)], max_epochs=2, decay_start=1)
    ended.step()
    ended.step()
    assert ended.get_last_lr() == [0.0]
    longer_opt = torch.optim.SGD([params[0]], 1.0)
    longer_opt.param_groups[0]["lr"] = 0.0  # as restored from the finished run's optimizer state
    longer = LinearDecayLR([longer_opt], max_epochs=4, decay_start=1)
    longer.load_state_dict(ended.state_dict())
    assert longer_opt.param_groups[0]["lr"] == pytest.approx(2 / 3)
    assert longer.get_last_lr() == [pytest.approx(2 / 3)]
    with pytest.raises(ValueError, match="decay_start"):
        LinearDecayLR(opts, max_epochs=4, decay_start=4)
    # driven by MONAI's handler as the bundles do (it logs the rate it reads from the scheduler)
    from monai.handlers import LrScheduleHandler

    t = _trainer(2, _batches(1))
    sched = LinearDecayLR(list(t.optimizers.values()), max_epochs=2, decay_start=1)
    LrScheduleHandler(sched, print_lr=True).attach(t)
    t.run()
    assert sched.get_last_lr()[0] == pytest.approx(0.0)
