"""Tests of monai_anomaly.engines.trainer and engines.utils: a real tiny training run, validation with threshold
fitting, checkpointing, and resuming from the saved checkpoint with identical weights."""

from __future__ import annotations

import math
import os

import pytest
import torch
from ignite.engine import Events
from monai.data import DataLoader, Dataset
from monai.handlers import CheckpointSaver, ValidationHandler

from monai_anomaly.engines.evaluator import AnomalyEvaluator
from monai_anomaly.engines.trainer import ReconstructionTrainer
from monai_anomaly.engines.utils import (
    PrepareBatchReconstruction,
    ProgressBarHandler,
    find_latest_checkpoint,
    output_loss,
    resume_if_exists,
)
from monai_anomaly.handlers.thresholds import ThresholdFitter
from monai_anomaly.losses.reconstruction import ReconstructionLoss
from monai_anomaly.networks.anomaly_net import AnomalyMapNet
from monai_anomaly.networks.autoencoder import ConvAutoEncoder, ConvVAE


def brain_like(n: int, size: int = 32, anomalous: bool = False, seed: int = 0) -> list[dict]:
    """Synthetic grey "brain" slices: a textured ellipse on black, with a bright blob when anomalous."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    items = []
    for i in range(n):
        a, b = 0.65 + 0.1 * float(torch.rand(1, generator=g)), 0.75 + 0.1 * float(torch.rand(1, generator=g))
        brain = ((xx / a) ** 2 + (yy / b) ** 2 <= 1).float()
        img = brain * (0.5 + 0.15 * torch.cos(4 * xx) * torch.sin(3 * yy)) + 0.02 * torch.randn(size, size, generator=g)
        if anomalous:
            cy, cx = (torch.rand(2, generator=g) - 0.5) * 0.6
            img = img + 0.5 * brain * torch.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 0.02)
        items.append(
            {
                "image": img.clamp(0, 1)[None],
                "label": int(anomalous),
                "volume_id": f"{'tumour' if anomalous else 'normal'}{i // 4}",
                "slice_index": i % 4,
            }
        )
    return items


def _loader(items, batch_size=4):
    return DataLoader(Dataset(items), batch_size=batch_size, shuffle=False, num_workers=0)


def _net(seed: int) -> ConvAutoEncoder:
    torch.manual_seed(seed)
    return ConvAutoEncoder(2, 1, 1, channels=(4, 8, 8), strides=(2, 2, 2), num_res_units=0)


def test_training_reduces_loss_and_outputs_enum_keys():
    net = _net(0)
    losses: list[float] = []
    trainer = ReconstructionTrainer(
        "cpu", 3, _loader(brain_like(16)), net, torch.optim.Adam(net.parameters(), 1e-2), decollate=False
    )
    trainer.add_event_handler(
        Events.ITERATION_COMPLETED, lambda e: losses.append(float(e.state.output["loss"].detach()))
    )
    trainer.run()
    out = trainer.state.output
    assert set(map(str, out)) == {"image", "pred", "loss", "recon_loss", "kl_loss"}
    assert out["pred"].shape == out["image"].shape == (4, 1, 32, 32)
    assert float(out["kl_loss"]) == 0.0 and torch.allclose(out["recon_loss"], out["loss"].detach())
    assert len(losses) == 12
    assert sum(losses[-4:]) < 0.8 * sum(losses[:4])
    assert output_loss(out)["loss"] == pytest.approx(losses[-1])


def test_vae_training_logs_kl_and_decollated_output():
    torch.manual_seed(0)
    vae = ConvVAE(2, 1, 1, in_shape=(32, 32), channels=(4, 8), strides=(2, 2), latent_size=8, num_res_units=0)
    loss = ReconstructionLoss("l1+ssim", kl_weight=1e-2)
    trainer = ReconstructionTrainer("cpu", 1, _loader(brain_like(8)), vae, torch.optim.Adam(vae.parameters()), loss)
    trainer.run()
    out = trainer.state.output  # decollated: one dict per sample
    assert isinstance(out, list) and len(out) == 4
    assert out[0]["pred"].shape == (1, 32, 32)  # the reconstruction, not the VAE tuple
    terms = output_loss(out)
    assert terms["kl_loss"] > 0
    assert terms["loss"] == pytest.approx(terms["recon_loss"] + 1e-2 * terms["kl_loss"], rel=1e-4)


def test_amp_on_cpu_falls_back_with_a_warning():
    net = _net(0)
    with pytest.warns(UserWarning, match="CUDA"):
        trainer = ReconstructionTrainer(
            "cpu", 1, _loader(brain_like(4)), net, torch.optim.SGD(net.parameters()), amp=True
        )
    assert trainer.amp is False and trainer.scaler is None
    trainer.run()
    with pytest.raises(ValueError, match="amp_dtype"):
        ReconstructionTrainer("cpu", 1, [], net, torch.optim.SGD(net.parameters()), amp_dtype=torch.float32)


def test_prepare_batch_reconstruction():
    prep = PrepareBatchReconstruction("img")
    x = torch.rand(2, 1, 8, 8)
    inputs, targets = prep({"img": x, "label": torch.tensor([0, 1])})
    assert torch.equal(inputs, x) and targets is inputs
    assert prep(x)[0] is x
    with pytest.raises(KeyError, match="'img'"):
        prep({"image": x})


def test_find_latest_checkpoint(tmp_path):
    assert find_latest_checkpoint(tmp_path / "missing") is None
    assert find_latest_checkpoint(tmp_path) is None
    for name in ("checkpoint_epoch=2.pt", "checkpoint_epoch=10.pt", "checkpoint_epoch=9.pt", "notes.txt"):
        (tmp_path / name).write_text("x")
    assert os.path.basename(find_latest_checkpoint(tmp_path)) == "checkpoint_epoch=10.pt"
    (tmp_path / "checkpoint_final_iteration=400.pt").write_text("x")
    assert os.path.basename(find_latest_checkpoint(tmp_path)) == "checkpoint_final_iteration=400.pt"


def test_progress_bar_handler_runs():
    pytest.importorskip("tqdm")
    net = _net(0)
    bar = ProgressBarHandler(desc="train", only_tty=False)
    quiet = ProgressBarHandler(desc="train")  # pytest captures stderr: not a terminal, so no bar
    trainer = ReconstructionTrainer(
        "cpu", 1, _loader(brain_like(4)), net, torch.optim.SGD(net.parameters()), train_handlers=[bar, quiet]
    )
    trainer.run()
    assert bar.bar is not None
    assert quiet.bar is None


def _pipeline(seed: int, max_epochs: int, ckpt_dir, train_items, val_items):
    """Trainer + validation (threshold fitter) + per-epoch checkpoint of network, optimizer, trainer, threshold."""
    net = _net(seed)
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    fitter = ThresholdFitter("mean_std", k=2.0)
    evaluator = AnomalyEvaluator(
        "cpu", _loader(val_items), AnomalyMapNet(net), score_method="mean", val_handlers=[fitter]
    )
    trainer = ReconstructionTrainer("cpu", max_epochs, _loader(train_items), net, opt)
    save_dict = {"network": net, "optimizer": opt, "trainer": trainer, "threshold": fitter}
    ValidationHandler(interval=1, validator=evaluator).attach(trainer)  # before the saver: threshold of the epoch
    CheckpointSaver(str(ckpt_dir), save_dict, save_interval=1, epoch_level=True).attach(trainer)
    return trainer, evaluator, net, fitter, save_dict


def test_checkpoint_and_resume_continue_from_the_right_epoch(tmp_path):
    train_items = brain_like(16, seed=1)
    val_items = brain_like(4, seed=2) + brain_like(4, anomalous=True, seed=3)

    # reference: two uninterrupted epochs
    ref_trainer, ref_eval, ref_net, ref_fitter, _ = _pipeline(0, 2, tmp_path / "ref", train_items, val_items)
    ref_trainer.run()
    assert ref_trainer.state.epoch == 2
    assert ref_fitter.threshold is not None and ref_fitter.threshold.split == "val"
    assert math.isfinite(ref_eval.state.metrics["val_normal_loss"])

    # interrupted run: one epoch, checkpoint written
    ckpt_dir = tmp_path / "run"
    first, _, _, first_fitter, _ = _pipeline(0, 1, ckpt_dir, train_items, val_items)
    first.run()
    latest = find_latest_checkpoint(ckpt_dir)
    assert latest is not None and os.path.basename(latest) == "checkpoint_epoch=1.pt"
    saved = torch.load(latest, weights_only=True)
    assert set(saved) == {"network", "optimizer", "trainer", "threshold"}
    assert saved["threshold"]["threshold"]["value"] == pytest.approx(first_fitter.threshold.value)

    # resume in fresh objects (different initial weights) up to epoch 2
    trainer, _, net, fitter, save_dict = _pipeline(123, 2, ckpt_dir, train_items, val_items)
    assert resume_if_exists(trainer, ckpt_dir, save_dict) == latest
    seen = {}

    def _after_load(engine):
        seen["epoch"] = engine.state.epoch
        seen["same_weights"] = all(torch.equal(v, saved["network"][k]) for k, v in net.state_dict().items())
        seen["threshold"] = fitter.threshold.value

    trainer.add_event_handler(Events.STARTED, _after_load)  # after the loader, which was attached first
    trainer.run()
    assert seen == {"epoch": 1, "same_weights": True, "threshold": pytest.approx(first_fitter.threshold.value)}
    assert trainer.state.epoch == 2 and trainer.state.iteration == 8
    # identical to the uninterrupted run
    for k, v in net.state_dict().items():
        assert torch.allclose(v, ref_net.state_dict()[k], atol=1e-6), k
    assert fitter.threshold.value == pytest.approx(ref_fitter.threshold.value, rel=1e-5)
    assert os.path.basename(find_latest_checkpoint(ckpt_dir)) == "checkpoint_epoch=2.pt"
