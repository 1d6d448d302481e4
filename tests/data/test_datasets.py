from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import DataLoader
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, RandFlipd
from PIL import Image

from monai_anomaly.data.datasets import SliceDataset
from monai_anomaly.data.layouts import build_datalist
from monai_anomaly.utils.errors import BadInputError


def _volume(path: Path, depth: int, seed: int) -> dict:
    data = np.random.default_rng(seed).random((12, 10, depth)).astype(np.float32) + 1.0
    data[..., 0] = 0.0  # an empty first slice
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    return {"image": str(path), "label": 0, "volume_id": path.name.split(".")[0], "slice_index": 0}


class Slicer:
    """A volume-level transform returning a list of 2D slice dicts, counting its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, d: dict) -> list[dict]:
        self.calls += 1
        img = d["image"]
        if img.ndim == 3:  # a 2D image: one "slice"
            return [dict(d)]
        return [{**d, "image": img[..., k], "slice_index": k} for k in range(img.shape[-1])]


def _volume_transform(slicer):
    return Compose([LoadImaged("image", image_only=True), EnsureChannelFirstd("image"), slicer])


@pytest.fixture()
def volumes(tmp_path):
    return [_volume(tmp_path / "v0.nii.gz", 4, 0), _volume(tmp_path / "v1.nii.gz", 3, 1)]


def test_slices_computed_once_and_augmented_per_access(volumes):
    slicer = Slicer()
    seen = []

    def augment(d):
        seen.append(d["slice_index"])
        d["image"] = d["image"] * 2
        return d

    ds = SliceDataset(volumes, _volume_transform(slicer), augment)
    assert len(ds) == 7 and slicer.calls == 2
    assert [s["slice_index"] for s in ds.slices] == [0, 1, 2, 3, 0, 1, 2]
    assert [s["volume_id"] for s in ds.slices] == ["v0"] * 4 + ["v1"] * 3
    first = ds[1]["image"]
    assert first.shape == (1, 12, 10)
    again = ds[1]["image"]
    assert torch.equal(first, again)  # the cache was copied, not doubled in place
    assert torch.allclose(first, ds.slices[1]["image"] * 2)
    assert seen == [1, 1] and slicer.calls == 2


def test_two_d_items_pass_through_as_one_slice(tmp_path):
    items = []
    for k in range(3):
        p = tmp_path / f"img{k}.png"
        Image.fromarray(np.full((16, 16), 40 * k, np.uint8)).save(p)
        items.append({"image": str(p), "label": 0, "volume_id": f"img{k}", "slice_index": 0})
    ds = SliceDataset(items, _volume_transform(Slicer()))
    assert len(ds) == 3 and tuple(ds[2]["image"].shape) == (1, 16, 16)
    assert float(ds[2]["image"].max()) == 80.0
    assert SliceDataset(items)[0]["image"] == items[0]["image"]  # no transform: items kept as they are


def test_disk_cache_is_reused(volumes, tmp_path):
    cache = tmp_path / "cache"
    first = Slicer()
    ds1 = SliceDataset(volumes, _volume_transform(first), cache_dir=cache)
    assert first.calls == 2 and len(list(cache.glob("*.pt"))) == 2
    second = Slicer()
    ds2 = SliceDataset(volumes, _volume_transform(second), cache_dir=cache, num_workers=2)
    assert second.calls == 0  # read back from disk
    assert len(ds2) == len(ds1) == 7
    assert torch.equal(ds2[5]["image"], ds1[5]["image"])
    assert ds2[5]["image"].meta["filename_or_obj"] == volumes[1]["image"]  # metadata survives the disk cache


def test_bad_file_raises_naming_it_or_is_skipped(volumes, tmp_path):
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"not a nifti at all")
    items = [*volumes, {"image": str(bad), "label": 0, "volume_id": "broken"}]
    with pytest.raises(BadInputError, match="broken.nii.gz"):
        SliceDataset(items, _volume_transform(Slicer()))
    for cache in (None, tmp_path / "cache"):
        ds = SliceDataset(items, _volume_transform(Slicer()), skip_bad=True, cache_dir=cache)
        assert len(ds) == 7 and [s["path"] for s in ds.skipped] == [str(bad)]
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 2  # the failure is not cached


def test_filter_random_volume_transform_and_dataloader(volumes):
    ds = SliceDataset(volumes, _volume_transform(Slicer()), slice_filter=lambda s: float(s["image"].max()) > 0)
    assert len(ds) == 5 and 0 not in [s["slice_index"] for s in ds.slices]
    with pytest.raises(ValueError, match="deterministic"):
        SliceDataset(volumes, Compose([LoadImaged("image"), RandFlipd("image", prob=1.0)]))
    with pytest.raises(TypeError, match="dict"):
        SliceDataset(volumes, lambda d: 3)
    ds = SliceDataset(volumes, _volume_transform(Slicer()), RandFlipd("image", prob=0.5, spatial_axis=0))
    batch = next(iter(DataLoader(ds, batch_size=7, shuffle=False)))
    assert batch["image"].shape == (7, 1, 12, 10) and batch["slice_index"].tolist() == [0, 1, 2, 3, 0, 1, 2]


def test_with_load_scan_on_real_volumes(shared_data):
    io = pytest.importorskip("monai_anomaly.transforms.io")
    items = build_datalist(shared_data / "ixi_t1_2mm_sample").items[:1]

    def axial(d):
        img = d["image"][..., ::30]  # every 30th axial slice keeps the test small
        return [{**d, "image": img[..., k], "slice_index": 30 * k} for k in range(img.shape[-1])]

    depth = io.LoadScan()(items[0]["image"]).shape[-1]
    ds = SliceDataset(items, Compose([io.LoadScand("image"), axial]))
    assert len(ds) == len(range(0, depth, 30)) and ds[0]["image"].ndim == 3 and ds[0]["volume_id"] == "IXI012-HH-1211"
    missing = [{**items[0], "image": str(shared_data / "ixi_t1_2mm_sample" / "nope.nii.gz")}]
    with pytest.raises(BadInputError, match="nope.nii.gz"):
        SliceDataset(missing, Compose([io.LoadScand("image"), axial]))


def test_with_load_scan_and_volume_to_slices_on_brats(shared_data, tmp_path):
    io = pytest.importorskip("monai_anomaly.transforms.io")
    slicing = pytest.importorskip("monai_anomaly.transforms.slicing")
    dl = build_datalist(shared_data / "brats2018_sample")
    item = next(it for it in dl.items if it["volume_id"] == "Brats18_CBICA_AOO_1")  # 77 slices with tumour
    volume_transform = Compose(
        [
            io.LoadScand(["image", "mask"], allow_constant=[False, True]),
            slicing.VolumeToSlicesd(["image", "mask"], axis=2, label_from_mask_key="mask"),
        ]
    )
    ds = SliceDataset([item], volume_transform, cache_dir=tmp_path / "cache")
    assert len(ds) == 155 and ds[0]["image"].shape == (1, 240, 240)
    assert sum(int(s["label"]) for s in ds.slices) == 77
    assert {s["volume_id"] for s in ds.slices} == {"Brats18_CBICA_AOO_1"}
    assert sorted(int(s["slice_index"]) for s in ds.slices) == list(range(155))
