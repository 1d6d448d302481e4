"""A training run killed with SIGKILL (no clean-up at all) and continued with ``--resume`` loses at most the epoch it
was in."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

_REPO = Path(__file__).resolve().parents[1]


def _tests_conftest():
    """tests/conftest.py by path (``import conftest`` may find tests/apps/conftest.py when both are loaded)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "_monai_anomaly_tests_conftest", Path(__file__).with_name("conftest.py")
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_CONF = _tests_conftest()
TINY_BY_BUNDLE, make_tiny_sample = _CONF.TINY_BY_BUNDLE, _CONF.make_tiny_sample


def _cmd(data: Path, out: Path, max_epochs: int, bundle: str, *extra: str) -> list[str]:
    opts = ["--bundle", bundle]
    for k, v in TINY_BY_BUNDLE[bundle].items():
        opts += [f"--{k}", json.dumps(v) if isinstance(v, (list, dict)) else str(v)]
    return [sys.executable, "-m", "monai_anomaly", "train", str(data), "--output_dir", str(out),
            "--max_epochs", str(max_epochs), "--batch_size", "16", *opts, *extra]  # fmt: skip


def _epochs(models: Path) -> list[int]:
    return sorted(
        int(m.group(1)) for f in models.glob("checkpoint_epoch=*.pt") if (m := re.search(r"=(\d+)\.pt$", f.name))
    )


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
@pytest.mark.parametrize("bundle", ["autoencoder_anomaly", "cyclegan_anomaly"])  # one network; four, three optimizers
def test_sigkill_then_resume_loses_at_most_the_current_epoch(tmp_path, bundle):  # and two replay buffers
    data = make_tiny_sample(tmp_path / "data", n_normal=40, n_abnormal=10)
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(_REPO)}
    proc = subprocess.Popen(_cmd(data, out, 500, bundle), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and (len(_epochs(out / "models")) < 2 or max(_epochs(out / "models")) < 3):
            assert proc.poll() is None, "training ended before it could be killed"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    saved = _epochs(out / "models")
    assert saved, "no checkpoint was saved before the kill"
    last = saved[-1]
    # without --resume (or --overwrite) the killed run is not silently replaced
    refused = subprocess.run(_cmd(data, out, last + 2, bundle), env=env, capture_output=True, text=True)
    assert refused.returncode == 2 and "--resume" in refused.stderr
    res = subprocess.run(_cmd(data, out, last + 2, bundle, "--resume"), env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    both = res.stdout + res.stderr
    m = re.search(r"resuming from \S*checkpoint_epoch=(\d+)\.pt", both)
    assert m, both[-2000:]
    resumed = int(m.group(1))
    if resumed != last:  # killed while writing epoch `last`: that file is truncated, named, and the previous used
        assert resumed == last - 1 and f"checkpoint_epoch={last}.pt" in both and "previous checkpoint" in both
    assert re.search(rf"Epoch\[{resumed + 1}\]", both) and not re.search(rf"Epoch\[{resumed}\] Complete", both)
    assert max(_epochs(out / "models")) == last + 2 and (out / "models" / "model.pt").is_file()
