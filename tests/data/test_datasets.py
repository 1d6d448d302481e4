from __future__ import annotations

import logging
import pickle
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import DataLoader, MetaTensor
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, RandFlipd, ScaleIntensityd
from PIL import Image

from monai_anomaly.data.datasets import SliceDataset, transform_fingerprint
from monai_anomaly.data.layouts import build_datalist
from monai_anomaly.utils.errors import BadInputError


def _volume(path: Path, depth: int, seed: int) -> dict:
    data = np.random.default_rng(seed).random((12, 10, depth)).astype(np.float32) + 1.0
    data[..., 0] = 0.0  # an empty first slice
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    return {"image": str(path), "label": 0, "volume_id": path.name.split(".")[0], "slice_index": 0}


class Slicer:
    """A volume-level transform returning a list of 2D slice dicts (every ``every``-th), counting its calls."""

    def __init__(self, every: int = 1) -> None:
        self.calls = 0
        self.every = every

    def __call__(self, d: dict) -> list[dict]:
        self.calls += 1
        img = d["image"]
        if img.ndim == 3:  # a 2D image: one "slice"
            return [dict(d)]
        return [{**d, "image": img[..., k], "slice_index": k} for k in range(0, img.shape[-1], self.every)]


class Planted:
    """A pickle payload: unpickling it creates ``marker`` (what an attacker's code would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


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
    assert first.calls == 2 and len(list(cache.glob("*.npz"))) == 2 and not list(cache.glob("*.pt"))
    second = Slicer()
    ds2 = SliceDataset(volumes, _volume_transform(second), cache_dir=cache, num_workers=2)
    assert second.calls == 0  # read back from disk
    assert len(ds2) == len(ds1) == 7
    assert torch.equal(ds2[5]["image"], ds1[5]["image"])
    assert ds2[5]["image"].meta["filename_or_obj"] == volumes[1]["image"]  # metadata survives the disk cache


def _same_slices(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert set(x) == set(y) and x["volume_id"] == y["volume_id"] and x["slice_index"] == y["slice_index"]
        assert isinstance(y["image"], MetaTensor) and torch.equal(x["image"].as_tensor(), y["image"].as_tensor())
        assert y["image"].meta["filename_or_obj"] == x["image"].meta["filename_or_obj"]
        assert torch.equal(y["image"].affine, x["image"].affine)


def _plant_pickle(path: Path, marker: Path) -> None:
    with open(path, "wb") as f:
        pickle.dump({"image": Planted(marker)}, f)


def _plant_torch_save(path: Path, marker: Path) -> None:
    with open(path, "wb") as f:  # a file object: torch.save would not write to a name ending in .npz otherwise
        torch.save({"image": Planted(marker)}, f)


def _plant_object_array(path: Path, marker: Path) -> None:
    with open(path, "wb") as f:  # an .npz whose array is a pickle of Python objects
        np.savez(f, a0=np.array([Planted(marker)], dtype=object), __meta__=np.frombuffer(b"{}", np.uint8))


@pytest.mark.parametrize("plant", [_plant_pickle, _plant_torch_save, _plant_object_array])
def test_planted_pickles_in_the_cache_never_run(volumes, tmp_path, caplog, plant):
    cache = tmp_path / "cache"
    ds1 = SliceDataset(volumes, _volume_transform(Slicer()), cache_dir=cache)
    files = sorted(cache.iterdir())
    assert len(files) == 2
    # the payload is live: loading it the unsafe way does run it
    control = tmp_path / "control"
    plant(tmp_path / "probe.bin", control)
    if plant is _plant_object_array:
        np.load(tmp_path / "probe.bin", allow_pickle=True)["a0"]
    elif plant is _plant_torch_save:
        torch.load(tmp_path / "probe.bin", weights_only=False)
    else:
        pickle.loads((tmp_path / "probe.bin").read_bytes())
    assert control.exists()

    marker = tmp_path / "PWNED"
    for f in files:
        plant(f, marker)
    again = Slicer()
    with caplog.at_level(logging.WARNING, logger="monai_anomaly"):
        ds2 = SliceDataset(volumes, _volume_transform(again), cache_dir=cache, num_workers=2)
        items = [ds2[i] for i in range(len(ds2))]
        batch = next(iter(DataLoader(ds2, batch_size=len(ds2))))
    assert not marker.exists()  # nothing ran
    assert again.calls == 2  # both planted files were ignored and the slices recomputed
    warned = [r.getMessage() for r in caplog.records if "ignoring slice cache file" in r.getMessage()]
    assert len(warned) == 2 and not any("allow_pickle" in w or "trust" in w for w in warned)
    _same_slices(ds1.slices, items)
    assert batch["image"].shape == (7, 1, 12, 10)
    third = Slicer()
    _same_slices(ds1.slices, SliceDataset(volumes, _volume_transform(third), cache_dir=cache).slices)
    assert third.calls == 0 and not marker.exists()  # the planted files were replaced by good ones


def test_corrupt_or_foreign_cache_files_are_recomputed(volumes, tmp_path, caplog):
    cache = tmp_path / "cache"
    ds1 = SliceDataset(volumes, _volume_transform(Slicer()), cache_dir=cache)
    first, second = sorted(cache.iterdir())
    first.write_bytes(first.read_bytes()[:100])  # truncated
    second.write_bytes(b"")  # empty
    again = Slicer()
    with caplog.at_level(logging.WARNING, logger="monai_anomaly"):
        ds2 = SliceDataset(volumes, _volume_transform(again), cache_dir=cache)
    assert again.calls == 2
    assert sum("ignoring slice cache file" in r.getMessage() for r in caplog.records) == 2
    _same_slices(ds1.slices, ds2.slices)
    # a good cache file of another item, copied over this one's name, is not taken for it
    a, b = sorted(cache.iterdir())
    b.write_bytes(a.read_bytes())
    third = Slicer()
    _same_slices(ds1.slices, SliceDataset(volumes, _volume_transform(third), cache_dir=cache).slices)
    assert third.calls == 1


def test_cache_key_follows_the_volume_transform(volumes, tmp_path):
    cache = tmp_path / "cache"
    SliceDataset(volumes, _volume_transform(Slicer()), cache_dir=cache)
    changed = Slicer(every=2)
    ds = SliceDataset(volumes, _volume_transform(changed), cache_dir=cache)
    assert changed.calls == 2 and [s["slice_index"] for s in ds.slices] == [0, 2, 0, 2]  # not the old slices
    extra = Slicer()
    SliceDataset(volumes, Compose([_volume_transform(extra), ScaleIntensityd("image")]), cache_dir=cache)
    assert extra.calls == 2
    assert len(list(cache.glob("*.npz"))) == 6

    def fp(scale: float) -> str:
        return transform_fingerprint(Compose([LoadImaged("image"), lambda d: {**d, "image": d["image"] * scale}]))

    assert fp(2.0) == fp(2.0) and fp(2.0) != fp(3.0)  # a closure's values count
    loader = Compose([LoadImaged("image", image_only=True), EnsureChannelFirstd("image")])
    before = transform_fingerprint(loader)
    loader(volumes[0])  # MONAI's readers remember the last file: that is not configuration
    assert transform_fingerprint(loader) == before


def test_values_the_cache_cannot_store_are_recomputed(volumes, tmp_path, caplog):
    def with_object(d):
        return {**d, "image": torch.ones(1, 2, 2), "extra": Slicer()}

    cache = tmp_path / "cache"
    with caplog.at_level(logging.WARNING, logger="monai_anomaly"):
        ds = SliceDataset(volumes, with_object, cache_dir=cache)
    assert len(ds) == 2 and isinstance(ds[0]["extra"], Slicer)
    assert not list(cache.glob("*.npz")) and "not stored on disk" in caplog.text

    def plain_values(d):
        return {**d, "t": (1, 2.5, "x", None), "b": b"\x00\x01", "n": np.float32(2), "p": Path("a"), "k": {3: "y"}}

    plain = SliceDataset(volumes, plain_values)
    cached = SliceDataset(volumes, plain_values, cache_dir=tmp_path / "c2")
    back = SliceDataset(volumes, plain_values, cache_dir=tmp_path / "c2")
    assert len(list((tmp_path / "c2").glob("*.npz"))) == 2
    for s in (cached.slices[0], back.slices[0]):
        assert s == plain.slices[0] and type(s["n"]) is np.float32 and type(s["t"]) is tuple


def test_bad_file_raises_naming_it_or_is_skipped(volumes, tmp_path):
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"not a nifti at all")
    items = [*volumes, {"image": str(bad), "label": 0, "volume_id": "broken"}]
    with pytest.raises(BadInputError, match="broken.nii.gz"):
        SliceDataset(items, _volume_transform(Slicer()))
    for cache in (None, tmp_path / "cache"):
        ds = SliceDataset(items, _volume_transform(Slicer()), skip_bad=True, cache_dir=cache)
        assert len(ds) == 7 and [s["path"] for s in ds.skipped] == [str(bad)]
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2  # the failure is not cached


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
    import monai_anomaly.transforms.io as io

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
    import monai_anomaly.transforms.io as io
    import monai_anomaly.transforms.slicing as slicing

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


def test_disk_cache_is_not_reused_when_a_file_is_replaced_under_the_same_name(tmp_path):
    """A stale cache once gave old scores: the key holds each file's size and modification time."""
    import os

    path = tmp_path / "scan.nii.gz"
    vol = _volume(path, 3, 0)
    cache = tmp_path / "cache"
    old = SliceDataset([vol], _volume_transform(Slicer()), cache_dir=cache)
    data = np.full((12, 10, 3), 7.0, np.float32)
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a later write, even on a coarse-clock file system
    slicer = Slicer()
    new = SliceDataset([vol], _volume_transform(slicer), cache_dir=cache)
    assert slicer.calls == 1  # recomputed, not read from the old entry
    assert float(new.slices[1]["image"].max()) == 7.0 != float(old.slices[1]["image"].max())
