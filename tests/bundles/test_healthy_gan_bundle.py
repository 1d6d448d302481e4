"""The healthy-translation GAN through the bundle and the CLI: trained on known-healthy + unannotated mixed images,
checkpoint chosen by AUCp, evaluated inductively and transductively, served by inference, resumed."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from monai_anomaly.cli import AnomalyCLI, sample_data_dir

BUNDLE = "healthy_gan_anomaly"
TINY = {
    "image_size": 32,
    "channels": [8, 8, 16, 32, 64, 8],
    "critic_channels": [8, 16, 32],
    "batch_size": 8,
    "val_interval": 1,
}


def _brainomaly_layout(dst: Path) -> Path:
    """A Brainomaly-style folder from the embedded sample: train/{neg, neg_mixed, pos}, test/{neg, pos}."""
    src = sample_data_dir()
    normals = sorted((src / "normal").glob("*.png"))
    tumours = sorted((src / "abnormal").glob("*/*.png"))

    def put(files, sub, prefix):
        (dst / sub).mkdir(parents=True)
        for i, f in enumerate(files):
            shutil.copy(f, dst / sub / f"{prefix}{i // 4:03d}__{i % 4:03d}.png")

    put(normals[:32], "train/neg", "n")
    put(normals[32:48], "train/neg_mixed", "m")
    put(tumours[:16], "train/pos", "p")
    put(normals[48:64], "test/neg", "tn")
    put(tumours[16:32], "test/pos", "tp")
    return dst


@pytest.fixture(scope="module")
def gan_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("gan")
    data = _brainomaly_layout(root / "data")
    out = root / "run"
    import os
    import subprocess
    import sys

    argv = ["train", str(data), "--output_dir", str(out), "--bundle", BUNDLE, "--max_epochs", "3"]
    for k, v in TINY.items():
        argv += [f"--{k}", json.dumps(v)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    res = subprocess.run([sys.executable, "-m", "monai_anomaly", *argv], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    records = [res.stdout + res.stderr]
    return data, out, "\n".join(records)


def test_gan_trains_with_the_mixed_set_and_selects_the_checkpoint_by_aucp(gan_run):
    data, out, log = gan_run
    aucp = [float(x) for x in re.findall(r"Metrics -- .*?val_aucp: ([0-9.]+)", log)]
    true = [float(x) for x in re.findall(r"Metrics -- .*?val_mixed_auroc: ([0-9.]+)", log)]
    assert len(aucp) == 3 and len(true) == 3  # both logged at every validation; the true AUROC only reported
    # the key metric is AUCp per subject (the files' <subject>__NNN stems: 4 slices each), the slice level beside it
    per_slice = [float(x) for x in re.findall(r"Metrics -- .*?val_aucp_slice: ([0-9.]+)", log)]
    assert len(per_slice) == 3
    ckpt = torch.load(out / "models" / "model.pt", map_location="cpu", weights_only=True)
    assert ckpt["settings"]["model_type"] == "healthy_gan"
    assert any(k.startswith("model.generator.unet") for k in ckpt["model"])
    best = max(range(3), key=lambda i: (aucp[i], -i)) + 1  # the first epoch reaching the best AUCp
    chosen = re.findall(r"Key metric: val_aucp best value: [0-9.]+ at epoch: (\d+)", log)
    assert chosen and int(chosen[-1]) == best
    saved = sorted(p.name for p in (out / "models").glob("checkpoint_epoch=*.pt"))
    assert saved == ["checkpoint_epoch=2.pt", "checkpoint_epoch=3.pt"]
    last = torch.load(out / "models" / "checkpoint_epoch=3.pt", map_location="cpu", weights_only=True)
    assert {"model", "critic", "optimizer", "critic_optimizer", "trainer"} <= set(last)


def test_gan_evaluates_inductively_and_transductively(gan_run):
    data, out, _ = gan_run
    AnomalyCLI().evaluate(str(data), output_dir=str(out), bundle=BUNDLE)
    ind = json.loads((out / "eval" / "metrics.json").read_text())
    assert ind["run_info"]["eval_mode"] == "inductive" and ind["run_info"]["model_type"] == "healthy_gan"
    assert (ind["slice"]["metrics"]["n_normal"], ind["slice"]["metrics"]["n_anomalous"]) == (16, 16)  # test/
    AnomalyCLI().evaluate(
        str(data), output_dir=str(out), bundle=BUNDLE, eval_mode="transductive", eval_dir=str(out / "t")
    )
    tr = json.loads((out / "t" / "metrics.json").read_text())
    assert (tr["slice"]["metrics"]["n_normal"], tr["slice"]["metrics"]["n_anomalous"]) == (16, 16)  # neg_mixed, pos
    assert "transductive" in tr["run_info"]["split"]
    # AUCp at test time, with no label used: the known-normal validation slices / subjects against the evaluated set
    for m in (ind, tr):
        assert 0.0 <= m["aucp"]["slice"]["value"] <= 1.0 and m["aucp"]["slice"]["n_evaluated"] == 32
        subject = m["aucp"]["subject"]
        assert subject["n_evaluated"] == 8  # 4 slices each
        # one known-normal validation subject: a rank AUC of 1 vs 8 moves in steps of 1/8, so it is refused with why
        assert subject["n_validation_normals"] == 1 and "too few scores" in subject["skipped"]
    assert "AUCp at test time" in (out / "t" / "anomaly_report.txt").read_text()


def test_gan_model_is_served_by_inference_with_its_settings(gan_run, tmp_path):
    data, out, _ = gan_run
    res = AnomalyCLI().infer(
        str(data / "test" / "pos"), output_dir=str(tmp_path / "inf"), ckpt=str(out / "models" / "model.pt")
    )
    scores = json.loads((Path(res) / "scores.json").read_text())
    assert len(scores["scans"]) == 16 and all(s["prediction"] in ("normal", "anomalous") for s in scores["scans"])


def test_gan_training_resumes_with_its_critic(gan_run, tmp_path):
    data, out, _ = gan_run
    run = tmp_path / "run"
    shutil.copytree(out / "models", run / "models")
    before = torch.load(run / "models" / "checkpoint_epoch=3.pt", weights_only=True)
    critic_before = before["critic"]
    AnomalyCLI().train(str(data), output_dir=str(run), bundle=BUNDLE, resume=True, max_epochs=4, **TINY)
    after = torch.load(run / "models" / "checkpoint_epoch=4.pt", weights_only=True)
    per_epoch = before["trainer"]["iteration"] // 3
    assert after["trainer"]["iteration"] == 4 * per_epoch  # continued from epoch 3, not from scratch
    assert set(after["critic"]) == set(critic_before)
    assert any(not torch.equal(after["critic"][k], critic_before[k]) for k in critic_before)  # trained on from there


def test_the_refiner_on_a_mixed_set_also_selects_its_checkpoint_by_aucp(gan_run, tmp_path):
    """Every method trained where a mixed set exists chooses its checkpoint by AUCp, not by the normals' loss."""
    from monai_anomaly.reports.training_logs import read_training_scalars

    data, out, _ = gan_run
    run = tmp_path / "refined"
    AnomalyCLI().train(
        str(data),
        output_dir=str(run),
        bundle="diffusion_refined_anomaly",
        max_epochs=1,
        image_size=32,
        channels=[8, 16],
        diffusion_options={"timesteps": 200, "schedule": "linear_beta", "t0": 50, "steps": 2, "seed": 0},
        batch_size=16,
        val_interval=1,
        coarse_ckpt=str(out / "models" / "model.pt"),
    )
    assert {"val_aucp", "val_aucp_slice", "val_normal_loss"} <= set(read_training_scalars(run / "logs"))
