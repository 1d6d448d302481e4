"""The CycleGAN through the bundle and the CLI: identity mode on normals, served by inference, resumed with its
discriminators and replay buffers."""

from __future__ import annotations

import json
import shutil

import torch

from monai_anomaly.cli import AnomalyCLI, sample_data_dir

CG = "variants/cyclegan.json"
TINY = {
    "image_size": 32,
    "channels": [8, 16],
    "res_blocks": 1,
    "disc_channels": 8,
    "disc_layers": 2,
    "batch_size": 8,
    "val_interval": 1,
}


def _sample(dst):
    src = sample_data_dir()
    for sub, files in (("normal", sorted((src / "normal").glob("*.png"))[:30]),
                       ("abnormal/glioma", sorted((src / "abnormal" / "glioma").glob("*.png"))[:10])):  # fmt: skip
        (dst / sub).mkdir(parents=True)
        for f in files:
            shutil.copy(f, dst / sub / f.name)
    return dst


def test_cyclegan_trains_evaluates_infers_and_resumes(tmp_path):
    data = _sample(tmp_path / "data")
    out = tmp_path / "run"
    AnomalyCLI().train(str(data), output_dir=str(out), config=CG, max_epochs=2, **TINY)
    ckpt = torch.load(out / "models" / "model.pt", map_location="cpu", weights_only=True)
    assert ckpt["settings"]["model_type"] == "cyclegan" and ckpt["settings"]["res_blocks"] == 1
    last = torch.load(out / "models" / "checkpoint_epoch=2.pt", map_location="cpu", weights_only=True)
    assert {"model", "to_a", "disc_a", "disc_b", "disc_a_optimizer", "disc_b_optimizer", "buffer_a", "buffer_b"} <= set(
        last
    )
    assert last["buffer_a"]["images"].shape[0] > 0  # the replay history is saved
    AnomalyCLI().evaluate(str(data), output_dir=str(out), config=CG)
    m = json.loads((out / "eval" / "metrics.json").read_text())
    assert m["run_info"]["model_type"] == "cyclegan" and m["slice"]["metrics"]["n_anomalous"] > 0
    inf = AnomalyCLI().infer(
        str(data / "abnormal" / "glioma"), output_dir=str(tmp_path / "inf"), ckpt=str(out / "models" / "model.pt")
    )
    assert len(json.loads((tmp_path / "inf" / "scores.json").read_text())["scans"]) == 10 and inf
    AnomalyCLI().train(str(data), output_dir=str(out), config=CG, resume=True, max_epochs=3, **TINY)
    after = torch.load(out / "models" / "checkpoint_epoch=3.pt", map_location="cpu", weights_only=True)
    assert after["trainer"]["iteration"] == 3 * (last["trainer"]["iteration"] // 2)
    assert any(not torch.equal(after["disc_b"][k], last["disc_b"][k]) for k in last["disc_b"])
