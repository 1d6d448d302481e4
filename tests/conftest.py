"""Shared fixtures: the path of ../shared/data (tests that use it skip when it is absent)."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

_REPO = Path(__file__).resolve().parents[1]


def _shared_data_dir() -> Path | None:
    env = os.environ.get("MONAI_ANOMALY_SHARED_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(_REPO.parent / "shared" / "data")
    for c in candidates:
        if c.is_dir():
            return c
    return None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the repository; skips the test when it is absent (a user's clone has none)."""
    d = _shared_data_dir()
    if d is None:
        pytest.skip("../shared/data is not present")
    return d


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return _REPO


TINY_SETTINGS = {
    "image_size": 32,
    "channels": [8, 16],
    "strides": [2, 2],
    "latent_size": 16,
    "hidden_size": 32,
    "val_interval": 1,
}

# tiny network sizes per bundle (the autoencoder's are TINY_SETTINGS); a new bundle in bundles/ adds its entry here
TINY_BY_BUNDLE = {
    "autoencoder_anomaly": TINY_SETTINGS,
    "healthy_gan_anomaly": {
        "image_size": 32,
        "channels": [8, 8, 16, 32, 64, 8],
        "critic_channels": [8, 16, 32],
        "val_interval": 1,
    },
    "anoddpm_anomaly": {
        "image_size": 32,
        "channels": [8, 16],
        "diffusion": {"timesteps": 200, "schedule": "linear_beta", "t0": 50, "steps": 2, "seed": 0},
        "val_interval": 1,
    },
    "diffusion_refined_anomaly": {
        "image_size": 32,
        "channels": [8, 16],
        "diffusion_options": {
            "timesteps": 200,
            "schedule": "linear_beta",
            "t0": 50,
            "steps": 2,
            "seed": 0,
            "condition": True,
        },  # fmt: skip
        "val_interval": 1,
    },
    "cyclegan_anomaly": {
        "image_size": 32,
        "channels": [8, 16],
        "res_blocks": 1,
        "disc_channels": 8,
        "disc_layers": 2,
        "val_interval": 1,
    },
    "supervised_resnet18": {"image_size": 32, "val_interval": 1, "batch_size": 16},
}


def bundle_names() -> list[str]:
    """Every bundle folder in ``bundles/`` (the parametrized bundle tests run over all of them)."""
    return sorted(p.parent.parent.name for p in (_REPO / "bundles").glob("*/configs/metadata.json"))


def make_tiny_sample(dst: Path, n_normal: int = 40, n_abnormal: int = 20) -> Path:
    """A small copy of the embedded demo sample (normal/abnormal layout with its group column)."""
    import csv
    import shutil

    src = _REPO / "monai_anomaly" / "sample_data"
    with open(src / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    keep = [r for r in rows if r["label"] == "0"][:n_normal] + [r for r in rows if r["label"] == "1"][:n_abnormal]
    for r in keep:
        (dst / r["path"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src / r["path"], dst / r["path"])
    with open(dst / "labels.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(keep)
    return dst


def make_tiny_trained_bundle(dst: Path, max_epochs: int = 2, name: str = "autoencoder_anomaly") -> Path:
    """Copy bundle ``name`` to ``dst``, set tiny network sizes in its configs and train it for a few epochs on
    a small part of the embedded sample, so ``dst/models/model.pt`` exists (used by bundle and MONAI Label tests).

    ``name`` may name a variant config of the bundle after a colon (``"autoencoder_anomaly:aeu"`` merges
    ``configs/variants/aeu.json`` into train.json)."""
    import json
    import shutil

    from monai.bundle import run

    name, _, variant = name.partition(":")
    if name not in TINY_BY_BUNDLE:
        raise KeyError(f"bundles/{name} has no tiny settings: add them to TINY_BY_BUNDLE in tests/conftest.py")
    bundle = dst / name
    shutil.copytree(_REPO / "bundles" / name, bundle, ignore=shutil.ignore_patterns("models", "eval"))
    p = bundle / "configs" / "train.json"  # inference.json and evaluate.json read the settings from model.pt
    extra = json.loads((bundle / "configs" / "variants" / f"{variant}.json").read_text()) if variant else {}
    p.write_text(json.dumps({**json.loads(p.read_text()), **extra, **TINY_BY_BUNDLE[name]}, indent=4))
    data = make_tiny_sample(dst / "data")
    if name == "diffusion_refined_anomaly":  # stage 1: a tiny healthy-translation GAN, trained first
        stage1 = make_tiny_trained_bundle(dst / "stage1", max_epochs=1, name="healthy_gan_anomaly")
        p = bundle / "configs" / "train.json"
        p.write_text(json.dumps({**json.loads(p.read_text()), "coarse_ckpt": str(stage1 / "models" / "model.pt")}))
    run(
        meta_file=str(bundle / "configs" / "metadata.json"),
        config_file=str(bundle / "configs" / "train.json"),
        bundle_root=str(bundle),
        dataset_dir=str(data),
        output_dir=str(bundle),
        max_epochs=max_epochs,
        batch_size=16,
    )
    return bundle


@pytest.fixture(scope="session")
def tiny_trained_bundle(tmp_path_factory) -> Path:
    """The autoencoder bundle, shrunk and trained for two epochs (``models/model.pt`` inside)."""
    return make_tiny_trained_bundle(tmp_path_factory.mktemp("tiny_bundle"))
