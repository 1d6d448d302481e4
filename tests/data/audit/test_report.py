from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from monai_anomaly.data.audit.report import REPORT_FILES, check_output_dir, write_audit_report
from monai_anomaly.data.audit.run import audit_dataset

sys.path.insert(0, str(Path(__file__).parent))

from audit_files import normal_abnormal_set, save  # noqa: E402


def test_report_files_and_output_guard(tmp_path):
    root = normal_abnormal_set(tmp_path / "data", n=10)
    save(np.asarray(Image.open(root / "normal" / "n000.png")), root / "normal" / "n000_again.png")  # exact copy
    res = audit_dataset(root, progress=False)
    assert len(res.exact_groups) == 1 and res.exact_groups[0]["size"] == 2
    out = write_audit_report(res, tmp_path / "report")
    for name in REPORT_FILES:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    text = (out / "audit_report.txt").read_text()
    assert text.index("Findings") < text.index("Per-class statistics") < text.index("Shortcut classifier")
    doc = json.loads((out / "audit.json").read_text())
    assert doc["params"]["hash_threshold"] == 4 and len(doc["records"]) == 21
    with open(out / "audit_images.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 21 and {"phash", "split", "label", "dup_group", "jpeg_quality", "hf_energy"} <= set(rows[0])
    with open(out / "duplicate_groups.csv") as f:
        assert sum(1 for _ in csv.DictReader(f)) == 2
    with pytest.raises(FileExistsError, match="overwrite"):
        write_audit_report(res, out)
    with pytest.raises(FileExistsError):
        check_output_dir(out)
    assert write_audit_report(res, out, overwrite=True) == out
