"""What must hold whatever the user or a file does: settings read from a checkpoint never run as code (in every door),
output folders are locked and cleaned on SIGTERM, checkpoints survive a full disk, and resumed runs keep only their
last two epoch checkpoints. The bad-input corpus (tests/bad_input_corpus.py) covers the CLI's refusals case by case;
these need a real process (signals, a second run, a small file system) or a door other than the CLI."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from bad_input_corpus import _nifti, _png, _volume, marker_path, planted_checkpoint  # noqa: E402

_REPO = Path(__file__).resolve().parents[1]
TINY = ["--image_size", "32", "--channels", "[8,16]", "--strides", "[2,2]", "--latent_size", "16",
        "--hidden_size", "32", "--val_interval", "1", "--batch_size", "16"]  # fmt: skip


def _make_tiny_sample(dst: Path, **kw) -> Path:
    """tests/conftest.py's sample maker, loaded by path (``import conftest`` may find tests/apps/conftest.py)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_reliability_conftest", Path(__file__).with_name("conftest.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.make_tiny_sample(dst, **kw)


def _cli(*argv: str, **popen) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(_REPO)}
    env.pop("MONAI_ANOMALY_DEBUG", None)
    return subprocess.Popen(
        [sys.executable, "-m", "monai_anomaly", *map(str, argv)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def _in_process(capsys, *argv: str) -> subprocess.CompletedProcess:
    """The CLI's ``main`` in this process, its exit status and what it printed."""
    import logging

    from monai_anomaly.cli import main

    # a bundle's logging.conf binds handlers to the sys.stderr of the run that read it: an earlier test's captured
    # stream, closed since; such handlers are dropped (a real process starts with none)
    for log in [logging.getLogger(), *(logging.getLogger(n) for n in list(logging.root.manager.loggerDict))]:
        for h in list(log.handlers):
            if isinstance(h, logging.StreamHandler) and getattr(h.stream, "closed", False):
                log.removeHandler(h)
    capsys.readouterr()
    code = 0
    try:
        main([str(a) for a in argv])
    except SystemExit as e:
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(argv, code, out, err)


@pytest.mark.parametrize("field", ["all", "_target_"])
def test_planted_settings_never_run_through_the_bundle_and_monai_label_doors(tiny_trained_bundle, tmp_path, field):
    """``python -m monai.bundle run`` with inference.json and the MONAI Label runner read model.pt's settings too."""
    from monai.bundle import run

    from monai_anomaly.apps.monailabel.lib.runner import AnomalyBundleRunner

    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_trained_bundle, bundle, ignore=shutil.ignore_patterns("logs", "eval", "infer"))
    planted_checkpoint(tiny_trained_bundle / "models" / "model.pt", bundle / "models" / "model.pt", tmp_path, field)
    scan = _png(tmp_path / "scan.png", np.random.default_rng(0))
    from monai_anomaly.utils.cli_errors import root_cause

    with pytest.raises(Exception) as err:
        run(
            config_file=str(bundle / "configs" / "inference.json"),
            meta_file=str(bundle / "configs" / "metadata.json"),
            bundle_root=str(bundle),
            input_path=str(scan),
            output_dir=str(tmp_path / "out"),
        )
    assert "invalid saved setting" in str(root_cause(err.value))  # MONAI wraps it; the cause names the setting
    assert not marker_path(tmp_path).exists()
    with pytest.raises(Exception) as err:
        AnomalyBundleRunner(bundle)(str(scan))
    assert "invalid saved setting" in str(root_cause(err.value))
    assert not marker_path(tmp_path).exists()


def _many_scans(folder: Path, n: int, shape=(64, 64, 24)) -> Path:
    rng = np.random.default_rng(0)
    for i in range(n):
        _nifti(folder / f"scan_{i:03d}.nii.gz", _volume(rng, shape))
    return folder


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120, pattern: str | None = None) -> None:
    """Wait until ``path`` exists (or, with ``pattern``, until a file matching it exists in the folder ``path``)."""
    t0 = time.time()
    while not (path.exists() and (pattern is None or any(path.glob(pattern)))):
        if proc.poll() is not None:
            pytest.fail(f"the run ended before {path} appeared: {proc.stderr.read()[-2000:]}")
        if time.time() - t0 > timeout:
            proc.kill()
            pytest.fail(f"{path} did not appear")
        time.sleep(0.01)


def _infer_stopped_mid_run(bundle: Path, tmp_path: Path, sig: int):
    """Start ``infer`` on 16 volumes and send ``sig`` once it has written its first map."""
    scans = _many_scans(tmp_path / "scans", 16, shape=(48, 48, 16))
    out = tmp_path / "out"
    ckpt = bundle / "models" / "model.pt"
    proc = _cli("infer", scans, "--ckpt", ckpt, "--output_dir", out)
    # the first finished map, not the maps/ folder: a run killed before any file holds no result to protect
    _wait_for(out / "maps", proc, pattern="*_anomaly_map.nii.gz")
    proc.send_signal(sig)
    return scans, out, ckpt, proc


@pytest.mark.skipif(not hasattr(signal, "SIGTERM"), reason="needs SIGTERM")
def test_sigterm_cleans_up_like_ctrl_c(tiny_trained_bundle, tmp_path, capsys):
    """A terminated infer removes what it wrote (no maps/ left that --overwrite would refuse); a rerun works."""
    scans, out, ckpt, proc = _infer_stopped_mid_run(tiny_trained_bundle, tmp_path, signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    assert "terminated" in err and "Traceback" not in err
    assert not out.exists()  # the folder this run created is gone, lock and marker included
    res = _in_process(capsys, "infer", scans, "--ckpt", ckpt, "--output_dir", out)
    assert res.returncode == 0, res.stderr[-2000:]
    assert len(json.loads((out / "scores.json").read_text())["scans"]) == 16


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_killed_infer_leaves_a_folder_that_a_rerun_can_replace(tiny_trained_bundle, tmp_path, capsys):
    """SIGKILL allows no clean-up: the marker written first still says the folder is ours and unfinished."""
    scans, out, ckpt, proc = _infer_stopped_mid_run(tiny_trained_bundle, tmp_path, signal.SIGKILL)
    proc.communicate(timeout=60)
    marker = json.loads((out / ".monai_anomaly").read_text())
    assert marker["command"] == "infer" and marker["complete"] is False
    again = _in_process(capsys, "infer", scans, "--ckpt", ckpt, "--output_dir", out)
    assert again.returncode == 2 and "did not finish" in again.stderr, again.stderr[-2000:]
    again = _in_process(capsys, "infer", scans, "--ckpt", ckpt, "--output_dir", out, "--overwrite", "true")
    assert again.returncode == 0, again.stderr[-2000:]
    assert len(json.loads((out / "scores.json").read_text())["scans"]) == 16
    assert json.loads((out / ".monai_anomaly").read_text())["complete"] is True


@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="needs SIGSTOP")
def test_a_second_run_into_a_busy_folder_is_refused(tiny_trained_bundle, tmp_path, capsys):
    """Run A is frozen right after it took its folder; B must not write there, and A's result stays A's alone."""
    scans_a = _many_scans(tmp_path / "a", 4)
    scans_b = _many_scans(tmp_path / "b", 6, shape=(32, 32, 8))
    out = tmp_path / "out"
    ckpt = tiny_trained_bundle / "models" / "model.pt"
    a = _cli("infer", scans_a, "--ckpt", ckpt, "--output_dir", out)
    _wait_for(out / ".monai_anomaly.lock", a)
    a.send_signal(signal.SIGSTOP)
    try:  # run B in this process (a second interpreter start would cost more than the check)
        b = _in_process(capsys, "infer", scans_b, "--ckpt", ckpt, "--output_dir", out)
        b_over = _in_process(capsys, "infer", scans_b, "--ckpt", ckpt, "--output_dir", out, "--overwrite", "true")
    finally:
        a.send_signal(signal.SIGCONT)
    _, err = a.communicate(timeout=300)
    for res in (b, b_over):
        assert res.returncode == 2 and "in use by another monai_anomaly run" in res.stderr, res.stderr[-2000:]
    assert a.returncode == 0, err[-2000:]
    ids = [s["volume_id"] for s in json.loads((out / "scores.json").read_text())["scans"]]
    assert ids == [f"scan_{i:03d}" for i in range(4)]
    assert len(list((out / "maps").glob("*_anomaly_map.nii.gz"))) == 4
    assert not (out / ".monai_anomaly.lock").exists()


def test_resume_keeps_only_the_last_two_epoch_checkpoints(tmp_path, capsys):
    """A resumed run did not know the files the interrupted one saved: checkpoint_epoch=3/4 stayed forever."""
    data = _make_tiny_sample(tmp_path / "data", n_normal=12, n_abnormal=4)
    run = tmp_path / "run"
    first = _in_process(capsys, "train", data, "--output_dir", run, "--max_epochs", "4", *TINY)
    assert first.returncode == 0, first.stderr[-2000:]
    models = run / "models"
    assert sorted(p.name for p in models.glob("checkpoint_epoch=*.pt")) == [
        "checkpoint_epoch=3.pt",
        "checkpoint_epoch=4.pt",
    ]
    again = _in_process(capsys, "train", data, "--output_dir", run, "--max_epochs", "7", "--resume", "true", *TINY)
    assert again.returncode == 0, again.stderr[-2000:]
    assert sorted(p.name for p in models.glob("checkpoint_epoch=*.pt")) == [
        "checkpoint_epoch=6.pt",
        "checkpoint_epoch=7.pt",
    ]
    assert not [p for p in models.iterdir() if p.name.startswith("tmp")]  # no temporary file left


@pytest.fixture()
def small_disk(tmp_path):
    """A 1.8 MB tmpfs (root only): room for one tiny epoch checkpoint and model.pt, not for a second checkpoint."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1800k", "tmpfs", str(mnt)], capture_output=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here to fill a disk ({res.stderr.decode().strip()[:100]})")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_a_full_disk_keeps_the_last_good_checkpoint_and_names_the_folder(
    tiny_trained_bundle, tmp_path, small_disk, capsys
):
    from monai_anomaly.utils.checkpoints import load_checkpoint

    data = _make_tiny_sample(tmp_path / "data", n_normal=12, n_abnormal=4)
    run = small_disk / "run"
    res = _in_process(capsys, "train", data, "--output_dir", run, "--max_epochs", "6", *TINY)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert f"{run}: no space left on the device" in res.stderr.splitlines()[0], res.stderr[-2000:]
    saved = sorted((run / "models").glob("*.pt"))
    assert saved and all(isinstance(load_checkpoint(p), dict) for p in saved)  # none truncated
    assert (run / "models" / "checkpoint_epoch=1.pt") in saved
    assert not [p for p in (run / "models").iterdir() if p.name.startswith("tmp")]
    # inference onto a full disk: the message names the folder, not only "[Errno 28]"
    shutil.rmtree(run)
    (small_disk / "filler").write_bytes(b"\0" * (1800 * 1024 - 64 * 1024))
    scans = _many_scans(tmp_path / "scans", 3)
    out = small_disk / "infer"
    res = _in_process(
        capsys, "infer", scans, "--ckpt", tiny_trained_bundle / "models" / "model.pt", "--output_dir", out
    )
    assert res.returncode == 1 and "no space left on the device" in res.stderr.splitlines()[0], res.stderr[-2000:]
    assert str(out) in res.stderr.splitlines()[0] or str(small_disk) in res.stderr.splitlines()[0]


def test_a_run_that_was_evaluated_can_be_trained_again_with_overwrite(tmp_path, capsys):
    """evaluate wrote its TensorBoard events to logs/evaluate of the training folder, files neither run's marker
    listed: a later ``train --overwrite`` refused the folder ("files monai_anomaly did not write"). They now go to
    eval/logs, inside the evaluation report that owns them."""
    data = _make_tiny_sample(tmp_path / "data", n_normal=12, n_abnormal=4)
    run = tmp_path / "run"
    first = _in_process(capsys, "train", data, "--output_dir", run, "--max_epochs", "1", *TINY)
    assert first.returncode == 0, first.stderr[-2000:]
    ev = _in_process(capsys, "evaluate", data, "--output_dir", run)
    assert ev.returncode == 0, ev.stderr[-2000:]
    assert list((run / "eval" / "logs").glob("events.out.tfevents*")) and not (run / "logs" / "evaluate").exists()
    again = _in_process(capsys, "train", data, "--output_dir", run, "--max_epochs", "1", "--overwrite", "true", *TINY)
    assert again.returncode == 0, again.stderr[-2000:]
    assert (run / "models" / "model.pt").is_file() and not (run / "eval").exists()  # the old report went with it
