from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from monai.handlers import CheckpointLoader, CheckpointSaver

from monai_anomaly.engines.cyclegan import CycleGANTrainer, lsgan_loss
from monai_anomaly.networks.cyclegan import ImageReplayBuffer, ResNetGenerator, patch_discriminator


def _disc(rng: np.random.Generator) -> np.ndarray:
    """A smooth bright disc (a 'brain') on -1."""
    yy, xx = np.mgrid[:32, :32]
    r = rng.uniform(8, 13)
    return np.where((yy - 16) ** 2 + (xx - 16) ** 2 <= r * r, rng.uniform(0.0, 0.6), -1.0).astype(np.float32)


def _batches(n: int, size: int = 8, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        x = np.stack([_disc(rng) for _ in range(size)])[:, None]
        out.append({"image": torch.tensor(x), "role": ["normal"] * (size // 2) + ["mixed"] * (size // 2)})
    return out


def _trainer(max_epochs, data, mode="identity", seed=0, lr=2e-4):
    torch.manual_seed(seed)
    g_ab, g_ba = ResNetGenerator(2, features=8, n_res_blocks=1), ResNetGenerator(2, features=8, n_res_blocks=1)
    d_a, d_b = patch_discriminator(channels=8, num_layers_d=2), patch_discriminator(channels=8, num_layers_d=2)
    og = torch.optim.Adam(list(g_ab.parameters()) + list(g_ba.parameters()), lr, betas=(0.5, 0.999))
    oa = torch.optim.Adam(d_a.parameters(), lr, betas=(0.5, 0.999))
    ob = torch.optim.Adam(d_b.parameters(), lr, betas=(0.5, 0.999))
    return CycleGANTrainer(
        "cpu", max_epochs, data, g_ab, g_ba, d_a, d_b, og, oa, ob, mode=mode, buffer_size=4, seed=seed
    )


def test_generator_keeps_one_channel_images_and_their_size_in_2d_and_3d():
    g = ResNetGenerator(2, features=8, n_res_blocks=2)
    y = g(torch.rand(2, 1, 32, 48) * 2 - 1)
    assert y.shape == (2, 1, 32, 48) and float(y.abs().max()) <= 1.0
    assert ResNetGenerator(3, features=4, n_res_blocks=1)(torch.zeros(1, 1, 16, 16, 16)).shape == (1, 1, 16, 16, 16)
    with pytest.raises(ValueError, match="divisible by 4"):
        g(torch.zeros(1, 1, 30, 32))


def test_replay_buffer_fills_then_mixes_history_and_round_trips_its_state():
    buf = ImageReplayBuffer(size=3, seed=0)
    first = torch.arange(3.0).view(3, 1, 1, 1)
    assert torch.equal(buf.push_and_pop(first), first) and len(buf) == 3  # filling: returned as they are
    new = torch.full((50, 1, 1, 1), 9.0)
    out = buf.push_and_pop(new)
    assert len(buf) == 3 and out.shape == new.shape
    assert int((out != 9.0).sum()) >= 1  # some of the history came back
    restored = ImageReplayBuffer(size=1)
    restored.load_state_dict(buf.state_dict())
    assert [float(i) for i in restored.images] == [float(i) for i in buf.images]
    nxt = torch.full((20, 1, 1, 1), 5.0)
    assert torch.equal(restored.push_and_pop(nxt), buf.push_and_pop(nxt))  # same random choices after a resume


def test_lsgan_loss_reads_the_last_patch_map():
    assert float(lsgan_loss([torch.zeros(1), torch.ones(2, 1, 3, 3)], 1.0)) == 0.0
    assert float(lsgan_loss(torch.zeros(2, 1, 3, 3), 1.0)) == 1.0


def test_identity_mode_trains_all_four_networks_and_reports_named_losses():
    data = _batches(3)
    t = _trainer(1, data)
    before = {k: [p.detach().clone() for p in n.parameters()] for k, n in t.networks.items()}
    t.run()
    for k, n in t.networks.items():
        assert any(not torch.equal(a, b) for a, b in zip(before[k], n.parameters())), k
    assert set(t.state.output) == {"loss", "gen_adv_loss", "cycle_loss", "identity_loss", "disc_a_loss", "disc_b_loss"}
    assert len(t.buffer_a) == 4 and len(t.buffer_b) == 4


def test_identity_mode_reuses_the_translations_for_the_identity_term_with_the_same_gradients():
    batch = _batches(1)[0]
    t = _trainer(1, [batch])
    g = t.networks["generators"]
    g_ab, g_ba = g["to_normal"], g["to_a"]
    calls = []
    hooks = [m.register_forward_hook(lambda *_: calls.append(1)) for m in (g_ab, g_ba)]
    # the paper's six generator passes, on a copy, before the step
    ref = copy.deepcopy(torch.nn.ModuleDict({"ab": g_ab, "ba": g_ba}))
    x = batch["image"]
    fb, fa = ref["ab"](x), ref["ba"](x)
    cycle = torch.nn.functional.l1_loss(ref["ba"](fb), x) + torch.nn.functional.l1_loss(ref["ab"](fa), x)
    ident = torch.nn.functional.l1_loss(ref["ab"](x), x) + torch.nn.functional.l1_loss(ref["ba"](x), x)
    adv = lsgan_loss(t.networks["disc_b"](fb), 1.0) + lsgan_loss(t.networks["disc_a"](fa), 1.0)
    (adv + 10 * cycle + 5 * ident).backward()
    calls.clear()
    out = t.train_step(batch)
    assert len(calls) == 4  # 2 translations + 2 cycles; the identity term reuses the translations
    torch.testing.assert_close(out["identity_loss"], ident.detach())
    torch.testing.assert_close(out["cycle_loss"], cycle.detach())
    # the same loss function of the parameters: the generators' gradients match the six-pass reference
    # (summation order differs between the two graphs: equal up to float rounding)
    for ours, theirs in ((g_ab, ref["ab"]), (g_ba, ref["ba"])):
        got = torch.cat([p.grad.flatten() for p in ours.parameters()])
        want = torch.cat([q.grad.flatten() for q in theirs.parameters()])
        assert float((got - want).norm()) <= 1e-4 * float(want.norm())
    for h in hooks:
        h.remove()


def test_cycle_and_identity_losses_fall_on_normals():
    t = _trainer(8, _batches(4), lr=2e-3)
    hist = []
    from ignite.engine import Events

    t.add_event_handler(Events.ITERATION_COMPLETED, lambda e: hist.append(float(e.state.output["cycle_loss"])))
    t.run()
    assert np.mean(hist[-4:]) < 0.7 * np.mean(hist[:4])


def test_two_domain_mode_carries_a_missing_domain_over_from_the_last_batch():
    x = torch.rand(4, 1, 32, 32)
    only_normal = {"image": x, "role": ["normal"] * 4}
    both = {"image": x, "role": ["normal", "mixed", "normal", "mixed"]}
    # a first batch with one domain only: nothing to learn yet, the networks are left as they were; an epoch of such
    # batches made no step, and the run stops instead of saving an untrained model
    t = _trainer(1, [only_normal], mode="two_domain")
    before = [p.detach().clone() for p in t.networks["generators"].parameters()]
    with pytest.raises(RuntimeError, match="made no optimiser step"):
        t.run()
    assert float(t.state.output["loss"]) == 0.0
    assert all(torch.equal(a, b) for a, b in zip(before, t.networks["generators"].parameters()))
    # after a batch with both, a one-domain batch trains against the last images of the missing domain
    t = _trainer(1, [both, only_normal], mode="two_domain")
    seen = []
    from ignite.engine import Events

    t.add_event_handler(Events.ITERATION_COMPLETED, lambda e: seen.append(float(e.state.output["cycle_loss"])))
    t.run()
    assert len(seen) == 2 and all(v > 0 for v in seen)
    assert torch.equal(t._last_domain["a"], x[[1, 3]])
    with pytest.raises(ValueError, match="mode must be"):
        _trainer(1, [], mode="other")


def test_checkpoint_holds_generators_discriminators_optimizers_and_buffers(tmp_path):
    data = _batches(2)
    t = _trainer(1, data)
    CheckpointSaver(str(tmp_path), t.checkpoint_dict(), save_interval=1).attach(t)
    t.run()
    (ckpt,) = tmp_path.glob("checkpoint_epoch=1.pt")
    saved = torch.load(ckpt, weights_only=True)
    keys = {"net_generators", "net_disc_a", "net_disc_b", "opt_generators", "opt_disc_a", "opt_disc_b", "buffer_a"}
    assert keys <= set(saved)
    t2 = _trainer(2, data, seed=3)
    CheckpointLoader(str(ckpt), t2.checkpoint_dict(), map_location="cpu").attach(t2)
    t2.run()
    assert t2.state.iteration == 4 and len(t2.buffer_a) == 4


def test_replay_buffer_of_metatensors_saves_as_plain_data(tmp_path):
    from monai.data import MetaTensor

    buf = ImageReplayBuffer(size=2, seed=0)
    buf.push_and_pop(MetaTensor(torch.rand(2, 1, 4, 4), meta={"filename_or_obj": "a.png"}))
    torch.save(buf.state_dict(), tmp_path / "b.pt")
    state = torch.load(tmp_path / "b.pt", weights_only=True)  # no MONAI classes inside
    assert type(state["images"]) is torch.Tensor and state["images"].shape == (2, 1, 4, 4)
