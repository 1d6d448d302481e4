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
    cases += _reliability_cases(root, ckpt, rng, infer, train, out)
    return cases


# --------------------------------------------------------------------------------------------------------------------
# the reliability cases: checkpoint expressions, output folders that are not ours, false-words, typos, name
# collisions, manifests, killed runs (issues 19 and 25)
STRING_SETTINGS = (
    "aggregation",
    "intensity_mode",
    "latent",
    "map_method",
    "model_type",
    "score_method",
    "score_region",
    "up_mode",
)


def marker_path(root: Path) -> Path:
    """The file a planted expression would create: it must never exist."""
    return root / "PLANTED_CODE_RAN"


def planted_expression(root: Path, value: str) -> str:
    return f"$__import__('pathlib').Path({str(marker_path(root))!r}).touch() or {value!r}"


def planted_checkpoint(src: Path, dst: Path, root: Path, field: str) -> Path:
    """A copy of the model ``src`` whose setting ``field`` is an expression that would create the marker file (or,
    with ``field="_target_"``, a ``_target_`` dict that would)."""
    import torch

    ckpt = torch.load(src, map_location="cpu", weights_only=True)
    settings = dict(ckpt["settings"])
    if field == "_target_":
        settings["diffusion"] = {"_target_": "pathlib.Path.touch", "self": str(marker_path(root))}
    elif field == "all":
        for f in STRING_SETTINGS:
            settings[f] = planted_expression(root, str(settings.get(f, "x")))
    else:
        settings[field] = planted_expression(root, str(settings.get(field, "x")))
    ckpt["settings"] = settings
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, dst)
    return dst


def _edited_checkpoint(src: Path, dst: Path, **changes) -> Path:
    import torch

    ckpt = torch.load(src, map_location="cpu", weights_only=True)
    for path, value in changes.items():
        d = ckpt
        keys = path.split("__")
        for k in keys[:-1]:
            d = d[k]
        d[keys[-1]] = value
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, dst)
    return dst


def snapshot(folder: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``folder`` (to prove nothing was changed or deleted)."""
    import hashlib

    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def user_folder(folder: Path, rng: np.random.Generator) -> Path:
    """A folder of another tool's work: a metrics.json, a scores.json, notes, a paper, a model, a NIfTI, and our
    sub-folder names (models/, logs/, eval/) holding files that are not ours."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text('{"dice": 0.91}')
    (folder / "scores.json").write_text('{"subject01": 0.3}')
    for i in range(5):
        (folder / f"notes_{i}.txt").write_text(f"note {i}")
    (folder / "paper.tex").write_text("\\documentclass{article}")
    _nifti(folder / "raw" / "subject01.nii.gz", _volume(rng))
    (folder / "models").mkdir()
    (folder / "models" / "segmenter_final.pth").write_bytes(rng.bytes(256))
    (folder / "logs").mkdir()
    (folder / "logs" / "train.log").write_text("epoch 1")
    (folder / "eval").mkdir()
    (folder / "eval" / "anomaly_report.txt").write_text("another tool's report")
    return folder


def _reliability_cases(root: Path, ckpt: Path, rng: np.random.Generator, infer, train, out) -> list[Case]:
    cases: list[Case] = []
    d = root / "rel"
    d.mkdir(parents=True, exist_ok=True)
    scan = _png(d / "scan.png", rng)
    good = root / "rel_data"
    for i in range(12):
        _png(good / "normal" / f"n{i:02d}.png", rng)
    for i in range(6):
        _png(good / "abnormal" / "tumour" / f"t{i}.png", rng)
    if not ckpt.is_file():  # only the case names are wanted (test collection)
        ckpt = d / "missing.pt"

    def run_dir(name: str, model: Path) -> Path:
        """A train output folder holding ``model`` as models/model.pt (for evaluate)."""
        r = out(name)
        (r / "models").mkdir(parents=True, exist_ok=True)
        if model.is_file():
            (r / "models" / "model.pt").write_bytes(model.read_bytes())
        return r

    # 1. a checkpoint whose settings hold code: refused at every CLI door, and the code never runs
    for setting in (*STRING_SETTINGS, "_target_", "all"):
        tag = setting.strip("_")
        if ckpt.is_file():
            bad = planted_checkpoint(ckpt, d / "planted" / f"{tag}.pt", root, setting)
        else:
            bad = d / "planted" / f"{tag}.pt"
        c = infer(f"ckpt_code_{tag}_infer", scan, model=bad, names=bad.name, phrase="invalid saved setting")
        c.check = "no_planted_code"
        cases.append(c)
        r = run_dir(f"ckpt_code_{tag}_evaluate", bad)
        cases.append(
            Case(
                f"ckpt_code_{tag}_evaluate",
                ["evaluate", str(good), "--output_dir", str(r)],
                names="model.pt",
                phrase="invalid saved setting",
                absent=[r / "eval"],
                check="no_planted_code",
            )
        )
    # a saved setting of the wrong type, a NaN threshold
    for name, change, phrase in (
        ("image_size_text", {"settings__image_size": "64x"}, "image_size = '64x' is not a whole number"),
        ("nan_threshold", {"threshold__threshold__value": float("nan")}, "not a finite number"),
        ("nan_volume_threshold", {"threshold__volume_threshold": float("nan")}, "volume threshold is nan"),
    ):
        model = d / "typed" / f"{name}.pt"
        if ckpt.is_file():
            _edited_checkpoint(ckpt, model, **change)
        case = "ckpt_setting_wrong_type" if name == "image_size_text" else f"ckpt_{name}"
        cases.append(infer(case, scan, model=model, names=model.name, phrase=phrase))

    # 2. true/false words: every boolean option, the same way; other words refused
    earlier = out("earlier_result_false_word")
    earlier.mkdir(parents=True)
    (earlier / "scores.json").write_text("{}")
    (earlier / ".monai_anomaly").write_text(
        json.dumps({"tool": "monai_anomaly", "command": "infer", "complete": True, "files": ["scores.json"]})
    )
    for word in ("false", "False", "no", "0", "off"):
        c = infer(f"overwrite_{word}_keeps_the_result", scan, "--overwrite", word, names=earlier.name,
                  phrase="--overwrite", check="kept")  # fmt: skip
        c.argv[3], c.absent = str(earlier), []
        cases.append(c)
    for word in ("maybe", "2", "yes please"):
        cases.append(infer(f"overwrite_word_{word.replace(' ', '_')}", scan, "--overwrite", word,
                           phrase="takes true or false"))  # fmt: skip
        cases.append(infer(f"skip_bad_word_{word.replace(' ', '_')}", scan, "--skip_bad", word,
                           phrase="takes true or false"))  # fmt: skip
    mixed = root / "mixed"  # 3 good PNGs and broken.png (written above)
    for word in ("false", "no", "FALSE", "0"):
        cases.append(infer(f"skip_bad_{word}_stops", mixed, "--skip_bad", word, names="broken.png",
                           phrase="cannot be read"))  # fmt: skip
    for word in ("yes", "TRUE", "on", "1"):
        ok = infer(f"skip_bad_{word}_skips", mixed, "--skip_bad", word, code=0, names="broken.png",
                   check="skipped:broken.png")  # fmt: skip
        ok.absent = []
        cases.append(ok)
    prev = out("resume_false_run")
    (prev / "models").mkdir(parents=True)
    if ckpt.is_file():
        (prev / "models" / "model.pt").write_bytes(ckpt.read_bytes())
    c = train("resume_false_keeps_the_model", good, "--resume", "false", names=prev.name, phrase="--resume")
    c.argv[3], c.absent, c.check = str(prev), [], "model_kept"
    cases.append(c)
    c = train("resume_word_refused", good, "--resume", "perhaps", phrase="takes true or false")
    cases.append(c)
    c = train("overwrite_false_train_keeps_the_model", good, "--overwrite", "no", names=prev.name, phrase="--resume")
    c.argv[3], c.absent, c.check = str(prev), [], "model_kept"
    cases.append(c)

    # 3. unknown, misspelt and mistyped options
    for name, argv, phrase in (
        ("typo_max_epoch", ["--max_epoch", "1"], "did you mean --max_epochs"),
        ("typo_learning_rte", ["--learning_rte", "0.1"], "did you mean --learning_rate"),
        ("typo_image_sise", ["--image_sise", "32"], "did you mean --image_size"),
        ("unknown_train_key", ["--frobnicate", "3"], "not an option"),
        ("max_epochs_text", ["--max_epochs", "abc"], "--max_epochs takes a whole number"),
        ("max_epochs_float", ["--max_epochs", "2.5"], "--max_epochs takes a whole number"),
        ("learning_rate_text", ["--learning_rate", "abc"], "--learning_rate takes a number"),
        ("image_size_list", ["--image_size", "[64,64]"], "--image_size takes a whole number"),
        ("channels_not_list", ["--channels", "16"], "--channels takes a list"),
        ("amp_word", ["--amp", "sometimes"], "--amp takes true or false"),
        ("bad_expression", ["--max_epochs", "$1 +"], "not a valid Python expression"),
    ):
        c = train(name, good, *argv, phrase=phrase)
        c.argv = [a for a in c.argv]
        if name in ("max_epochs_text", "max_epochs_float", "bad_expression"):  # the case's own value, not "1"
            i = c.argv.index("--max_epochs")
            del c.argv[i : i + 2]
        if name == "image_size_list":
            i = c.argv.index("--image_size")
            del c.argv[i : i + 2]
        cases.append(c)
    cases.append(infer("unknown_infer_key", scan, "--max_epoch", "1", phrase="not an option"))
    cases.append(
        infer("typo_infer_slice_batch", scan, "--slice_batch_sise", "4", phrase="did you mean --slice_batch_size")
    )
    cases.append(
        Case(
            "unknown_evaluate_key",
            ["evaluate", str(good), "--output_dir", str(run_dir("unknown_evaluate_key", ckpt)), "--qualty", "true"],
            phrase="did you mean --quality",
        )  # fmt: skip
    )
    lst = d / "list_config.json"
    lst.write_text("[1, 2, 3]")
    cases.append(train("config_is_a_list", good, "--config", str(lst), names=lst.name, phrase="JSON object"))
    broken_cfg = d / "broken_config.json"
    broken_cfg.write_text('{"max_epochs": 3,,}')
    cases.append(
        train(
            "config_broken_json", good, "--config", str(broken_cfg), names=broken_cfg.name, phrase="not a valid config"
        )
    )
    cases.append(train("config_missing", good, "--config", str(d / "nope.json"), names="nope.json", phrase="not found"))

    # 4. scans whose file names collide (BIDS, case.png beside case.jpg, same name in two folders)
    bids = root / "bids"
    for sub in ("sub-01", "sub-02", "sub-03"):
        _nifti(bids / sub / "anat" / "T1w.nii.gz", _volume(rng))
    ok = infer("bids_same_file_names", bids, code=0, check="unique:3")
    ok.absent = []
    cases.append(ok)
    same = root / "same_stem"
    _png(same / "case.png", rng)
    Image.fromarray(_brain(rng)).save(same / "case.jpg")
    _png(same / "a" / "img.png", rng)
    _png(same / "b" / "img.png", rng)
    ok = infer("same_stem_png_jpg_and_subfolders", same, code=0, check="unique:4")
    ok.absent = []
    cases.append(ok)

    # 5. manifests that used to be read silently wrong
    for name, rows, phrase in (
        ("manifest_label_half", "n0.png,0\nn1.png,0.5\n", "label '0.5'"),
        ("manifest_label_inf", "n0.png,0\nn1.png,inf\n", "label 'inf'"),
        ("manifest_label_nan", "n0.png,0\nn1.png,nan\n", "label 'nan'"),
        ("manifest_label_word", "n0.png,0\nn1.png,normal\n", "label 'normal'"),
        ("manifest_duplicate_row", "n0.png,0\nn1.png,0\nn0.png,0\n", "listed again"),
        ("manifest_row_without_path", "n0.png,0\n,0\n", "no path"),
    ):
        folder = root / name
        for i in range(2):
            _png(folder / f"n{i}.png", rng)
        (folder / "manifest.csv").write_text("path,label\n" + rows)
        cases.append(train(name, folder / "manifest.csv", names="manifest.csv", phrase=phrase))

    # 6. inputs that were dropped or mis-read silently
    dmix = _dicom_series_without_extension(root / "dicom_mixed" / "series", rng)
    _png(dmix / "screenshot.png", rng)
    _nifti(dmix / "converted.nii.gz", _volume(rng))
    cases.append(infer("dicom_folder_with_png_and_nifti", dmix, names="converted.nii.gz", phrase="DICOM series folder"))
    png_dcm = d / "really_a_png.dcm"
    png_dcm.write_bytes(scan.read_bytes())
    cases.append(infer("png_named_dcm", png_dcm, names=png_dcm.name, phrase="is not a DICOM file"))
    loadbad = root / "load_time_bad"
    for i in range(2):
        _png(loadbad / f"good_{i}.png", rng)
    full = (loadbad / "good_0.png").read_bytes()
    for i in range(5):  # a valid PNG header, the image data cut short: found only when the pixels are decoded
        (loadbad / f"bad_{i}.png").write_bytes(full[: len(full) // 2 + i])
    ok = infer("skip_bad_load_time_failures", loadbad, "--skip_bad", "true", code=0, check="each_once:2:5")
    ok.absent = []
    cases.append(ok)
    cases.append(
        Case(
            "evaluate_report_inside_dataset",
            [
                "evaluate",
                str(good),
                "--output_dir",
                str(run_dir("evaluate_report_inside_dataset", ckpt)),
                "--eval_dir",
                str(good / "normal" / "report"),
            ],
            phrase="inside the input folder",
            absent=[good / "normal" / "report"],
        )  # fmt: skip
    )
    cases.append(
        Case(
            "audit_report_inside_dataset",
            ["audit", str(good), "--output_dir", str(good / "normal" / "audit")],
            phrase="inside the input folder",
            absent=[good / "normal" / "audit"],
        )  # fmt: skip
    )

    # 7. file names that are not valid UTF-8
    odd = root / "non_utf8"
    for i in range(3):
        _png(odd / f"good_{i}.png", rng)
    odd_name = os.fsdecode(b"caf\xe9_\xff.png")
    try:
        _png(odd / odd_name, rng)
        ok = infer("non_utf8_file_name", odd, code=0, check="unique:4")
        ok.absent = []
        cases.append(ok)
        odd_set = root / "non_utf8_dataset"
        for i in range(12):
            _png(odd_set / "normal" / (os.fsdecode(b"n\xe9") + f"{i:02d}.png"), rng)
        for i in range(6):
            _png(odd_set / "abnormal" / "tumour" / (os.fsdecode(b"t\xff") + f"{i}.png"), rng)
        r = run_dir("non_utf8_evaluate", ckpt)
        cases.append(Case("non_utf8_evaluate", ["evaluate", str(odd_set), "--output_dir", str(r)], code=0,
                          check="report:" + str(r / "eval")))  # fmt: skip
    except (OSError, UnicodeError):  # a file system that refuses such names: nothing to test there
        pass

    # 8. output folders that are not ours: --overwrite deletes nothing of them (issue 25)
    for cmd in ("infer", "evaluate", "train", "demo", "audit"):
        folder = user_folder(root / "user" / cmd, rng)
        argv = {
            "infer": ["infer", str(scan), "--ckpt", str(ckpt), "--output_dir", str(folder)],
            "evaluate": [
                "evaluate",
                str(good),
                "--output_dir",
                str(run_dir("user_eval_run", ckpt)),
                "--eval_dir",
                str(folder),
            ],  # fmt: skip
            "train": ["train", str(good), "--output_dir", str(folder), "--max_epochs", "1"],
            "demo": ["demo", "--output_dir", str(folder), "--max_epochs", "1"],
            "audit": ["audit", str(good), "--output_dir", str(folder)],
        }[cmd]
        for ow in ("True", "False"):
            c = Case(f"user_folder_{cmd}_overwrite_{ow.lower()}", [*argv, "--overwrite", ow],
                     names=folder.name, phrase="not a monai_anomaly", check="intact:" + str(folder))  # fmt: skip
            cases.append(c)
    # the same with the folder given as a sub-folder name the CLI uses (demo's models/, eval/ only)
    demo_like = root / "user" / "demo_like"
    (demo_like / "models").mkdir(parents=True)
    (demo_like / "eval").mkdir()
    (demo_like / "paper.tex").write_text("draft")
    for i in range(4):
        _nifti(demo_like / "data" / f"s{i}.nii.gz", _volume(rng))
    (demo_like / "models" / "segmenter_final.pth").write_bytes(b"weights")
    argv = ["demo", "--output_dir", str(demo_like), "--overwrite", "True"]
    cases.append(
        Case(
            "user_folder_demo_subfolders",
            argv,
            names=demo_like.name,
            phrase="not a monai_anomaly",
            check="intact:" + str(demo_like),
        )  # fmt: skip
    )

    # 9. killed runs and locks: a result folder whose run was killed (its marker says so) is recognised
    killed = out("killed_infer")
    (killed / "maps").mkdir(parents=True)
    (killed / "maps" / "scan_anomaly_map.nii.gz").write_bytes(b"half")
    (killed / ".monai_anomaly").write_text(
        json.dumps({"tool": "monai_anomaly", "command": "infer", "complete": False, "files": [], "pid": 999999})
    )
    c = infer("killed_infer_rerun", scan, names=killed.name, phrase="did not finish")
    c.argv[3], c.absent = str(killed), []
    cases.append(c)
    killed2 = out("killed_infer_overwrite")
    (killed2 / "maps").mkdir(parents=True)
    (killed2 / "maps" / "scan_anomaly_map.nii.gz").write_bytes(b"half")
    (killed2 / ".monai_anomaly").write_text((killed / ".monai_anomaly").read_text())
    ok = infer("killed_infer_overwrite", scan, "--overwrite", "true", code=0, check="scans:1")
    ok.argv[3], ok.absent = str(killed2), []
    cases.append(ok)
    locked = out("locked_by_a_live_run")
    locked.mkdir(parents=True)
    import socket

    (locked / ".monai_anomaly.lock").write_text(
        json.dumps({"pid": 1, "host": socket.gethostname(), "command": "infer", "date": "now"})
    )
    c = infer("output_locked_by_a_live_run", scan, names=locked.name, phrase="in use by another monai_anomaly run")
    c.argv[3], c.absent = str(locked), []
    cases.append(c)
    stale = out("stale_lock")
    stale.mkdir(parents=True)
    (stale / ".monai_anomaly.lock").write_text(
        json.dumps({"pid": 2**22 + 4321, "host": socket.gethostname(), "command": "infer", "date": "then"})
    )
    ok = infer("stale_lock_is_cleaned", scan, code=0, check="scans:1")
    ok.argv[3], ok.absent = str(stale), []
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


def run_cases(cases: list[Case], workdir: Path, workers: int = 2, timeout: float = 900) -> dict[str, dict]:
    """Run ``cases`` through the CLI in ``workers`` fresh Python processes (each runs its share one after another,
    so the imports are paid once per process, not once per case). Returns ``{name: {"code", "stdout", "stderr"}}``.
    """
    import subprocess
    import sys

    workdir.mkdir(parents=True, exist_ok=True)
    shares = [cases[i::workers] for i in range(workers)]
    procs = []
    for k, share in enumerate(shares):
        todo = workdir / f"cases_{k}.json"
        todo.write_text(json.dumps([{"name": c.name, "argv": c.argv, "env": c.env} for c in share]))
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        env.pop("MONAI_ANOMALY_DEBUG", None)
        procs.append(
            subprocess.Popen(
                [sys.executable, __file__, "--run", str(todo), str(workdir / f"results_{k}.json")],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    results: dict[str, dict] = {}
    for k, proc in enumerate(procs):
        log, _ = proc.communicate(timeout=timeout)
        out = workdir / f"results_{k}.json"
        if proc.returncode != 0 or not out.is_file():
            raise RuntimeError(f"corpus runner {k} failed (exit {proc.returncode}):\n{log[-4000:]}")
        results.update(json.loads(out.read_text()))
    return results


def _run_share(todo: Path, out: Path) -> None:
    """Run each case's command line with ``monai_anomaly.cli.main`` in this process, capturing what it prints."""
    import contextlib
    import io
    import logging

    from monai_anomaly.cli import main as cli_main

    results = {}
    for case in json.loads(todo.read_text()):
        old_env = {k: os.environ.get(k) for k in case["env"]}
        os.environ.update(case["env"])
        stdout, stderr = io.StringIO(), io.StringIO()
        root = logging.getLogger()
        for h in list(root.handlers):  # the CLI's basicConfig then logs to this case's captured stderr
            root.removeHandler(h)
        code = 0
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                cli_main(list(case["argv"]))
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except BaseException as e:  # noqa: BLE001 - reported as the case's failure, not the runner's
                import traceback

                traceback.print_exc()
                code = 99 if not isinstance(e, KeyboardInterrupt) else 130
        for k, v in old_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        results[case["name"]] = {"code": code, "stdout": stdout.getvalue(), "stderr": stderr.getvalue()}
    out.write_text(json.dumps(results))


def main() -> None:
    import sys

    if len(sys.argv) == 4 and sys.argv[1] == "--run":
        _run_share(Path(sys.argv[2]), Path(sys.argv[3]))
        return
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
