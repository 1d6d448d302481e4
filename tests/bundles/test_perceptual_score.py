"""The perceptual score (map_method "perceptual", from a feature network the user gives at training): trained,
evaluated and served by infer without the weight file, which model.pt carries; the same slice scores both ways."""

from __future__ import annotations

import csv
import json
import shutil

import torch
from monai.networks.nets import resnet18

from monai_anomaly.cli import AnomalyCLI, sample_data_dir

TINY = {"image_size": 32, "channels": [8, 16], "strides": [2, 2], "latent_size": 8, "hidden_size": 32}


def test_perceptual_score_through_train_evaluate_and_infer(tmp_path):
    src = sample_data_dir()
    data = tmp_path / "data"
    for sub, files in (("normal", sorted((src / "normal").glob("*.png"))[:24]),
                       ("abnormal/glioma", sorted((src / "abnormal" / "glioma").glob("*.png"))[:8])):  # fmt: skip
        (data / sub).mkdir(parents=True)
        for f in files:
            shutil.copy(f, data / sub / f.name)
    torch.manual_seed(0)
    weights = tmp_path / "classifier.pt"
    torch.save({"model": resnet18(spatial_dims=2, n_input_channels=1, num_classes=2).state_dict()}, weights)
    run = tmp_path / "run"
    AnomalyCLI().train(str(data), output_dir=str(run), max_epochs=2, batch_size=8, val_interval=1, num_workers=0,
                       map_method="perceptual", perceptual_score_weights=str(weights), **TINY)  # fmt: skip
    ckpt = torch.load(run / "models" / "model.pt", map_location="cpu", weights_only=True)
    assert ckpt["settings"]["map_method"] == "perceptual"
    assert any(k.startswith("perceptual.stages.layer1") for k in ckpt["model"])  # the feature network travels along
    weights.unlink()  # evaluate and infer need only model.pt
    AnomalyCLI().evaluate(str(data), output_dir=str(run))
    with open(run / "eval" / "detailed_results.csv", newline="") as f:
        evaluated = {r["path"]: float(r["score"]) for r in csv.DictReader(f) if r["score"]}
    assert evaluated and all(v > 0 for v in evaluated.values())
    scans = tmp_path / "scans"
    scans.mkdir()
    picked = sorted(evaluated)[:3]
    for p in picked:
        shutil.copy(p, scans / f"{len(list(scans.iterdir()))}_{p.split('/')[-1]}")
    AnomalyCLI().infer(str(scans), output_dir=str(tmp_path / "inf"), ckpt=str(run / "models" / "model.pt"))
    inferred = json.loads((tmp_path / "inf" / "scores.json").read_text())["scans"]
    got = sorted(float(s["volume_score"]) for s in inferred)
    assert got == [pytest_approx(v) for v in sorted(evaluated[p] for p in picked)]


def pytest_approx(v):
    import pytest

    return pytest.approx(v, rel=1e-4, abs=1e-6)
