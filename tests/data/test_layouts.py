from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from monai_anomaly.data.layouts import (
    build_datalist,
    detect_layout,
    is_inside_folder,
    make_item,
    parse_slice_name,
)
from monai_anomaly.utils.enums import Layout, Role
from monai_anomaly.utils.errors import BadInputError

KEYS = {"image", "label", "cls", "volume_id", "slice_index", "group", "role", "split"}


def _png(path: Path, value: int = 100, size: int = 16) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size), value, dtype=np.uint8)).save(path)
    return path


def _nii(path: Path, shape=(8, 8, 4)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random(shape).astype(np.float32), np.eye(4)), str(path))
    return path


def _by_name(items):
    return {Path(it["image"]).name: it for it in items}


def test_parse_slice_name_and_make_item():
    assert parse_slice_name("/d/pat_001__007.png") == ("pat_001", 7)
    assert parse_slice_name("/d/a__b.png") == ("a__b", 0)  # not a slice number
    assert parse_slice_name("/d/case.nii.gz") == ("case", 0)
    it = make_item("/d/x__012.png", 1, "glioma", Role.EVAL, split="test", mask="/d/m.png")
    assert set(it) == KEYS | {"mask"}
    assert (it["volume_id"], it["slice_index"], it["group"], it["role"]) == ("x", 12, "x", "eval")


def test_normal_abnormal_with_group_csv_and_ignored_files(tmp_path):
    _png(tmp_path / "normal" / "n1.png")
    _png(tmp_path / "normal" / "n2.png")
    _png(tmp_path / "abnormal" / "glioma" / "g1.png")
    _png(tmp_path / "abnormal" / "pituitary" / "p1__003.png")
    (tmp_path / "normal" / ".DS_Store").write_text("x")
    (tmp_path / "SOURCE.md").write_text("# source")
    (tmp_path / "labels.csv").write_text("path,label,dhash_group\nnormal/n1.png,0,7\nabnormal/glioma/g1.png,1,7\n")
    dl = build_datalist(tmp_path)
    assert dl.layout == Layout.NORMAL_ABNORMAL and len(dl) == 4 and dl.skipped == []
    items = _by_name(dl.items)
    assert all(set(it) == KEYS for it in dl.items)
    assert (items["n1.png"]["label"], items["n1.png"]["role"], items["n1.png"]["cls"]) == (0, "normal", "normal")
    assert (items["g1.png"]["label"], items["g1.png"]["role"], items["g1.png"]["cls"]) == (1, "eval", "glioma")
    assert items["n1.png"]["group"] == items["g1.png"]["group"] == "7"  # from the csv
    assert items["n2.png"]["group"] == "n2"  # not in the csv: its volume
    assert (items["p1__003.png"]["volume_id"], items["p1__003.png"]["slice_index"]) == ("p1", 3)
    assert all(Path(it["image"]).is_absolute() and it["split"] == "" for it in dl.items)


def test_non_image_file_raises_or_is_skipped(tmp_path):
    _png(tmp_path / "normal" / "n1.png")
    bad = tmp_path / "normal" / "notes.txt"
    bad.write_text("hello")
    with pytest.raises(BadInputError, match="notes.txt"):
        build_datalist(tmp_path)
    dl = build_datalist(tmp_path, skip_bad=True)
    assert len(dl) == 1
    assert dl.skipped[0]["path"] == str(bad) and "not an image" in dl.skipped[0]["problem"]


def test_oct2017_from_real_jpegs(tmp_path, shared_data):
    src = sorted((shared_data / "brain_tumor_mri_4class" / "normal").glob("*.jpg"))[:4]
    src_ab = sorted((shared_data / "brain_tumor_mri_4class" / "abnormal" / "glioma").glob("*.jpg"))[:2]
    for split, cls, files in [
        ("train", "NORMAL", src[:2]),
        ("val", "NORMAL", src[2:3]),
        ("test", "NORMAL", src[3:4]),
        ("test", "CNV", src_ab),
    ]:
        (tmp_path / split / cls).mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copy(f, tmp_path / split / cls / f.name)
    assert detect_layout(tmp_path) == Layout.OCT2017
    dl = build_datalist(tmp_path)
    got = sorted((it["split"], it["cls"], it["label"], it["role"]) for it in dl.items)
    assert got == sorted(
        [("train", "normal", 0, "normal")] * 2
        + [("val", "normal", 0, "normal"), ("test", "normal", 0, "eval")]
        + [("test", "cnv", 1, "eval")] * 2
    )


def test_brainomaly_semantics_from_real_jpegs_as_slices(tmp_path, shared_data):
    normals = sorted((shared_data / "brain_tumor_mri_4class" / "normal").glob("*.jpg"))[:6]
    tumours = sorted((shared_data / "brain_tumor_mri_4class" / "abnormal" / "glioma").glob("*.jpg"))[:4]
    layout = {
        "train/neg": [("h1", normals[0]), ("h1", normals[1])],
        "train/neg_mixed": [("h2", normals[2])],
        "train/pos": [("d1", tumours[0]), ("d1", tumours[1])],
        "test/neg": [("h3", normals[3])],
        "test/pos": [("d2", tumours[2])],
    }
    for folder, files in layout.items():
        for k, (vol, f) in enumerate(files):
            dst = tmp_path / folder / f"{vol}__{k:03d}.png"
            dst.parent.mkdir(parents=True, exist_ok=True)
            Image.open(f).convert("L").resize((32, 32)).save(dst)
    dl = build_datalist(tmp_path)
    assert dl.layout == Layout.BRAINOMALY and len(dl) == 7
    rows = {(Path(it["image"]).parent.parent.name, it["cls"], it["label"], it["role"], it["split"]) for it in dl.items}
    assert rows == {
        ("train", "neg", 0, "normal", "train"),
        ("train", "neg_mixed", 0, "mixed", "train"),
        ("train", "pos", 1, "mixed", "train"),
        ("test", "neg", 0, "eval", "test"),
        ("test", "pos", 1, "eval", "test"),
    }
    pos = sorted(
        (it["volume_id"], it["slice_index"]) for it in dl.items if it["cls"] == "pos" and it["split"] == "train"
    )
    assert pos == [("d1", 0), ("d1", 1)]


def test_volumes_with_labels_csv_and_masks(tmp_path):
    _nii(tmp_path / "volumes" / "c1_flair.nii.gz")
    _nii(tmp_path / "volumes" / "c2_flair.nii.gz")
    _nii(tmp_path / "masks" / "c1_wt.nii.gz")
    (tmp_path / "labels.csv").write_text(
        "case_id,image,mask,label,cls\n"
        "c1,volumes/c1_flair.nii.gz,masks/c1_wt.nii.gz,1,glioma\n"
        "c2,volumes/c2_flair.nii.gz,,0,healthy\n"
    )
    dl = build_datalist(tmp_path)
    assert dl.layout == Layout.VOLUMES_CSV
    c1, c2 = sorted(dl.items, key=lambda it: it["volume_id"])
    assert (c1["volume_id"], c1["label"], c1["cls"], c1["role"]) == ("c1", 1, "glioma", "eval")
    assert c1["mask"] == str(tmp_path.absolute() / "masks" / "c1_wt.nii.gz")
    assert "mask" not in c2 and (c2["role"], c2["group"]) == ("normal", "c2")


def test_volumes_without_labels_csv_need_a_default_label(tmp_path):
    _nii(tmp_path / "a.nii.gz")
    _nii(tmp_path / "b.nii")
    (tmp_path / "series1").mkdir()
    (tmp_path / "series1" / "IM0001.dcm").write_bytes(b"")  # a DICOM series folder counts as one volume
    with pytest.raises(BadInputError, match="default_label") as e:
        build_datalist(tmp_path)
    assert str(tmp_path) in str(e.value)
    dl = build_datalist(tmp_path, default_label=0)
    assert sorted(it["volume_id"] for it in dl.items) == ["a", "b", "series1"]
    assert {(it["label"], it["role"]) for it in dl.items} == {(0, "normal")}


def test_manifest_paths_relative_to_csv(tmp_path):
    _png(tmp_path / "imgs" / "a.png")
    _nii(tmp_path / "imgs" / "v.nii.gz")
    man = tmp_path / "lists" / "manifest.csv"
    man.parent.mkdir()
    man.write_text(
        "path,label,volume_id,group,split,slice_index\n../imgs/a.png,0,pat1,g1,train,5\n../imgs/v.nii.gz,1,,,test,\n"
    )
    with pytest.raises(BadInputError, match=r"manifest\.csv: line 2: path '\.\./imgs/a\.png' is outside"):
        build_datalist(man)  # the files sit beside the manifest's folder, not in it
    dl = build_datalist(man, allow_outside=True)
    assert dl.layout == Layout.MANIFEST
    a, v = dl.items
    assert Path(a["image"]).resolve() == (tmp_path / "imgs" / "a.png").resolve()
    assert (a["volume_id"], a["group"], a["split"], a["slice_index"], a["role"]) == ("pat1", "g1", "train", 5, "normal")
    assert (v["volume_id"], v["group"], v["split"], v["label"], v["role"]) == ("v", "v", "test", 1, "eval")


def test_manifest_paths_must_stay_in_its_folder(tmp_path):
    data = tmp_path / "data"
    _png(data / "in" / "a.png")
    secret = _png(tmp_path / "private" / "secret.png")
    man = data / "manifest.csv"
    escapes = {
        "a dot-dot escape": "../private/secret.png",
        "a dot-dot escape through a sub-folder": "in/../../private/secret.png",
        "an absolute path elsewhere": str(secret),
    }
    for what, listed in escapes.items():
        man.write_text(f"path,label\nin/a.png,0\n{listed},0\n")
        with pytest.raises(BadInputError) as e:
            build_datalist(man)
        msg = str(e.value)
        assert str(man) in msg and "line 3" in msg and repr(listed) in msg and "outside" in msg, what
        assert "allow_outside=True" in msg
        dl = build_datalist(man, skip_bad=True)  # skipping refuses the row too: the file is never listed
        assert [Path(it["image"]).name for it in dl.items] == ["a.png"] and "outside" in dl.skipped[0]["problem"]
        dl = build_datalist(man, allow_outside=True)  # the explicit opt-in
        assert Path(dl.items[1]["image"]).resolve() == secret.resolve(), what

    # a mask column obeys the same rule; absolute paths inside the folder and harmless ``..`` are fine
    _png(data / "in" / "b.png")
    man.write_text(f"path,label,mask\n{data / 'in' / 'a.png'},1,in/../in/a.png\nin/b.png,1,../private/secret.png\n")
    with pytest.raises(BadInputError, match=r"line 3: path '\.\./private/secret\.png' is outside"):
        build_datalist(man)
    assert len(build_datalist(man, allow_outside=True)) == 2


def test_volumes_csv_labels_paths_must_stay_in_the_folder(tmp_path):
    root = tmp_path / "vols"
    _nii(root / "volumes" / "a.nii.gz")
    outside = _nii(tmp_path / "elsewhere" / "b.nii.gz")
    (root / "labels.csv").write_text(f"image,label\nvolumes/a.nii.gz,0\n{outside},0\n")
    with pytest.raises(BadInputError, match=r"labels\.csv: line 3: path .*b\.nii\.gz' is outside"):
        build_datalist(root)
    assert len(build_datalist(root, allow_outside=True)) == 2


def test_is_inside_folder_follows_a_linked_root(tmp_path):
    real = tmp_path / "real"
    _png(real / "a.png")
    link = tmp_path / "link"
    try:
        link.symlink_to(real, target_is_directory=True)
    except OSError:
        pytest.skip("no symbolic links here")
    assert is_inside_folder(real / "a.png", link) and is_inside_folder(link / "a.png", real)
    assert not is_inside_folder(link / ".." / "real" / "a.png", tmp_path / "other")
    man = link / "m.csv"
    man.write_text(f"path,label\n{real / 'a.png'},0\n")  # the real path of a file in the linked folder
    assert len(build_datalist(man)) == 1


def test_manifest_errors_name_the_file(tmp_path):
    _png(tmp_path / "a.png")
    man = tmp_path / "m.csv"
    man.write_text("image,score\na.png,0\n")
    with pytest.raises(BadInputError, match=r"m\.csv.*label"):
        build_datalist(man)
    man.write_text("image,label\na.png,0\nmissing.png,1\n")
    with pytest.raises(BadInputError, match="missing.png"):
        build_datalist(man)
    dl = build_datalist(man, skip_bad=True)
    assert len(dl) == 1 and dl.skipped[0]["path"].endswith("missing.png")
    man.write_text("image,label\na.png,yes\n")
    with pytest.raises(BadInputError, match=r"m\.csv: line 2: label 'yes' is not a number"):
        build_datalist(man)


def test_folder_errors(tmp_path):
    with pytest.raises(BadInputError, match="nowhere.*no such"):
        build_datalist(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInputError, match="empty.*empty"):
        build_datalist(tmp_path / "empty")
    _png(tmp_path / "odd" / "images" / "x.png")
    with pytest.raises(BadInputError, match="odd.*no known layout") as e:
        build_datalist(tmp_path / "odd")
    for name in ("normal_abnormal", "oct2017", "brainomaly", "volumes_csv", "manifest"):
        assert name in str(e.value)


def test_real_brain_tumor_mri_4class_uses_dhash_groups(shared_data):
    dl = build_datalist(shared_data / "brain_tumor_mri_4class")
    assert dl.layout == Layout.NORMAL_ABNORMAL
    labels = [it["label"] for it in dl.items]
    assert labels.count(0) == 1702 and labels.count(1) == 1200
    assert {it["cls"] for it in dl.items} == {"normal", "glioma", "meningioma", "pituitary"}
    groups = {it["group"] for it in dl.items}
    assert len(groups) < len(dl)  # near-duplicates share a dhash group
    assert all(g.isdigit() for g in groups)


def test_real_brats_and_ixi_volumes(shared_data):
    brats = build_datalist(shared_data / "brats2018_sample")
    assert brats.layout == Layout.VOLUMES_CSV and len(brats) == 10
    for it in brats.items:
        assert it["label"] == 1 and it["role"] == "eval" and Path(it["mask"]).is_file()
        assert it["volume_id"] in it["image"] and it["volume_id"] in it["mask"]
    ixi = build_datalist(shared_data / "ixi_t1_2mm_sample")
    assert sorted(it["volume_id"] for it in ixi.items) == ["IXI012-HH-1211", "IXI015-HH-1258"]
    assert {(it["label"], it["role"]) for it in ixi.items} == {(0, "normal")}
