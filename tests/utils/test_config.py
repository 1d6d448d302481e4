from __future__ import annotations

import io
import subprocess
import sys

import monai_anomaly
from monai_anomaly.utils.config import get_config_values


def test_print_config_lists_every_dependency():
    buf = io.StringIO()
    monai_anomaly.print_config(file=buf)
    text = buf.getvalue()
    for name in (
        "monai_anomaly",
        "monai",
        "torch",
        "pytorch-ignite",
        "nibabel",
        "pydicom",
        "SimpleITK",
        "scikit-learn",
    ):
        assert f"{name}: " in text
    values = get_config_values()
    assert values["monai_anomaly"] == monai_anomaly.__version__
    assert values["torch"] != "NOT INSTALLED"


def test_import_does_not_pull_torchvision():
    code = "import sys, monai_anomaly; monai_anomaly.print_config(); print('torchvision' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"
