from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import gaussian_filter

from monai_anomaly.data.audit import (
    REPORT_FILES,
    SHORTCUT_WARNING,
    audit_dataset,
    check_output_dir,
    duplicate_groups,
    estimate_jpeg_quality,
    hamming_pairs,
    image_statistics,
    write_audit_report,
)
from monai_anomaly.utils.errors import BadInputError

REPO = Path(__file__).resolve().parents[2]


def brain(rng: np.random.Generator, size: int = 64, lesion: bool = False) -> np.ndarray:
    """A brain-like axial slice: a textured, tilted ellipse with a bright rim, dark ventricles, optionally a lesion."""
    yy, xx = np.mgrid[:size, :size].astype(np.float64)
    cy, cx = size / 2 + rng.uniform(-5, 5, 2)
    ay, ax = rng.uniform(0.28, 0.44) * size, rng.uniform(0.22, 0.38) * size
    th = rng.uniform(-0.6, 0.6)
    dy, dx = yy - cy, xx - cx
    u, v = dy * np.cos(th) + dx * np.sin(th), -dy * np.sin(th) + dx * np.cos(th)
    r = (u / ay) ** 2 + (v / ax) ** 2
    tex = gaussian_filter(rng.normal(size=(size, size)), rng.uniform(0.8, 2.5))
    tex /= tex.std() + 1e-8
    img = np.where(r < 1, rng.uniform(60, 140) + rng.uniform(8, 25) * tex, 0.0)
    img += np.where((r >= 0.82) & (r < 1.0), rng.uniform(40, 90), 0.0)  # skull rim
    for _ in range(int(rng.integers(1, 4))):  # ventricles
        oy, ox = rng.uniform(-0.4, 0.4, 2) * np.array([ay, ax])
        rr = ((yy - cy - oy) / rng.uniform(2, 6)) ** 2 + ((xx - cx - ox) / rng.uniform(2, 6)) ** 2
        img = np.where(rr < 1, img * 0.35, img)
    if lesion:  # a small bright blob inside the brain
        while True:
            ly, lx = rng.uniform(-0.5, 0.5, 2) * np.array([ay, ax])
            if (ly / ay) ** 2 + (lx / ax) ** 2 < 0.4:
                break
        rad = rng.uniform(2.0, 3.5)
        img = img + 70 * np.exp(-((yy - cy - ly) ** 2 + (xx - cx - lx) ** 2) / rad**2)
    return np.clip(img, 0, 255).astype(np.uint8)


def save(arr: np.ndarray, path: Path, fmt: str = "PNG", quality: int = 90, rgb: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(arr)
    if rgb:
        img = img.convert("RGB")
    img.save(path, fmt, **({"quality": quality} if fmt == "JPEG" else {}))
    return path


def noisy_copy(arr: np.ndarray, rng: np.random.Generator, sigma: float = 2.0) -> np.ndarray:
    return np.clip(arr.astype(np.float64) + rng.normal(0, sigma, arr.shape), 0, 255).astype(np.uint8)


def normal_abnormal_set(root: Path, n: int = 16, seed: int = 0, lesion: bool = True) -> Path:
    rng = np.random.default_rng(seed)
    for i in range(n):
        save(brain(rng), root / "normal" / f"n{i:03d}.png")
        save(brain(rng, lesion=lesion), root / "abnormal" / "lesion" / f"a{i:03d}.png")
    return root


def group_of(result, name: str) -> dict | None:
    for g in result.groups:
        if any(Path(p).name == name for p in g["paths"]):
            return g
    return None


def test_estimate_jpeg_quality():
    rng = np.random.default_rng(0)
    arr = brain(rng)
    for q in (30, 50, 75, 95):
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, "JPEG", quality=q)
        assert estimate_jpeg_quality(Image.open(buf)) == q
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    assert estimate_jpeg_quality(Image.open(buf)) is None


def test_image_statistics(tmp_path):
    arr = brain(np.random.default_rng(1))
    png = image_statistics(save(arr, tmp_path / "a.png"))
    jpg = image_statistics(save(arr, tmp_path / "a.jpg", "JPEG", quality=50, rgb=True))
    assert (png["width"], png["height"], png["mode"], png["format"]) == (64, 64, "L", "PNG")
    assert (png["is_rgb"], png["is_jpeg"], png["jpeg_quality"]) == (0.0, 0.0, None)
    assert (jpg["mode"], jpg["is_rgb"], jpg["jpeg_quality"]) == ("RGB", 1.0, 50.0)
    assert 0 < png["foreground"] < 1 and png["hf_energy"] > 0
    assert abs(png["brightness"] - float(arr.mean())) < 1e-6
    assert abs(jpg["brightness"] - png["brightness"]) < 3  # the grey content is the same
    assert bin(int(png["phash"], 16) ^ int(jpg["phash"], 16)).count("1") <= 4


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
