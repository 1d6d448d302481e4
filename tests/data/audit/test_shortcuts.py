from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from monai_anomaly.data.audit.run import audit_dataset
from monai_anomaly.data.audit.shortcuts import SHORTCUT_WARNING

sys.path.insert(0, str(Path(__file__).parent))

from audit_files import brain, normal_abnormal_set, save  # noqa: E402


def test_format_shortcut_is_flagged(tmp_path):
    root = tmp_path / "shortcut"
    rng = np.random.default_rng(5)
    for i in range(20):
        save(brain(rng), root / "normal" / f"n{i:03d}.png")
        save(brain(rng, lesion=True), root / "abnormal" / "tumour" / f"a{i:03d}.jpg", "JPEG", quality=50, rgb=True)
    res = audit_dataset(root, progress=False)
    sc = res.shortcut
    assert sc["computable"] and sc["auroc"] >= 0.9 and sc["warning"]
    single = {d["feature"]: d for d in sc["single_feature"]}
    assert single["is_rgb"]["auroc"] == 1.0 and single["is_rgb"]["direction"] == "higher in abnormal"
    assert single["jpeg_quality"]["direction"] == "lower in abnormal"
    assert res.shortcut_file["auroc"] >= 0.9
    assert any(SHORTCUT_WARNING in w for w in res.warnings)
    stats = {r["name"]: r for r in res.class_stats}
    assert stats["normal"]["modes"] == {"L": 20} and stats["abnormal"]["formats"] == {"JPEG": 20}
    assert stats["abnormal"]["jpeg_quality_median"] == 50.0


def test_lesion_only_difference_is_no_shortcut(tmp_path):
    root = normal_abnormal_set(tmp_path / "lesion", n=20, seed=0)
    res = audit_dataset(root, progress=False)
    assert res.shortcut["computable"] and res.shortcut["n_splits"] == 5
    assert res.shortcut["auroc"] < 0.75
    assert not res.shortcut["warning"] and not res.warnings
    assert res.findings[0].startswith("no warning") and "no strong acquisition shortcut" in res.findings[0]
