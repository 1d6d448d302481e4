"""benchmarks/gpu_check.sh: its CPU fallback (tiny settings) measures every bundle and writes the JSON and table."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_gpu_check_cpu_fallback_measures_every_bundle(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(REPO)}
    cmd = ["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--tiny", "--device", "cpu", "--out", str(tmp_path)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    assert result["device"] == "cpu" and result["precisions"] == ["fp32"] and result["volume_shape"] == [64, 64, 16]
    rows = {r["bundle"]: r for r in result["rows"]}
    assert set(rows) == {
        "autoencoder_anomaly",
        "healthy_gan_anomaly",
        "diffusion_refined_anomaly",
        "anoddpm_anomaly",
        "cyclegan_anomaly",
        "supervised_resnet18",
    }
    for name, r in rows.items():
        assert "error" not in r, (name, r.get("error"))
        for key in ("train_images_per_s", "seconds_per_volume", "train_peak_mib", "infer_peak_mib"):
            assert math.isfinite(r[key]) and r[key] > 0, (name, key, r[key])
        assert r["iterations_timed"] >= 2 and r["image_size"] == 32
    table = (tmp_path / "gpu_check.md").read_text().splitlines()
    assert sum(1 for ln in table if ln.startswith("| ") and ("_anomaly" in ln or "supervised" in ln)) == 6
