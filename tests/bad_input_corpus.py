"""A corpus of bad or awkward inputs for the command line, written into a temporary folder.

Each :class:`Case` is one ``python -m monai_anomaly ...`` call and what a user must see: the exit status, the file the
message names, a phrase of the message, and the outputs that must not exist afterwards (nothing half-written). A few
cases are awkward but valid (DICOM files without an extension, ``--skip_bad``) and must succeed.

``tests/test_bad_inputs.py`` runs every case in a subprocess; ``python tests/bad_input_corpus.py DIR --ckpt MODEL``
writes the corpus and prints the commands, to try them by hand.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image

__all__ = ["Case", "write_corpus"]


@dataclass
class Case:
    """One CLI call and what it must produce."""

    name: str
    argv: list[str]
    code: int = 2  # expected exit status
    names: str = ""  # the message must name this file (its base name)
    phrase: str = ""  # ... and contain this phrase (case-insensitive)
    absent: list[Path] = field(default_factory=list)  # must not exist afterwards
    check: str = ""  # extra check for successful cases (see tests/test_bad_inputs.py)
    env: dict[str, str] = field(default_factory=dict)


def _brain(rng: np.random.Generator, size: int = 48) -> np.ndarray:
    """A brain-like 8-bit slice: a bright ellipse with texture on black."""
    yy, xx = np.mgrid[:size, :size]
    inside = ((yy - size / 2) / (size * 0.4)) ** 2 + ((xx - size / 2) / (size * 0.33)) ** 2 <= 1
    img = np.where(inside, 120 + 40 * rng.standard_normal((size, size)), 0)
    return np.clip(img, 0, 255).astype(np.uint8)


def _png(path: Path, rng: np.random.Generator) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_brain(rng)).save(path)
    return path


def _volume(rng: np.random.Generator, shape=(32, 32, 8)) -> np.ndarray:
    return np.stack([_brain(rng, shape[0])[:, : shape[1]] for _ in range(shape[2])], axis=-1).astype(np.float32)


def _nifti(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0]) if affine is None else affine), str(path))
    return path


def _dicom_series_without_extension(folder: Path, rng: np.random.Generator) -> Path:
    """A valid 8-slice DICOM series written by SimpleITK, the files renamed to have no extension."""
    import SimpleITK as sitk

    folder.mkdir(parents=True, exist_ok=True)
    vol = _volume(rng).astype(np.int16)
    for k in range(vol.shape[2]):
        img = sitk.GetImageFromArray(vol[:, :, k][None])
        img.SetSpacing((1.0, 1.0, 2.0))
        img.SetOrigin((0.0, 0.0, 2.0 * k))
        w = sitk.ImageFileWriter()
        w.KeepOriginalImageUIDOn()
        for tag, value in (
            ("0008|0060", "MR"),
            ("0020|000d", "1.2.826.0.1.3680043.2.1125.1"),
            ("0020|000e", "1.2.826.0.1.3680043.2.1125.1.2"),
            ("0020|0013", str(k + 1)),
            ("0020|0032", f"0\\0\\{2.0 * k}"),
            ("0020|0037", "1\\0\\0\\0\\1\\0"),
            ("0008|0018", f"1.2.826.0.1.3680043.2.1125.1.2.{k + 1}"),
        ):
            img.SetMetaData(tag, value)
        w.SetFileName(str(folder / f"IM{k:04d}.dcm"))
        w.Execute(img)
        (folder / f"IM{k:04d}.dcm").rename(folder / f"IM{k:04d}")
    return folder


def write_corpus(root: Path, ckpt: Path) -> list[Case]:
    """Write every case's inputs under ``root`` and return the cases (``ckpt``: a trained 2D model)."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    cases: list[Case] = []

    def out(name: str) -> Path:
        return root / "out" / name

    def infer(name: str, target: Path | str, *extra: str, model: Path | str = ckpt, **kw) -> Case:
        o = out(name)
        argv = ["infer", str(target), "--output_dir", str(o), "--ckpt", str(model), *extra]
        return Case(name, argv, absent=[o], **kw)

    def train(name: str, data: Path | str, *extra: str, **kw) -> Case:
        o = out(name)
        argv = ["train", str(data), "--output_dir", str(o), "--max_epochs", "1", "--image_size", "32", *extra]
        return Case(name, argv, absent=[o / "models", o / "logs"], **kw)

    # -- files that are not what their name says
    d = root / "files"
    d.mkdir(parents=True, exist_ok=True)
    (d / "zero.png").write_bytes(b"")
    cases.append(infer("zero_byte_png", d / "zero.png", names="zero.png", phrase="empty file"))
    (d / "notes.png").write_text("patient notes, not an image\n")
    cases.append(infer("text_named_png", d / "notes.png", names="notes.png", phrase="its content is text"))
    _png(d / "slice.png", rng)
    (d / "slice_as.nii.gz").write_bytes((d / "slice.png").read_bytes())
    cases.append(infer("png_named_nii_gz", d / "slice_as.nii.gz", names="slice_as.nii.gz", phrase="PNG image"))
    full = gzip.compress(_nifti_bytes(_volume(rng)))
    (d / "truncated.nii.gz").write_bytes(full[: len(full) // 2])
    cases.append(infer("truncated_nii_gz", d / "truncated.nii.gz", names="truncated.nii.gz", phrase="truncated"))
    _zero_affine_nifti(d / "zero_affine.nii.gz", _volume(rng))
    cases.append(infer("singular_affine", d / "zero_affine.nii.gz", names="zero_affine.nii.gz", phrase="singular"))
    nan = _volume(rng)
    nan[4, 4, 2] = np.nan
    _nifti(d / "nan.nii.gz", nan)
    cases.append(infer("nan_voxels", d / "nan.nii.gz", names="nan.nii.gz", phrase="NaN"))
    _nifti(d / "four_d.nii.gz", np.stack([_volume(rng)] * 2, axis=-1))
    cases.append(infer("volume_4d", d / "four_d.nii.gz", names="four_d.nii.gz", phrase="4D"))
    _huge_nifti_header(d / "huge.nii", (4096, 4096, 4096))
    cases.append(infer("huge_image", d / "huge.nii", names="huge.nii", phrase="GiB limit"))
    cases.append(infer("missing_input", d / "no_such_folder", names="no_such_folder", phrase="no such file"))
    # -- checkpoints
    (d / "random.pt").write_bytes(rng.bytes(4096))
    cases.append(
        infer("random_bytes_ckpt", d / "slice.png", model=d / "random.pt", names="random.pt", phrase="not a PyTorch")
    )
    _foreign_checkpoint(d / "foreign.pt")
    cases.append(
        infer("foreign_ckpt", d / "slice.png", model=d / "foreign.pt", names="foreign.pt", phrase="not a monai_anomaly")
    )
    _other_network_checkpoint(ckpt, d / "other_net.pt")
    cases.append(
        infer(
            "other_network_ckpt", d / "slice.png", model=d / "other_net.pt", names="other_net.pt", phrase="do not fit"
        )
    )
    cases.append(
        infer("other_image_size", d / "slice.png", "--image_size", "64", names=ckpt.name, phrase="trained with")
    )
    cases.append(
        infer("missing_ckpt", d / "slice.png", model=d / "none.pt", names="none.pt", phrase="no trained model")
    )
    # -- folders
    mixed = root / "mixed"
    for i in range(3):
        _png(mixed / f"good_{i}.png", rng)
    (mixed / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + rng.bytes(64))
    cases.append(infer("bad_among_good", mixed, names="broken.png", phrase="cannot be read"))
    ok = infer("skip_bad", mixed, "--skip_bad", code=0, names="broken.png", check="skipped:broken.png")
    ok.absent = []
    cases.append(ok)
    dicom = _dicom_series_without_extension(root / "dicom_noext" / "series1", rng)
    ok = infer("dicom_without_extension", dicom, code=0, check="scans:1")
    ok.absent = []
    cases.append(ok)
    inside = root / "inside"
    _png(inside / "a.png", rng)
    c = infer("output_inside_input", inside, phrase="inside the input folder")
    c.argv[3] = str(inside / "results")
    c.absent = [inside / "results"]
    cases.append(c)
    earlier = out("existing_output")
    earlier.mkdir(parents=True)
    (earlier / "scores.json").write_text("{}")
    (earlier / ".monai_anomaly").write_text(
        json.dumps({"tool": "monai_anomaly", "command": "infer", "complete": True, "files": ["scores.json"]})
    )
    c = infer("existing_output", d / "slice.png", names="existing_output", phrase="--overwrite", check="kept")
    c.absent = []
    cases.append(c)
    # -- training sets
    only_abnormal = root / "only_abnormal"
    for i in range(4):
        _png(only_abnormal / "abnormal" / "tumour" / f"t{i}.png", rng)
    (only_abnormal / "normal").mkdir(parents=True)
    cases.append(train("no_normal_images", only_abnormal, names="only_abnormal", phrase="no normal"))
    single = root / "single_normal"
    _png(single / "normal" / "n0.png", rng)
    for i in range(2):
        _png(single / "abnormal" / "tumour" / f"t{i}.png", rng)
    cases.append(train("single_normal_image", single, names="single_normal", phrase="normal image"))
    wrong = root / "wrong_layout"
    for sub in ("cats", "dogs"):
        (wrong / sub).mkdir(parents=True)
        (wrong / sub / "readme.txt").write_text("x")
    cases.append(train("wrong_layout", wrong, names="wrong_layout", phrase="layout"))
    cases.append(train("missing_folder", root / "no_dataset", names="no_dataset", phrase="no such"))
    manifest = root / "escape" / "manifest.csv"
    _png(root / "outside.png", rng)
    manifest.parent.mkdir(parents=True)
    manifest.write_text("path,label\n../outside.png,0\n")
    cases.append(train("manifest_escape", manifest, names="outside.png", phrase="outside"))
    cases.append(
        Case(
            "evaluate_without_model",
            ["evaluate", str(single), "--output_dir", str(out("no_model"))],
            names="model.pt",
            phrase="no trained model",
            absent=[out("no_model") / "eval"],
        )
    )
    c = train("resume_and_overwrite", single, "--resume", "--overwrite", phrase="give one of them")
    cases.append(c)
    # a training set with one unreadable normal among good ones: named and nothing saved, or skipped and listed
    brokenset = root / "train_with_a_broken_file"
    for i in range(12):
        _png(brokenset / "normal" / f"n{i:02d}.png", rng)
    for i in range(3):
        _png(brokenset / "abnormal" / "tumour" / f"t{i}.png", rng)
    (brokenset / "normal" / "n_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + rng.bytes(64))
    tiny = ["--channels", "[8,16]", "--strides", "[2,2]", "--hidden_size", "32", "--batch_size", "4"]
    cases.append(train("train_bad_file", brokenset, *tiny, names="n_broken.png", phrase="cannot"))
    ok = train("train_skip_bad", brokenset, *tiny, "--skip_bad", "True", code=0, names="n_broken.png")
    ok.absent, ok.check = [], "trained"
    cases.append(ok)
    return cases


def _nifti_bytes(data: np.ndarray) -> bytes:
    hdr = nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0])).header
    hdr["vox_offset"] = 352
    return hdr.binaryblock + b"\0" * 4 + np.ascontiguousarray(data).tobytes(order="F")


def _zero_affine_nifti(path: Path, data: np.ndarray) -> None:
    """A NIfTI whose header's affine is all zero (sform code 1 with zero rows, as broken converters write)."""
    hdr = nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0])).header.copy()
    for row in ("srow_x", "srow_y", "srow_z"):
        hdr[row] = 0.0
    hdr["sform_code"], hdr["qform_code"] = 1, 0
    hdr["vox_offset"] = 352
    raw = hdr.binaryblock + b"\0" * 4 + np.ascontiguousarray(data).tobytes(order="F")
    path.write_bytes(gzip.compress(raw))


def _huge_nifti_header(path: Path, shape: tuple[int, ...]) -> None:
    """An uncompressed NIfTI whose header claims ``shape`` (float32) with a few bytes of data: loading it for real
    would need hundreds of GiB."""
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(shape)
    hdr.set_data_dtype(np.float32)
    hdr.set_sform(np.eye(4), code=1)
    hdr["vox_offset"] = 352
    path.write_bytes(hdr.binaryblock + b"\0" * 4 + b"\0" * 64)


def _foreign_checkpoint(path: Path) -> None:
    """A safe checkpoint of another network (a 3-layer MLP), with no settings."""
    import torch

    net = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    torch.save({"model": net.state_dict()}, path)


def _other_network_checkpoint(src: Path, dst: Path) -> None:
    """A real model.pt whose network weights were replaced by another network's (same keys otherwise)."""
    import torch

    if not src.is_file():
        return
    ckpt = torch.load(src, map_location="cpu", weights_only=True)
    ckpt["model"] = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Conv2d(4, 1, 3)).state_dict()
    torch.save(ckpt, dst)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("root", type=Path)
    p.add_argument("--ckpt", type=Path, required=True)
    a = p.parse_args()
    for c in write_corpus(a.root, a.ckpt):
        env = " ".join(f"{k}={v}" for k, v in c.env.items())
        print(f"# {c.name}: exit {c.code}, names {c.names!r}, says {c.phrase!r}")
        print(f"{env} python -m monai_anomaly {shlex.join(c.argv)}".strip())
    print(json.dumps({"cases": len(write_corpus(a.root / "again", a.ckpt))}))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
