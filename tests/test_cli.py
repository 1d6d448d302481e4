from __future__ import annotations

import os

import pytest

from monai_anomaly.cli import AnomalyCLI, find_bundle, sample_data_dir
from monai_anomaly.utils.cli_errors import UsageError


def test_sample_data_is_embedded():
    d = sample_data_dir()
    vols = d / "volumes"
    assert (vols / "manifest.csv").is_file() and "SYNTHETIC" in (vols / "README.md").read_text()
    assert len(list(vols.glob("*.nii.gz"))) == 4  # two healthy IXI volumes, the synthetic-lesion copy, its mask
    assert (d / "labels.csv").is_file() and (d / "ATTRIBUTION.md").is_file()
    assert len(list((d / "normal").glob("*.png"))) == 200
    assert len(list((d / "abnormal").glob("*/*.png"))) == 100


def test_find_bundle_by_name_and_clear_error(tmp_path):
    root = find_bundle("autoencoder_anomaly")
    assert (root / "configs" / "metadata.json").is_file()
    assert "autoencoder_anomaly" in AnomalyCLI().bundles()
    with pytest.raises(FileNotFoundError, match="no bundle 'nope'.*autoencoder_anomaly"):
        find_bundle("nope")


def test_outputs_are_not_overwritten(tmp_path):
    from monai_anomaly.utils.outputs import INFER, OutputNotOursError, claim_output

    run = tmp_path / "run"
    (run / "models").mkdir(parents=True)
    (run / "models" / "model.pt").write_bytes(b"x")
    with pytest.raises(FileExistsError, match="--resume .* --overwrite"):
        AnomalyCLI().train(str(tmp_path / "data"), output_dir=str(run))
    with pytest.raises(UsageError, match="give one of them"):
        AnomalyCLI().train(str(tmp_path / "data"), output_dir=str(run), resume=True, overwrite=True)
    with pytest.raises(UsageError, match="give one of them"):
        AnomalyCLI().train(str(tmp_path / "data"), output_dir=str(run), resume="yes", overwrite="TRUE")
    assert (run / "models" / "model.pt").read_bytes() == b"x"
    with pytest.raises(OutputNotOursError, match="not a monai_anomaly demo"):
        AnomalyCLI().demo(output_dir=str(run))
    # --overwrite only ever deletes files monai_anomaly wrote, never a folder of other files
    other = tmp_path / "papers"
    other.mkdir()
    (other / "thesis.txt").write_text("keep me")
    for overwrite in (False, True):
        with pytest.raises(OutputNotOursError, match="not a monai_anomaly inference result.*thesis.txt"):
            claim_output(other, INFER, overwrite=overwrite)
        with pytest.raises(OutputNotOursError, match="not a monai_anomaly demo"):
            AnomalyCLI().demo(output_dir=str(other), overwrite=overwrite)
    assert (other / "thesis.txt").read_text() == "keep me" and sorted(os.listdir(other)) == ["thesis.txt"]


def test_output_inside_the_input_folder_is_refused(tmp_path):
    (tmp_path / "data" / "normal").mkdir(parents=True)
    with pytest.raises(UsageError, match="inside the input folder"):
        AnomalyCLI().train(str(tmp_path / "data"), output_dir=str(tmp_path / "data" / "run"))


def test_infer_overwrite_replaces_the_whole_earlier_result(tiny_trained_bundle, tmp_path):
    import json

    scans = tmp_path / "scans"
    scans.mkdir()
    src = sorted((sample_data_dir() / "abnormal" / "glioma").glob("*.png"))[:2]
    for f in src:
        (scans / f.name).write_bytes(f.read_bytes())
    out = tmp_path / "out"
    (out / "maps").mkdir(parents=True)
    for f in ("scores.json", "detailed_results.csv", "volume_results.csv", "anomaly_report.txt"):
        (out / f).write_text("{}")  # an earlier version's result (no marker): recognised by its full set of files
    (out / "maps" / "old_scan_anomaly_map.nii.gz").write_bytes(b"stale")
    ckpt = str(tiny_trained_bundle / "models" / "model.pt")
    with pytest.raises(FileExistsError, match="--overwrite"):
        AnomalyCLI().infer(str(scans), output_dir=str(out), ckpt=ckpt)
    assert (out / "scores.json").read_text() == "{}"
    AnomalyCLI().infer(str(scans), output_dir=str(out), ckpt=ckpt, overwrite=True)
    assert not (out / "maps" / "old_scan_anomaly_map.nii.gz").exists()  # no stale map beside the new CSV
    assert len(json.loads((out / "scores.json").read_text())["scans"]) == 2
    # the files the help text names are the files written
    for name in ("detailed_results.csv", "volume_results.csv", "scores.json", "anomaly_report.txt"):
        assert (out / name).is_file() and name in AnomalyCLI.infer.__doc__, name


def test_demo_writes_a_report_from_the_embedded_sample(tmp_path):
    """The README's first command, shrunk (tiny network, two epochs) so it runs in seconds."""
    import json

    from monai_anomaly.cli import main

    out = tmp_path / "demo"
    main(
        [
            "demo",
            "--output_dir",
            str(out),
            "--max_epochs",
            "2",
            "--image_size",
            "32",
            "--channels",
            "[8,16]",
            "--strides",
            "[2,2]",
            "--val_interval",
            "1",
        ]
    )
    ev = out / "eval"
    for f in ("anomaly_report.txt", "metrics.json", "detailed_results.csv", "roc_curve.png", "top_anomaly_1.png"):
        assert (ev / f).is_file(), f
    metrics = json.loads((ev / "metrics.json").read_text())
    assert metrics["slice"]["metrics"]["n_normal"] > 0 and metrics["slice"]["metrics"]["n_anomalous"] > 0
    assert metrics["run_info"]["intensity_mode"] == "percentile"  # MRI volumes: per-volume percentiles
    assert (out / "models" / "model.pt").is_file()
    # whole scans: a healthy volume and its synthetic-lesion copy, NIfTI heatmaps on the scans' own grid
    import nibabel as nib

    scans = {s["volume_id"]: s for s in json.loads((out / "infer" / "scores.json").read_text())["scans"]}
    assert set(scans) == {"IXI015-HH-1258_T1", "IXI015-HH-1258_T1_SYNTHETIC_LESION"}
    for sc in scans.values():
        heat = nib.load(sc["anomaly_map"])
        assert heat.shape == nib.load(sc["path"]).shape == (90, 120, 52)
        assert sc["prediction"] in ("normal", "anomalous") and sc["scored_slices"]


def test_train_overwrite_deletes_the_earlier_run(tmp_path):
    """`train --overwrite` removes the old checkpoints and logs, so a later --resume cannot continue the old run."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("_tests_conftest_cli", Path(__file__).with_name("conftest.py"))
    conf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conf)
    TINY_SETTINGS, make_tiny_sample = conf.TINY_SETTINGS, conf.make_tiny_sample
    data = make_tiny_sample(tmp_path / "data", n_normal=12, n_abnormal=4)
    run = tmp_path / "run"
    (run / "models").mkdir(parents=True)
    (run / "models" / "model.pt").write_bytes(b"old")  # an earlier version's run: recognised by its model.pt
    (run / "models" / "checkpoint_epoch=40.pt").write_bytes(b"old")
    (run / "logs").mkdir()
    (run / "logs" / "events.out.tfevents.old").write_bytes(b"old")
    (run / "notes.txt").write_text("mine")
    AnomalyCLI().train(str(data), output_dir=str(run), overwrite=True, max_epochs=1, batch_size=4, **TINY_SETTINGS)
    assert not (run / "models" / "checkpoint_epoch=40.pt").exists()
    assert not (run / "logs" / "events.out.tfevents.old").exists()
    assert (run / "models" / "model.pt").is_file() and (run / "models" / "checkpoint_epoch=1.pt").is_file()
    assert (run / "notes.txt").read_text() == "mine"  # only the run's own files are replaced


def test_boolean_words_reach_the_bundle_as_booleans(monkeypatch):
    """``--quality false`` must switch quality off: a config reading the text "false" would take it as true."""
    import monai.bundle

    from monai_anomaly.cli import run_bundle

    seen = {}
    monkeypatch.setattr(monai.bundle, "run", lambda **kw: seen.update(kw))
    run_bundle("autoencoder_anomaly", ["train.json"], quality="false", overwrite="True", layout="auto", max_epochs=3)
    assert seen["quality"] is False and seen["overwrite"] is True
    assert seen["layout"] == "auto" and seen["max_epochs"] == 3
    # JSON's true inside a dict option, as the command line parser leaves it (the text "true"): a boolean too, or the
    # refiner would train with condition "true" and evaluate would refuse the saved setting
    import fire

    options = fire.parser.DefaultParseValue('{"t0": 250, "condition": true}')
    assert options["condition"] == "true"
    run_bundle("diffusion_refined_anomaly", ["train.json"], diffusion_options=options)
    assert seen["diffusion_options"] == {"t0": 250, "condition": True}


def test_evaluate_draws_the_confusion_matrix_and_the_runs_own_training_curves(tiny_trained_bundle, tmp_path):
    """`evaluate` reads the training run's logs (``<output_dir>/logs``), never its own (``<eval_dir>/logs``); a
    checkpoint without its training logs gets a report without training_curves.png."""
    import json
    import shutil

    import numpy as np
    from PIL import Image

    bundle, data = tiny_trained_bundle, tiny_trained_bundle.parent / "data"
    ev = tmp_path / "eval"
    AnomalyCLI().evaluate(str(data), output_dir=str(bundle), bundle=str(bundle), eval_dir=str(ev))
    for name in ("confusion_matrix.png", "training_curves.png"):
        with Image.open(ev / name) as im:
            assert im.format == "PNG" and im.size == (1000, 400), name  # two panels each
            assert len(np.unique(np.asarray(im.convert("RGB")).reshape(-1, 3), axis=0)) > 10, name
    metrics = json.loads((ev / "metrics.json").read_text())
    assert {"confusion_matrix.png", "training_curves.png"} <= set(metrics["files"])
    assert metrics["training_logs"]["log_dir"] == str(bundle / "logs")
    assert metrics["training_logs"]["tags"]["train_loss"] == ["train_loss"]
    assert "val_normal_loss" in metrics["training_logs"]["tags"]["val_loss"]
    assert list((ev / "logs").glob("events.out.tfevents*"))  # the evaluation's own scalars, left out above
    # --overwrite replaces the new figures too (they are report files of ours)
    AnomalyCLI().evaluate(str(data), output_dir=str(bundle), bundle=str(bundle), eval_dir=str(ev), overwrite=True)
    assert (ev / "training_curves.png").is_file()

    elsewhere = tmp_path / "elsewhere"  # a checkpoint copied without its training run's logs
    (elsewhere / "models").mkdir(parents=True)
    shutil.copy(bundle / "models" / "model.pt", elsewhere / "models" / "model.pt")
    AnomalyCLI().evaluate(str(data), output_dir=str(elsewhere), bundle=str(bundle))
    assert (elsewhere / "eval" / "confusion_matrix.png").is_file()
    assert not (elsewhere / "eval" / "training_curves.png").exists()
    metrics = json.loads((elsewhere / "eval" / "metrics.json").read_text())
    assert "training_curves.png" not in metrics["files"] and metrics["training_logs"]["not_drawn"]
