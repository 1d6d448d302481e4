"""Every bundle in ``bundles/`` through MONAI's own bundle commands: metadata, config agreement, train, evaluate,
infer (PNG, NIfTI, DICOM series), resume, verify_net_in_out, ckpt_export and torchrun multi-process training.

The tests are parametrized over the bundle folders, so a new bundle is checked the moment it exists (its tiny
network sizes go in ``TINY_BY_BUNDLE`` of ``tests/conftest.py``)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import run

from monai_anomaly.utils.settings import AnomalyModelSettings

pytestmark = pytest.mark.bundle

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


def _module(path: Path, name: str):
    """A module loaded by path (tests/ and tools/ are not packages)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_CONF = _module(REPO / "tests" / "conftest.py", "_monai_anomaly_tests_conftest_b")
BUNDLES = _CONF.bundle_names()


def _cfg(name: str, bundle: Path) -> dict:
    return json.loads((bundle / "configs" / name).read_text())


def test_every_bundle_is_tested():
    """Every folder of bundles/ is a bundle the parametrized tests run (it has tiny sizes to train with)."""
    folders = {p.name for p in (REPO / "bundles").iterdir() if p.is_dir()}
    assert set(BUNDLES) == folders and set(_CONF.TINY_BY_BUNDLE) == folders, (folders, BUNDLES)
    for name in BUNDLES:
        for f in ("train.json", "evaluate.json", "inference.json", "metadata.json", "multi_gpu_train.json"):
            assert (REPO / "bundles" / name / "configs" / f).is_file(), (name, f)


def test_bundles_are_the_template_plus_their_method_folder():
    """Every bundle's configs are generated from tools/bundle_template and its method/ folder; an edit to either
    (or to AnomalyModelSettings) without regenerating them (``python tools/make_method_bundles.py``) fails here."""
    tool = _module(REPO / "tools" / "make_method_bundles.py", "_make_method_bundles")
    assert tool.bundle_names() == BUNDLES  # every bundle has a method folder
    for name in BUNDLES:
        for rel, text in tool.build(name).items():
            assert (REPO / "bundles" / name / rel).read_text() == text, f"bundles/{name}/{rel} is out of date"
        variant = json.loads((REPO / "bundles" / name / "method" / "variant.json").read_text())
        assert not [k for k in variant if "handlers#" in k], "override handlers by id, not by list position"
    template = json.loads((REPO / "tools" / "bundle_template" / "configs" / "train.json").read_text())
    assert "trainer" not in template["train"] and "loss" not in template  # method-neutral: each method brings its own
    assert not set(AnomalyModelSettings.names()) & set(template)  # the settings' ids are generated from the dataclass
    gan = _cfg("train.json", REPO / "bundles" / "healthy_gan_anomaly")
    ae = _cfg("train.json", REPO / "bundles" / "autoencoder_anomaly")
    assert gan["preprocessing"] == ae["preprocessing"] and gan["threshold_fitter"] == ae["threshold_fitter"]
    assert gan["train"]["trainer"]["_target_"].endswith("HealthyGANTrainer")


def _bundle_cmd(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    out = subprocess.run(
        [sys.executable, "-m", "monai.bundle", *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


@pytest.mark.parametrize("name", BUNDLES)
def test_layout_and_metadata_verify_offline(name):
    bundle = REPO / "bundles" / name
    for f in (
        "LICENSE",
        "configs/metadata.json",
        "configs/train.json",
        "configs/evaluate.json",
        "configs/inference.json",
        "configs/multi_gpu_train.json",
        "configs/logging.conf",
        "docs/README.md",
    ):
        assert (bundle / f).is_file(), f
    meta = _cfg("metadata.json", bundle)
    assert meta["version"] in meta["changelog"]
    assert "## Benchmark" in (bundle / "docs" / "README.md").read_text()
    _bundle_cmd(
        "verify_metadata", "--meta_file", "configs/metadata.json", "--filepath", "../meta_schema.json", cwd=bundle
    )


@pytest.mark.parametrize("name", BUNDLES)
def test_configs_agree_with_each_other(name):
    """MONAI Label reads inference.json alone: it repeats train.json's network and preprocessing, which must match.

    inference.json takes the network and scoring settings from the checkpoint (``settings`` in model.pt) and falls
    back to its ``defaults``, which must be train.json's defaults, except for a setting added after checkpoints were
    first saved: a checkpoint without it was trained without it, so the fallback is its legacy value."""
    bundle = REPO / "bundles" / name
    train, infer = _cfg("train.json", bundle), _cfg("inference.json", bundle)
    for key in ("model_def", "network_def"):
        assert train[key] == infer[key], key
    saved = train["model_settings"]
    evaluate = _cfg("evaluate.json", bundle)
    assert infer["model_settings"] == saved
    ids = {name: cid for cid, name in AnomalyModelSettings.config_ids().items()}
    assert set(infer["defaults"]) == set(ids) == set(evaluate["saved_defaults"])
    for key, default in infer["defaults"].items():
        if key == "diffusion" and "diffusion_options" in train:  # the refiner: options + stage 1 from coarse_ckpt
            assert {k: v for k, v in default.items() if k != "coarse"} == train["diffusion_options"]
        elif key in AnomalyModelSettings.legacy():
            assert default == evaluate["saved_defaults"][key] == AnomalyModelSettings.legacy()[key], key
        else:
            assert train[key] == default == evaluate["saved_defaults"][key], key
        assert saved[key] == f"@{ids[key]}", key  # train.json saves it in model.pt
        assert infer[ids[key]] == f"$@settings.get('{key}', @defaults#{key})", key  # inference reads it back
        assert evaluate[ids[key]] == f"$@saved_settings.get('{key}', @saved_defaults#{key})", key  # and evaluate
    train_pre = [t for t in train["preprocessing"]["transforms"]]
    infer_pre = [t for t in infer["preprocessing"]["transforms"] if t["_target_"] != "SelectItemsd"]
    assert [t["_target_"] for t in train_pre] == [t["_target_"] for t in infer_pre]
    for a, b in zip(train_pre[1:], infer_pre[1:]):
        assert {k: v for k, v in a.items()} == {k: v for k, v in b.items()}
    for key in (
        "bundle_root",
        "device",
        "dataset_dir",
        "network_def",
        "preprocessing",
        "dataset",
        "inferer",
        "postprocessing",
        "handlers",
        "evaluator",
    ):
        assert key in infer, key


@pytest.mark.parametrize("name", BUNDLES)
def test_verify_net_in_out(name):
    _bundle_cmd(
        "verify_net_in_out",
        "network_def",
        "--meta_file",
        "configs/metadata.json",
        "--config_file",
        "configs/inference.json",
        cwd=REPO / "bundles" / name,
    )


def test_train_writes_checkpoints_with_threshold(trained_bundle):
    models = trained_bundle / "models"
    ckpt = torch.load(models / "model.pt", map_location="cpu", weights_only=True)
    assert set(ckpt) >= {"model", "threshold"}
    assert any(k.startswith("model.") for k in ckpt["model"])
    assert ckpt["threshold"]["split"] == "val"
    # map_normalisation "auto" is resolved at training and saved: the tiny sample is PNG files, so the autoencoder
    # divides each map by the image's detail energy; the other bundles keep the raw map
    want = "complexity" if trained_bundle.name == "autoencoder_anomaly" else "none"
    assert ckpt["settings"]["map_normalisation"] == want
    last = sorted(models.glob("checkpoint_epoch=*.pt"))  # the last two epochs: a truncated newest one has a fallback
    assert [p.name for p in last] == ["checkpoint_epoch=1.pt", "checkpoint_epoch=2.pt"]
    assert set(torch.load(last[0], map_location="cpu", weights_only=True)) >= {"model", "optimizer", "trainer"}
    assert list((trained_bundle / "logs").glob("events.out.tfevents*"))


def test_evaluate_writes_full_report(trained_bundle, tmp_path):
    bundle = trained_bundle
    run(
        meta_file=str(bundle / "configs" / "metadata.json"),
        config_file=[str(bundle / "configs" / "train.json"), str(bundle / "configs" / "evaluate.json")],
        bundle_root=str(bundle),
        dataset_dir=str(bundle.parent / "data"),
        output_dir=str(bundle),
        eval_dir=str(tmp_path / "eval"),
    )
    ev = tmp_path / "eval"
    for f in (
        "detailed_results.csv",
        "volume_results.csv",
        "metrics.json",
        "anomaly_report.txt",
        "roc_curve.png",
        "pr_curve.png",
        "score_distribution.png",
        "top_anomaly_1.png",
    ):
        assert (ev / f).is_file(), f
    metrics = json.loads((ev / "metrics.json").read_text())
    assert 0.0 <= metrics["slice"]["metrics"]["auroc"] <= 1.0
    assert metrics["threshold"]["split"] == "val"
    assert metrics["run_info"]["bundle"] == bundle.name  # every generated bundle once said autoencoder_anomaly
    fitted = torch.load(bundle / "models" / "model.pt", weights_only=True)["threshold"]["fitted_epoch"]
    assert metrics["run_info"]["model_epoch"] == fitted >= 1  # the checkpoint's epoch, not the evaluator's 1
    assert "epoch" not in metrics["run_info"]
    with open(ev / "detailed_results.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["label"] for r in rows} == {"0", "1"}  # held-out normals and tumours, no training image
    train_split = {r["path"] for r in rows}
    assert len(train_split) == len(rows)


def _nifti(path: Path) -> np.ndarray:
    rng = np.random.default_rng(0)
    vol = np.zeros((40, 36, 12), np.float32)
    yy, xx = np.mgrid[:40, :36]
    brain = ((yy - 20) ** 2 / 15**2 + (xx - 18) ** 2 / 13**2) < 1
    vol[brain] = 0.6 + 0.05 * rng.standard_normal((int(brain.sum()), 12)).astype(np.float32)
    vol[18:24, 15:21, 5:8] = 1.0  # a bright "lesion"
    affine = np.array([[-1.5, 0, 0, 30], [0, -1.5, 0, 25], [0, 0, 3.0, -10], [0, 0, 0, 1]])  # LPS-like: not RAS
    nib.save(nib.Nifti1Image(vol, affine), str(path))
    return affine


def _dicom_series(folder: Path, n: int = 6) -> None:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    folder.mkdir()
    series = generate_uid()
    for i in range(n):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(str(folder / f"{i}.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.SeriesInstanceUID, ds.StudyInstanceUID = "MR", series, generate_uid()
        ds.InstanceNumber, ds.Rows, ds.Columns = i + 1, 24, 24
        ds.ImagePositionPatient, ds.ImageOrientationPatient = [0, 0, 2.0 * i], [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing, ds.SliceThickness = [1.0, 1.0], 2.0
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        img = np.zeros((24, 24), np.uint16)
        img[4:20, 5:19] = 800 + 20 * i
        ds.PixelData = img.tobytes()
        ds.save_as(str(folder / f"{i}.dcm"), enforce_file_format=True)


def test_inference_on_png_nifti_and_dicom(trained_bundle, tmp_path):
    scans = tmp_path / "scans"
    scans.mkdir()
    affine = _nifti(scans / "case1.nii.gz")
    _dicom_series(scans / "series1")
    shutil.copy(next((trained_bundle.parent / "data" / "abnormal").glob("*/*.png")), scans / "slice.png")
    out = tmp_path / "infer"
    _bundle_cmd(
        "run",
        "--config_file",
        "configs/inference.json",
        "--input_path",
        str(scans),
        "--output_dir",
        str(out),
        cwd=trained_bundle,
    )
    with open(out / "volume_results.csv") as f:
        vols = {r["volume_id"]: r for r in csv.DictReader(f)}
    assert set(vols) >= {"case1", "slice"} and len(vols) == 3
    scores = json.loads((out / "scores.json").read_text())["scans"]
    by_id = {s["volume_id"]: s for s in scores}
    case = by_id["case1"]
    assert len(case["slice_scores"]) == 12 and np.isfinite(case["volume_score"])
    # top-5 % mean of the scored slices; slices with too little foreground are not scored (score 0)
    kept = np.asarray(case["slice_scores"])[case["scored_slices"]]
    top = np.sort(kept)[::-1][: max(1, int(np.ceil(0.05 * len(kept))))]
    assert case["volume_score"] == pytest.approx(float(top.mean()), rel=1e-5)
    assert all(case["slice_scores"][i] == 0.0 for i in range(12) if i not in case["scored_slices"])
    assert case["prediction"] in ("normal", "anomalous") and case["threshold"]["split"] == "val"
    heat = nib.load(case["anomaly_map"])
    assert heat.shape == (40, 36, 12)
    np.testing.assert_allclose(heat.affine, affine, atol=1e-4)
    dicom = next(s for s in scores if s["volume_id"] not in ("case1", "slice"))
    assert nib.load(dicom["anomaly_map"]).shape == (24, 24, 6)
    assert len(dicom["slice_scores"]) == 6
    assert Path(by_id["slice"]["heatmap"]).is_file()
    with open(out / "detailed_results.csv") as f:
        assert sum(1 for _ in csv.DictReader(f)) == sum(len(s["scored_slices"]) for s in scores)
    # outputs are never overwritten unless asked
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "monai.bundle",
            "run",
            "--config_file",
            "configs/inference.json",
            "--input_path",
            str(scans),
            "--output_dir",
            str(out),
        ],
        cwd=trained_bundle,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode != 0 and "overwrite" in (res.stdout + res.stderr)


def test_resume_continues_from_last_epoch(trained_bundle, tmp_path):
    bundle = tmp_path / "b"
    shutil.copytree(trained_bundle, bundle)
    last = bundle / "models" / "checkpoint_epoch=2.pt"
    before = last.read_bytes()

    def train(max_epochs):
        run(
            meta_file=str(bundle / "configs" / "metadata.json"),
            config_file=str(bundle / "configs" / "train.json"),
            bundle_root=str(bundle),
            dataset_dir=str(trained_bundle.parent / "data"),
            output_dir=str(bundle),
            max_epochs=max_epochs,
            batch_size=16,
            resume=True,
        )

    train(2)  # already at epoch 2: resuming trains nothing and saves nothing new
    assert last.read_bytes() == before
    assert not (bundle / "models" / "checkpoint_epoch=3.pt").exists()
    train(3)  # one more epoch, starting from the saved state
    ckpt = torch.load(bundle / "models" / "checkpoint_epoch=3.pt", map_location="cpu", weights_only=True)
    first = torch.load(last, map_location="cpu", weights_only=True)
    assert ckpt["trainer"]["max_epochs"] == 3
    assert ckpt["trainer"]["iteration"] == first["trainer"]["iteration"] * 3 // 2


def test_multi_gpu_train_runs_with_torchrun_on_cpu(trained_bundle, tmp_path):
    out = tmp_path / "mg"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--nnodes=1",
        "-m",
        "monai.bundle",
        "run",
        "--config_file",
        "['configs/train.json','configs/multi_gpu_train.json']",
        "--meta_file",
        "configs/metadata.json",
        "--bundle_root",
        ".",
        "--dataset_dir",
        str(trained_bundle.parent / "data"),
        "--output_dir",
        str(out),
        "--max_epochs",
        "1",
        "--batch_size",
        "8",
    ]
    res = subprocess.run(cmd, cwd=trained_bundle, env=ENV, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert (out / "models" / "model.pt").is_file() and (out / "models" / "checkpoint_epoch=1.pt").is_file()


@pytest.mark.parametrize("trained_bundle", ["autoencoder_anomaly"], indirect=True)  # only its option
def test_vae_variant_trains_and_infers_through_the_same_configs(trained_bundle, tmp_path):
    bundle = tmp_path / "vae"
    shutil.copytree(trained_bundle, bundle, ignore=shutil.ignore_patterns("models", "logs", "eval"))
    run(
        meta_file=str(bundle / "configs" / "metadata.json"),
        config_file=str(bundle / "configs" / "train.json"),
        bundle_root=str(bundle),
        dataset_dir=str(trained_bundle.parent / "data"),
        output_dir=str(bundle),
        max_epochs=1,
        batch_size=16,
        model_type="vae",
    )
    state = torch.load(bundle / "models" / "model.pt", map_location="cpu", weights_only=True)["model"]
    assert any("mu" in k for k in state)  # the VAE's mean head was trained and saved
    scans = tmp_path / "scans"
    scans.mkdir()
    _nifti(scans / "case1.nii.gz")
    _bundle_cmd(
        "run",
        "--config_file",
        "configs/inference.json",
        "--model_type",
        "vae",
        "--input_path",
        str(scans),
        "--output_dir",
        str(tmp_path / "out"),
        cwd=bundle,
    )
    result = json.loads((tmp_path / "out" / "scores.json").read_text())["scans"][0]
    assert len(result["slice_scores"]) == 12 and np.isfinite(result["volume_score"])
