"""Tests for monai_anomaly.transforms.slicing: volume -> slices -> volume, slice selection and labels."""

from __future__ import annotations

import csv

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose

from monai_anomaly.transforms.io import LoadScand
from monai_anomaly.transforms.slicing import (
    StackSlices,
    StackSlicesd,
    VolumeToSlices,
    VolumeToSlicesd,
    select_slices,
    stack_slices,
)

AFFINE = torch.tensor([[-1.0, 0, 0, 30], [0, 0, 2.0, -10], [0, -1.5, 0, 5], [0, 0, 0, 1]], dtype=torch.float64)


def _volume(shape=(1, 6, 7, 10), seed=0) -> MetaTensor:
    g = torch.Generator().manual_seed(seed)
    vol = torch.rand(shape, generator=g)
    vol[..., :2] = 0.0  # two empty slices at the start of the last axis
    vol[:, :3, :, 2] = 0.0  # slice 2 is half empty
    return MetaTensor(vol, affine=AFFINE, meta={"filename_or_obj": "/data/vol_07.nii.gz"})


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_round_trip_bit_exact(axis):
    vol = _volume()
    slices = VolumeToSlices(axis=axis)(vol)
    assert len(slices) == vol.shape[axis + 1]
    expected_plane = tuple(s for a, s in enumerate(vol.shape[1:]) if a != axis)
    assert all(tuple(s.shape) == (1, *expected_plane) for s in slices)
    assert [s.meta["slice_index"] for s in slices] == list(range(vol.shape[axis + 1]))
    assert all(s.meta["slice_axis"] == axis for s in slices)
    assert slices[0].meta["filename_or_obj"] == "/data/vol_07.nii.gz"
    back = StackSlices()(slices)
    assert torch.equal(back.as_tensor(), vol.as_tensor())
    assert torch.equal(back.affine, AFFINE)
    # the slice's own affine carries the in-plane spacing (here |columns| of AFFINE: 1, 1.5, 2)
    spacing = [1.0, 1.5, 2.0]
    del spacing[axis]
    assert torch.allclose(torch.diag(slices[0].affine)[:2], torch.tensor(spacing, dtype=torch.float64))


def test_dropped_slices_filled_with_zero_and_stack_function():
    vol = _volume()
    kept = VolumeToSlices(axis=2, min_foreground=0.6)(vol)
    idx = [s.meta["slice_index"] for s in kept]
    assert idx == list(range(3, 10))  # 0, 1 empty and 2 half empty are dropped
    back = stack_slices(torch.stack(kept), idx, axis=2, spatial_shape=(6, 7, 10), affine=AFFINE)
    assert torch.equal(back[..., 3:], vol[..., 3:].as_tensor())
    assert float(back[..., :3].abs().sum()) == 0.0
    with pytest.raises(ValueError, match="slice 3 has shape"):
        stack_slices([k[:, :5] for k in kept], idx, axis=2, spatial_shape=(6, 7, 10))
    with pytest.raises(ValueError, match="outside"):
        stack_slices(kept[:1], [12], axis=2, spatial_shape=(6, 7, 10))


def test_slice_range_fractions_and_indices():
    vol = torch.ones(1, 4, 4, 10)
    assert select_slices(vol, slice_range=(0.2, 0.8)) == [2, 3, 4, 5, 6, 7]
    assert select_slices(vol, slice_range=(3, 6)) == [3, 4, 5]
    assert select_slices(vol, axis=0, slice_range=(1, 100)) == [1, 2, 3]
    with pytest.raises(ValueError):
        select_slices(vol, slice_range=(0.9, 0.1))
    with pytest.raises(ValueError):
        VolumeToSlices(axis=3)


def test_dict_slices_labels_ids_and_foreground_key():
    vol = _volume()
    mask = torch.zeros(1, 6, 7, 10)
    mask[0, 2, 3, 5] = 1.0
    mask[0, 1, 1, 8] = 1.0
    fg = torch.zeros(1, 6, 7, 10)
    fg[..., 4:7] = 1.0
    data = {"image": vol, "mask": mask, "foreground": fg, "cls": "glioma", "label": 1}
    out = VolumeToSlicesd(
        keys=["image", "mask"], min_foreground=0.5, foreground_key="foreground", label_from_mask_key="mask"
    )(data)
    assert [s["slice_index"] for s in out] == [4, 5, 6]
    assert [s["label"] for s in out] == [0, 1, 0]
    assert all(s["volume_id"] == "vol_07" and s["cls"] == "glioma" for s in out)  # id from the file stem
    assert torch.equal(out[1]["mask"].as_tensor(), mask[..., 5])
    assert out[0]["image"].meta["volume_id"] == "vol_07"
    whole = VolumeToSlicesd(keys="image", label_from_mask_key="mask", slice_range=(0.5, 1.0))(
        {"image": vol, "mask": mask, "volume_id": "given"}
    )
    assert [s["slice_index"] for s in whole] == [5, 6, 7, 8, 9]
    assert [s["label"] for s in whole] == [1, 0, 0, 1, 0]
    assert {s["volume_id"] for s in whole} == {"given"}


def test_dict_round_trip_and_2d_passthrough():
    vol = _volume()
    parts = VolumeToSlicesd(keys="image", label_from_mask_key="image")({"image": vol, "volume_id": "v"})
    out = StackSlicesd(keys="image")(parts)
    assert torch.equal(out["image"].as_tensor(), vol.as_tensor()) and torch.equal(out["image"].affine, AFFINE)
    assert out["volume_id"] == "v" and out["label"] == 1 and "slice_index" not in out
    with pytest.raises(ValueError, match="several volumes"):
        StackSlicesd(keys="image")([parts[0], {**parts[1], "volume_id": "w"}])
    img2d = {"image": torch.rand(1, 8, 8), "volume_id": "png1", "slice_index": 3}
    (only,) = VolumeToSlicesd(keys="image")(img2d)
    assert only["slice_index"] == 3 and only["image"] is img2d["image"]


def test_compose_maps_over_slices(tmp_path):
    arr = np.random.default_rng(0).random((8, 9, 5)).astype(np.float32) + 0.1
    f = tmp_path / "case.nii.gz"
    nib.save(nib.Nifti1Image(arr, np.diag([-1.0, -1.0, 1.0, 1.0])), str(f))
    pipe = Compose([LoadScand(keys="image"), VolumeToSlicesd(keys="image"), lambda d: {**d, "seen": True}])
    out = pipe({"image": str(f)})
    assert isinstance(out, list) and len(out) == 5 and all(d["seen"] for d in out)
    assert out[0]["volume_id"] == "case"


def test_real_brats_slices_labels_match_csv(shared_data):
    root = shared_data / "brats2018_sample"
    case = "Brats18_CBICA_AAB_1"
    rows = [r for r in csv.DictReader(open(root / "slice_labels.csv")) if r["case_id"] == case]
    assert len(rows) == 155
    expected = {int(r["slice_index"]): int(r["label"]) for r in rows}
    brain = {int(r["slice_index"]): int(r["brain_voxels"]) for r in rows}
    data = LoadScand(keys=["image", "mask"], allow_constant=[False, True])(
        {"image": str(root / "volumes" / f"{case}_flair.nii.gz"), "mask": str(root / "masks" / f"{case}_wt.nii.gz")}
    )
    vol = data["image"]
    assert tuple(vol.shape) == (1, 240, 240, 155)
    slices = VolumeToSlicesd(keys=["image", "mask"], axis=2, label_from_mask_key="mask")(data)
    assert len(slices) == 155
    assert {s["slice_index"]: s["label"] for s in slices} == expected
    assert all(s["volume_id"] == f"{case}_flair" for s in slices)
    # brain voxels per slice (image > 0) agree with the csv, so the axis and indices are the csv's
    assert {s["slice_index"]: int((s["image"] > 0).sum()) for s in slices} == brain
    kept = VolumeToSlicesd(keys="image", min_foreground=1e-9)(data)
    assert [s["slice_index"] for s in kept] == [i for i, n in brain.items() if n > 0]
    back = StackSlicesd(keys=["image", "mask"])(slices)
    assert torch.equal(back["image"].as_tensor(), vol.as_tensor())
    assert torch.equal(back["image"].affine, vol.affine)


def test_missing_mask_is_allowed_only_with_allow_missing_keys():
    vol = torch.rand(1, 6, 6, 3) + 0.1
    out = VolumeToSlicesd(keys=["image", "mask"], label_from_mask_key="mask", allow_missing_keys=True)({"image": vol})
    assert len(out) == 3 and all("label" not in s or s["label"] in (0, 1) for s in out)
    with pytest.raises(KeyError, match="mask"):
        VolumeToSlicesd(keys=["image"], label_from_mask_key="mask")({"image": vol})


def test_default_selection_scores_every_brats_slice_with_tumour_and_says_why_others_are_left_out(shared_data):
    """With the default ``min_foreground`` every slice of the shared BraTS volumes that holds tumour is scored (on
    the 10 volumes the old 5 % rule left out 13 tumour slices at the top and bottom of the brain, 0.5 % none; four
    are checked here), and each slice left out is recorded
    with its foreground share and the reason; SliceDataset collects the records once per volume."""
    from monai_anomaly.data.datasets import SliceDataset
    from monai_anomaly.utils.settings import AnomalyModelSettings

    root = shared_data / "brats2018_sample"
    mf = AnomalyModelSettings().min_foreground
    items = [
        {"image": str(p), "mask": str(root / "masks" / p.name.replace("_flair", "_wt")), "volume_id": p.name[:-12]}
        for p in sorted((root / "volumes").glob("*_flair.nii.gz"))[:4]
    ]
    slicer = Compose(
        [
            LoadScand(keys=["image", "mask"], allow_constant=[False, True]),
            VolumeToSlicesd(keys=["image", "mask"], min_foreground=mf, label_from_mask_key="mask", record_skipped=True),
        ]
    )
    ds = SliceDataset(items, volume_transform=slicer)
    assert not any("skipped_slices" in s for s in ds.slices)  # collected, not left in the slices
    n_tumour = sum(int(s["label"]) for s in ds.slices)
    assert n_tumour > 150
    assert ds.skipped_slices, "the empty slices above and below the brain are left out"
    for k in ds.skipped_slices:
        assert k["label"] == 0, f"a tumour slice was left out: {k}"
        assert k["foreground_fraction"] < mf and k["path"].endswith("_flair.nii.gz")
        assert k["skip_reason"] == "no foreground" or k["skip_reason"].startswith("foreground ")
    per_volume = {}
    for k in ds.skipped_slices:
        per_volume.setdefault(k["volume_id"], []).append(k["slice_index"])
    kept = {}
    for s in ds.slices:
        kept.setdefault(s["volume_id"], []).append(s["slice_index"])
    for vid, idx in kept.items():  # every slice of every volume is scored or listed, never both
        assert sorted(idx + per_volume.get(vid, [])) == list(range(155))


def test_a_volume_without_any_slice_above_min_foreground_is_scored_whole_by_evaluate_as_by_infer():
    """Evaluate dropped such a volume without a word (no slice, no skipped record) while infer scored all its slices;
    now both score every slice."""
    from monai_anomaly.inferers.slice import AnomalySliceInferer

    vol = torch.zeros(1, 16, 16, 6)
    vol[:, 7:9, 7:9, :] = 1.0  # 4 of 256 pixels per slice: 1.6 %, below a 5 % rule
    d = {"image": MetaTensor(vol.clone(), meta={"filename_or_obj": "/data/thin.nii.gz"})}
    slices = VolumeToSlicesd(keys=["image"], min_foreground=0.05, record_skipped=True)(d)
    assert [s["slice_index"] for s in slices] == list(range(6))
    assert all(s["skipped_slices"] == [] for s in slices)
    out = AnomalySliceInferer(16, spatial_dim=2, min_foreground=0.05, score_method="max")(vol[None], lambda x: x)
    assert out["scored"].tolist() == [[True] * 6]
    part = vol.clone()
    part[..., 0] = 0.0
    part[:, :, :, 3] = 1.0  # one full slice: only it is scored, and the others are listed
    slices = VolumeToSlicesd(keys=["image"], min_foreground=0.05, record_skipped=True)({"image": part})
    assert [s["slice_index"] for s in slices] == [3]
    assert [k["slice_index"] for k in slices[0]["skipped_slices"]] == [0, 1, 2, 4, 5]
