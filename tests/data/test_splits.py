from __future__ import annotations

import json
from pathlib import Path

import pytest
from monai.data import load_decathlon_datalist

from monai_anomaly.data.layouts import build_datalist, make_item
from monai_anomaly.data.splits import read_datalist, select, split_datalist, training_items, write_datalist
from monai_anomaly.utils.enums import Role
from monai_anomaly.utils.errors import BadInputError


def _items(n_normal_vols=40, n_anom_vols=20, slices=3):
    """Slices of volumes: every volume is a group of ``slices`` items."""
    items = []
    for v in range(n_normal_vols):
        items += [make_item(f"/d/n{v}__{k:03d}.png", 0, "normal", Role.NORMAL) for k in range(slices)]
    for v in range(n_anom_vols):
        items += [make_item(f"/d/a{v}__{k:03d}.png", 1, "tumour", Role.EVAL) for k in range(slices)]
    return items


def _groups(split):
    return {k: {it["group"] for it in v} for k, v in split.items()}


def _names(split):
    return {k: sorted(it["image"] for it in v) for k, v in split.items()}


def test_deterministic_and_order_independent():
    items = _items()
    a = split_datalist(items, seed=3)
    assert _names(a) == _names(split_datalist(list(reversed(items)), seed=3))
    assert _names(a) != _names(split_datalist(items, seed=4))
    assert all(it["split"] == k for k, v in a.items() for it in v)
    assert all(it["split"] == "" for it in items)  # input not modified


def test_groups_never_cross_and_fractions_hold():
    items = _items(n_normal_vols=100, n_anom_vols=50)
    sp = split_datalist(items, val_fraction=0.1, test_fraction=0.2, seed=0)
    g = _groups(sp)
    assert not (g["train"] & g["val"] or g["train"] & g["test"] or g["val"] & g["test"])
    normals = {k: sum(it["label"] == 0 for it in v) for k, v in sp.items()}
    anomalies = {k: sum(it["label"] == 1 for it in v) for k, v in sp.items()}
    assert normals["train"] == pytest.approx(210, abs=6) and normals["val"] == pytest.approx(30, abs=6)
    assert normals["test"] == pytest.approx(60, abs=6)
    # anomalies never in train by default; val:test = 1:2
    assert anomalies["train"] == 0 and anomalies["val"] == pytest.approx(50, abs=6)


def test_anomalies_in_train_and_no_stratify():
    items = _items(n_normal_vols=60, n_anom_vols=60)
    sp = split_datalist(items, val_fraction=0.2, test_fraction=0.2, anomalies_in_train=True)
    assert sum(it["label"] for it in sp["train"]) == pytest.approx(0.6 * 180, abs=6)
    sp = split_datalist(items, val_fraction=0.2, test_fraction=0.2, stratify=False, anomalies_in_train=True)
    assert len(sp["train"]) == pytest.approx(0.6 * 360, abs=6)
    with pytest.raises(ValueError, match="fraction"):
        split_datalist(items, val_fraction=0.5, test_fraction=0.5)


def test_preset_split_kept_and_val_carved_from_train():
    items = [
        make_item(f"/d/h{v}__{k:03d}.png", 0, "neg", Role.NORMAL, split="train") for v in range(20) for k in range(2)
    ]
    items += [make_item(f"/d/m{v}__000.png", 1, "pos", Role.MIXED, split="train") for v in range(10)]
    items += [make_item(f"/d/t{v}__000.png", 1, "pos", Role.EVAL, split="test") for v in range(5)]
    sp = split_datalist(items, val_fraction=0.2, test_fraction=0.3)
    assert _names(sp)["test"] == sorted(f"/d/t{v}__000.png" for v in range(5))  # layout's test split kept
    assert len(sp["val"]) == pytest.approx(0.2 * 50, abs=2) and len(sp["train"]) + len(sp["val"]) == 50
    g = _groups(sp)
    assert not g["train"] & g["val"]
    # both strata (normal, mixed) give some of their groups to val
    assert {it["role"] for it in sp["val"]} == {"normal", "mixed"}
    # a layout that already gives val: nothing is moved
    items[0]["split"] = items[1]["split"] = "val"
    sp = split_datalist(items)
    assert _names(sp)["val"] == sorted([items[0]["image"], items[1]["image"]])


def test_training_items_normal_only_and_mixed_hidden():
    items = [
        make_item("/d/n.png", 0, "neg", Role.NORMAL, split="train"),
        make_item("/d/m0.png", 0, "neg_mixed", Role.MIXED, split="train"),
        make_item("/d/m1.png", 1, "pos", Role.MIXED, split="train"),
        make_item("/d/e.png", 1, "pos", Role.EVAL, split="train"),
        make_item("/d/v.png", 0, "neg", Role.NORMAL, split="val"),
    ]
    assert [it["image"] for it in training_items(items)] == ["/d/n.png"]
    mixed = training_items({"train": items[:4]}, include_mixed=True)
    assert [it["image"] for it in mixed] == ["/d/n.png", "/d/m0.png", "/d/m1.png"]
    assert [it["label"] for it in mixed] == [0, -1, -1]
    assert items[2]["label"] == 1  # the caller's items keep their true labels
    assert [it["image"] for it in select(items, split="val", roles="normal")] == ["/d/v.png"]
    assert len(select(items, labels=(0, 1), roles=["mixed", "eval"])) == 3


def test_real_brain_tumor_groups_do_not_cross(shared_data):
    items = build_datalist(shared_data / "brain_tumor_mri_4class").items
    sp = split_datalist(items, val_fraction=0.1, test_fraction=0.2, seed=0)
    g = _groups(sp)
    assert not (g["train"] & g["val"] or g["train"] & g["test"] or g["val"] & g["test"])
    # some dhash groups hold several images: check they really stayed together
    sizes = {}
    for it in items:
        sizes[it["group"]] = sizes.get(it["group"], 0) + 1
    assert max(sizes.values()) > 1
    train = training_items(sp)
    assert train and all(it["label"] == 0 and it["role"] == "normal" for it in train)
    assert len(train) == pytest.approx(0.7 * 1702, rel=0.05)


def test_json_round_trip_and_monai_loader(tmp_path):
    imgs = tmp_path / "data"
    imgs.mkdir()
    items = []
    for v in range(10):
        (imgs / f"v{v}.png").write_bytes(b"")
        items.append(make_item(imgs / f"v{v}.png", v % 2, "x", Role.NORMAL if v % 2 == 0 else Role.EVAL))
    sp = split_datalist(items, 0.2, 0.2)
    path = write_datalist(tmp_path / "lists" / "datalist.json", sp, metadata={"name": "toy"})
    doc = json.loads(path.read_text())
    assert doc["name"] == "toy" and set(doc) == {"name", "training", "validation", "test"}
    assert all(not Path(r["image"]).is_absolute() for r in doc["training"])
    with pytest.raises(BadInputError, match=r"datalist\.json: training\[0\]: image '\.\./data/v\d\.png' is outside"):
        read_datalist(path)  # the images sit beside the JSON's folder, not in it
    back = read_datalist(path, allow_outside=True)
    assert {k: [it["image"] for it in v] for k, v in back.items()} == {
        k: [it["image"] for it in v] for k, v in sp.items()
    }
    assert back["train"][0]["label"] == sp["train"][0]["label"]
    monai_items = load_decathlon_datalist(path, is_segmentation=False, data_list_key="validation")
    assert [Path(it["image"]) for it in monai_items] == [Path(it["image"]) for it in sp["val"]]


def test_read_datalist_errors_name_the_file(tmp_path):
    bad = tmp_path / "d.json"
    bad.write_text("{not json")
    with pytest.raises(BadInputError, match=r"d\.json.*JSON"):
        read_datalist(bad)
    bad.write_text('{"foo": []}')
    with pytest.raises(BadInputError, match=r"d\.json.*not a datalist"):
        read_datalist(bad)


def test_masked_volumes_split_like_normals_and_can_train(tmp_path):
    """BraTS-style volumes are labelled anomalous but carry lesion masks: their lesion-free slices are normal."""
    from monai_anomaly.data.splits import split_datalist, training_items

    items = [
        {"image": f"v{i}.nii.gz", "mask": f"m{i}.nii.gz", "label": 1, "role": "eval", "volume_id": f"v{i}"}
        for i in range(10)
    ]
    splits = split_datalist(items, val_fraction=0.2, test_fraction=0.3, seed=0)
    assert len(splits["train"]) == 5 and len(splits["val"]) == 2 and len(splits["test"]) == 3
    assert training_items(splits) == []
    train = training_items(splits, include_masked=True)
    assert sorted(t["volume_id"] for t in train) == sorted(t["volume_id"] for t in splits["train"])


def test_protocol_items_take_the_dataset_split_and_drop_classes(tmp_path):
    """A published protocol: the dataset's own train/test column, file by file, some classes left out."""
    from monai_anomaly.data.splits import protocol_items

    rows = [("normal/a.png", "train"), ("normal/b.png", "test"), ("abnormal/glioma/c.png", "test")]
    rows += [("abnormal/pituitary/d.png", "test")]
    (tmp_path / "labels.csv").write_text("path,label,orig_split\n" + "".join(f"{p},0,{s}\n" for p, s in rows))
    items = [
        {"image": str(tmp_path / p), "label": int("abnormal" in p), "cls": p.split("/")[-2], "volume_id": p[-5]}
        for p, _ in rows
    ]
    out = protocol_items(items, tmp_path, split_column="orig_split", exclude_classes=["pituitary"])
    assert [(i["volume_id"], i["split"]) for i in out] == [("a", "train"), ("b", "test"), ("c", "test")]
    assert "split" not in items[0]  # the input is not changed
    with pytest.raises(ValueError, match="no column"):
        protocol_items(items, tmp_path, split_column="site")
    assert len(protocol_items(items, tmp_path)) == 4  # no column, no exclusion: unchanged


def test_supervised_items_move_half_the_validation_groups_and_leave_test_alone():
    from monai_anomaly.data.splits import supervised_items

    items = [{"image": f"n{i}.png", "label": 0, "role": "normal", "group": f"pn{i // 2}"} for i in range(60)] + [
        {"image": f"a{i}.png", "label": 1, "role": "eval", "group": f"pa{i // 2}"} for i in range(40)
    ]
    items += [{"image": f"m{i}.png", "label": 1, "role": "mixed", "group": f"pm{i}"} for i in range(6)]
    splits = split_datalist(items, 0.3, 0.3, seed=0)
    sup = supervised_items(splits, fit_fraction=0.5, seed=0)
    again = supervised_items(splits, fit_fraction=0.5, seed=0)
    assert sup == again  # seeded
    test_images = {it["image"] for it in splits["test"]}
    used = {it["image"] for part in sup.values() for it in part}
    assert not used & test_images  # the test split is never touched
    assert all(it["role"] != "mixed" for part in sup.values() for it in part)  # unlabelled items left out
    val_groups = {it["group"] for it in splits["val"]}
    fit = {it["group"] for it in sup["train"]} & val_groups
    kept = {it["group"] for it in sup["val"]}
    assert fit and kept and not fit & kept  # groups are not split between the two halves
    for label in (0, 1):  # stratified: both classes on both sides
        assert any(it["label"] == label and it["group"] in fit for it in sup["train"])
        assert any(it["label"] == label for it in sup["val"])
    n_val_labelled = sum(1 for it in splits["val"] if it["role"] != "mixed")
    assert abs(len(sup["val"]) - n_val_labelled / 2) <= 4
    with pytest.raises(ValueError, match="fit_fraction"):
        supervised_items(splits, fit_fraction=1.0)
