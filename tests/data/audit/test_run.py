from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from monai_anomaly.data.audit.report import write_audit_report
from monai_anomaly.data.audit.run import audit_dataset
from monai_anomaly.utils.errors import BadInputError

sys.path.insert(0, str(Path(__file__).parent))

from audit_files import brain, group_of, normal_abnormal_set  # noqa: E402

REPO = Path(__file__).resolve().parents[3]


def test_bad_files(tmp_path):
    root = normal_abnormal_set(tmp_path / "data", n=6)
    bad = root / "normal" / "broken.png"
    bad.write_bytes(b"not a png at all")
    with pytest.raises(BadInputError, match="broken.png"):
        audit_dataset(root, progress=False)
    res = audit_dataset(root, skip_bad=True, progress=False)
    assert [Path(s["path"]).name for s in res.skipped] == ["broken.png"]
    assert len(res.records) == 12
    out = write_audit_report(res, tmp_path / "out")
    assert "broken.png" in (out / "audit_report.txt").read_text()


def test_volumes(tmp_path):
    root = tmp_path / "vols"
    (root / "volumes").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(4):
        for label in (0, 1):
            vol = np.stack([brain(rng, 32, lesion=bool(label)) for _ in range(6)], axis=-1).astype(np.float32)
            name = f"v{label}{i}.nii.gz"
            nib.save(nib.Nifti1Image(vol, np.diag([1.0, 1.0, 2.0, 1.0])), str(root / "volumes" / name))
            rows.append((f"volumes/{name}", label))
    copy = nib.load(str(root / "volumes" / "v00.nii.gz"))
    nib.save(nib.Nifti1Image(np.asarray(copy.dataobj) + 0.5, copy.affine), str(root / "volumes" / "v00_copy.nii.gz"))
    rows.append(("volumes/v00_copy.nii.gz", 1))  # the same volume labelled abnormal
    (root / "labels.csv").write_text("image,label\n" + "".join(f"{p},{lab}\n" for p, lab in rows))
    res = audit_dataset(root, progress=False)
    assert res.kind == "3d" and res.layout == "volumes_csv"
    r = res.records[0]
    assert (r["shape"], r["spacing"], r["dtype"]) == ("32x32x6", "1x1x2", "float32")
    g = group_of(res, "v00_copy.nii.gz")
    assert g is not None and g["both_classes"]
    assert {Path(p).name for p in g["paths"]} == {"v00.nii.gz", "v00_copy.nii.gz"}
    assert res.shortcut["n"] == 9 and "size_x" in res.shortcut["features"]
    write_audit_report(res, tmp_path / "out")


def test_cli_audit_subprocess(tmp_path):
    root = normal_abnormal_set(tmp_path / "data", n=8)
    out = tmp_path / "audit_out"
    cmd = [sys.executable, "-m", "monai_anomaly", "audit", str(root), "--output_dir", str(out), "--hash_threshold", "6"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "audit report written to" in proc.stdout and "shortcut AUROC" in proc.stdout
    assert (out / "audit_report.txt").is_file()
    assert json.loads((out / "audit.json").read_text())["params"]["hash_threshold"] == 6


@pytest.mark.shared_data
def test_shared_brain_tumor_yes_no_near_duplicates(shared_data, tmp_path):
    root = shared_data / "brain_tumor_yes_no"
    if not root.is_dir():
        pytest.skip("../shared/data/brain_tumor_yes_no is not present")
    res = audit_dataset(root, progress=False)
    assert len(res.records) == 228 and not res.skipped
    # its SOURCE.md: exact copies were removed, near-duplicates remain
    assert res.exact_groups == []
    assert len(res.groups) >= 10 and all(g["max_link_distance"] <= 4 for g in res.groups)
    assert res.shortcut["computable"]
    write_audit_report(res, tmp_path / "audit")
