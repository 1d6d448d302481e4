from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

from monai_anomaly.data.audit.duplicates import duplicate_groups, hamming_pairs
from monai_anomaly.data.audit.run import audit_dataset

sys.path.insert(0, str(Path(__file__).parent))

from audit_files import brain, group_of, noisy_copy, normal_abnormal_set, save  # noqa: E402


def test_hamming_pairs_chunks():
    hexes = ["0000000000000000", "0000000000000003", "ffffffffffffffff", "000000000000000f"]
    assert hamming_pairs(hexes, 2, chunk=1) == [(0, 1, 2), (1, 3, 2)]
    assert hamming_pairs(hexes, 0) == []


def test_duplicate_groups_link_check():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=1024), rng.normal(size=1024)
    z = [(x - x.mean()) / x.std() for x in (a, a + 0.01 * b, b)]
    recs = [
        {"path": f"{k}.png", "md5": str(k), "phash": h, "label": lab, "split": sp, "cls": ""}
        for k, (h, lab, sp) in enumerate([("00ff", 0, "train"), ("00fe", 0, "test"), ("00fc", 1, "test")])
    ]
    comp, groups, exact = duplicate_groups(recs, "phash", 2, thumbnails=z)  # hash links chain all three
    assert len(groups) == 1 and groups[0]["size"] == 3 and groups[0]["both_classes"] and groups[0]["crosses_split"]
    assert groups[0]["min_link_correlation"] < 0.2 and exact == []
    comp, groups, _ = duplicate_groups(recs, "phash", 2, thumbnails=z, min_correlation=0.98)  # b is not a
    assert comp[0] == comp[1] != comp[2] and len(groups) == 1 and not groups[0]["both_classes"]
    recs[2]["md5"] = "0"  # an exact copy always links
    comp, _, exact = duplicate_groups(recs, "phash", 2, thumbnails=z, min_correlation=0.98)
    assert len(set(comp)) == 1 and exact[0]["members"] == [0, 2]


def test_near_duplicates_and_both_classes(tmp_path):
    root = normal_abnormal_set(tmp_path / "data")
    rng = np.random.default_rng(7)
    n0 = np.asarray(Image.open(root / "normal" / "n000.png"))
    n1 = np.asarray(Image.open(root / "normal" / "n001.png"))
    save(noisy_copy(n0, rng), root / "normal" / "n000_copy.jpg", "JPEG", quality=85)  # re-encoded + noise
    save(noisy_copy(n1, rng), root / "abnormal" / "lesion" / "a_relabelled.png")  # same picture, other label
    res = audit_dataset(root, progress=False)

    g0 = group_of(res, "n000.png")
    assert g0 is not None and {Path(p).name for p in g0["paths"]} == {"n000.png", "n000_copy.jpg"}
    assert not g0["both_classes"] and not g0["exact"]
    g1 = group_of(res, "n001.png")
    assert g1 is not None and {Path(p).name for p in g1["paths"]} == {"n001.png", "a_relabelled.png"}
    assert g1["both_classes"] and g1["labels"] == [0, 1]
    assert len(res.groups) == 2  # the other (distinct) images are not linked
    assert res.both_class_groups == [g1]
    assert any("both normal and abnormal" in w for w in res.warnings)
    rows = {Path(r["path"]).name: r for r in res.records}
    assert rows["n000.png"]["dup_group"] == rows["n000_copy.jpg"]["dup_group"] != rows["n002.png"]["dup_group"]


def test_group_crossing_the_split(tmp_path):
    root = tmp_path / "oct"
    rng = np.random.default_rng(3)
    for i in range(8):
        save(brain(rng), root / "train" / "NORMAL" / f"tr{i}.png")
        save(brain(rng), root / "test" / "NORMAL" / f"te{i}.png")
        save(brain(rng, lesion=True), root / "test" / "DRUSEN" / f"d{i}.png")
    leaked = np.asarray(Image.open(root / "train" / "NORMAL" / "tr0.png"))
    save(noisy_copy(leaked, rng, 1.0), root / "test" / "NORMAL" / "leak.png")
    res = audit_dataset(root, progress=False)
    assert res.layout == "oct2017"
    g = group_of(res, "leak.png")
    assert g is not None and g["crosses_split"] and "test" in g["splits"] and len(g["splits"]) == 2
    assert g in res.crossing_groups
    assert any("cross the train/val/test split" in w for w in res.warnings)
    assert {r["split"] for r in res.records} == {"train", "val", "test"}
