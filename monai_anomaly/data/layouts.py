"""Datalists from the folder layouts of common anomaly-detection data sets.

Every builder returns items that follow the datalist item contract of ``docs/architecture.md``: ``image``, ``label``
(0 normal, 1 anomalous, -1 unknown), ``cls``, ``volume_id``, ``slice_index``, ``group``, ``role``, ``split`` and,
where there is one, ``mask``. :func:`build_datalist` detects the layout of a folder (or takes a CSV manifest) and
calls the matching builder.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from monai_anomaly.data.inputs import file_passes_checks, file_suffix, is_dicom_dir
from monai_anomaly.utils.enums import AnomalyKeys, Layout, Role
from monai_anomaly.utils.errors import BadInputError, SkipLog

__all__ = [
    "Datalist",
    "IMAGE_2D_SUFFIXES",
    "VOLUME_SUFFIXES",
    "LAYOUT_DESCRIPTIONS",
    "make_item",
    "parse_slice_name",
    "detect_layout",
    "build_datalist",
    "build_normal_abnormal",
    "build_oct2017",
    "build_brainomaly",
    "build_volumes_csv",
    "build_manifest",
    "is_inside_folder",
]

IMAGE_2D_SUFFIXES = (".png", ".jpg", ".jpeg")
VOLUME_SUFFIXES = (".nii", ".nii.gz", ".dcm")
# files that sit beside the images in a data set and are not images: never listed, never an error
_IGNORED_SUFFIXES = (".csv", ".md")
_SLICE_RE = re.compile(r"^(?P<volume>.+)__(?P<index>\d+)$")
_SPLIT_NAMES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
}

LAYOUT_DESCRIPTIONS = {
    Layout.NORMAL_ABNORMAL: "normal/ + abnormal/<class>/ image folders",
    Layout.OCT2017: "train|val|test/ folders each holding NORMAL/ (+ disease folders)",
    Layout.BRAINOMALY: "train/{pos,neg_mixed,neg}/ + test/{pos,neg}/",
    Layout.VOLUMES_CSV: "NIfTI/DICOM volumes (in the folder or volumes/) with a labels.csv",
    Layout.MANIFEST: "a CSV manifest file with path (or image) and label columns",
}


@dataclass
class Datalist:
    """The items found in a data set, with the layout they were read as and the bad inputs that were skipped.

    Attributes:
        items: datalist items (dicts keyed by :class:`~monai_anomaly.utils.enums.AnomalyKeys` values).
        layout: the layout the items were read with.
        root: the folder (or manifest file) they were read from.
        skipped: ``[{"path", "problem"}, ...]`` for each bad input skipped (only with ``skip_bad=True``).
        conflicts: groups of files holding the same image as normal and abnormal (filled by
            :func:`~monai_anomaly.data.conflicts.warn_label_conflicts`).

    Example:
        >>> dl = build_datalist("brain_tumor_mri_4class")  # doctest: +SKIP
        >>> dl.layout, len(dl), dl.items[0]["role"]  # doctest: +SKIP
        ('normal_abnormal', 2902, 'normal')
    """

    items: list[dict]
    layout: Layout
    root: str
    skipped: list[dict] = field(default_factory=list)
    conflicts: list[dict] = field(default_factory=list)  # set by monai_anomaly.data.conflicts.warn_label_conflicts

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self):
        return iter(self.items)


def _stem(p: Path) -> str:
    name = p.name
    suf = file_suffix(p)
    return name[: -len(suf)] if suf and name.lower().endswith(suf) else name


def parse_slice_name(path: str | os.PathLike) -> tuple[str, int]:
    """``(volume_id, slice_index)`` of a file: ``pat_001__007.png`` gives ``("pat_001", 7)``, ``a.png`` ``("a", 0)``.

    Example:
        >>> parse_slice_name("train/pos/pat_001__007.png")
        ('pat_001', 7)
    """
    stem = _stem(Path(path))
    m = _SLICE_RE.match(stem)
    if m:
        return m.group("volume"), int(m.group("index"))
    return stem, 0


def make_item(
    image: str | os.PathLike,
    label: int,
    cls: str,
    role: str,
    split: str = "",
    volume_id: str | None = None,
    slice_index: int | None = None,
    group: str | None = None,
    mask: str | os.PathLike | None = None,
) -> dict:
    """One datalist item; ``volume_id``/``slice_index`` default to :func:`parse_slice_name`, ``group`` to the volume.

    Example:
        >>> it = make_item("/d/normal/a__003.png", 0, "normal", Role.NORMAL)
        >>> it["volume_id"], it["slice_index"], it["group"], it["split"]
        ('a', 3, 'a', '')
    """
    vid, sidx = parse_slice_name(image)
    vid = str(volume_id) if volume_id not in (None, "") else vid
    item = {
        AnomalyKeys.IMAGE.value: str(image),
        AnomalyKeys.LABEL.value: int(label),
        AnomalyKeys.CLASS.value: str(cls),
        AnomalyKeys.VOLUME_ID.value: vid,
        AnomalyKeys.SLICE_INDEX.value: int(slice_index) if slice_index not in (None, "") else sidx,
        AnomalyKeys.GROUP.value: str(group) if group not in (None, "") else vid,
        AnomalyKeys.ROLE.value: str(Role(role)),
        AnomalyKeys.SPLIT.value: split,
    }
    if mask not in (None, ""):
        item[AnomalyKeys.MASK.value] = str(mask)
    return item


def _visible(p: Path) -> bool:
    return not p.name.startswith(".")


def _subdirs(folder: Path) -> dict[str, Path]:
    """Visible sub-folders keyed by lower-case name."""
    return {d.name.lower(): d for d in sorted(folder.iterdir()) if d.is_dir() and _visible(d)}


def _list_files(folder: Path, suffixes: tuple[str, ...], log: SkipLog) -> list[Path]:
    """Image files under ``folder`` (recursively, sorted); other files are bad input, csv/md/hidden are ignored."""
    found: list[Path] = []

    def unreadable(err: OSError) -> None:  # os.walk would skip the folder silently
        log.handle(BadInputError(err.filename or folder, f"folder cannot be read ({err.strerror or err})"))

    for dirpath, dirnames, filenames in os.walk(folder, onerror=unreadable):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in sorted(filenames):
            fp = Path(dirpath) / f
            if f.startswith(".") or file_suffix(fp) in _IGNORED_SUFFIXES:
                continue
            if file_suffix(fp) in suffixes:
                found.append(fp)
            else:
                log.handle(BadInputError(fp, f"not an image file (expected one of {', '.join(suffixes)})"))
    return found


def _check_folder(root: Path) -> None:
    if not root.exists():
        raise BadInputError(root, "no such file or folder")
    if root.is_dir() and not any(_visible(p) for p in root.iterdir()):
        raise BadInputError(root, "folder is empty")


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """``(columns, rows)`` of a CSV file, column names lower-cased and values stripped."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            rows = [{(k or "").strip().lower(): (v or "").strip() for k, v in row.items()} for row in reader]
            fields = [(c or "").strip().lower() for c in (reader.fieldnames or [])]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise BadInputError(path, f"cannot read CSV ({e})") from e
    if not fields:
        raise BadInputError(path, "CSV file is empty (no header row)")
    return fields, rows


def _first(row: dict, names: Iterable[str]) -> str:
    for n in names:
        if row.get(n) not in (None, ""):
            return row[n]
    return ""


def _group_table(root: Path) -> dict[str, str]:
    """``{relative path: group}`` from ``root/labels.csv`` when it has a ``group`` or ``dhash_group`` column."""
    csv_path = root / "labels.csv"
    if not csv_path.is_file():
        return {}
    fields, rows = _read_csv(csv_path)
    gcol = next((c for c in ("group", "dhash_group") if c in fields), None)
    pcol = next((c for c in ("path", "image") if c in fields), None)
    if gcol is None or pcol is None:
        return {}
    return {Path(r[pcol]).as_posix(): r[gcol] for r in rows if r.get(pcol)}


def _role_for(label: int, split: str) -> Role:
    if label == -1:
        return Role.MIXED
    if label == 0 and split != "test":
        return Role.NORMAL
    return Role.EVAL


def build_normal_abnormal(
    root: str | os.PathLike, skip_bad: bool = False, skip_log: SkipLog | None = None
) -> list[dict]:
    """Items of a ``normal/`` + ``abnormal/<class>/`` folder (label 0 / 1, ``cls`` from the class folder).

    Normals get role ``normal`` (may train), anomalies role ``eval``; ``split`` is ``""``. A ``labels.csv`` at the
    root with a ``path`` (or ``image``) column and a ``group`` or ``dhash_group`` column sets each file's ``group``
    (files it does not list are grouped by volume). Images directly in ``abnormal/`` get ``cls`` ``"abnormal"``.

    Raises:
        BadInputError: no ``normal/`` folder, or a non-image file (unless ``skip_bad``).
    """
    root = Path(root)
    log = skip_log if skip_log is not None else SkipLog(skip_bad)
    dirs = _subdirs(root)
    if "normal" not in dirs:
        raise BadInputError(root, "no normal/ folder (normal_abnormal layout)")
    groups = _group_table(root)
    items: list[dict] = []

    def add(p: Path, label: int, cls: str) -> None:
        group = groups.get(p.relative_to(root).as_posix())
        role = Role.NORMAL if label == 0 else Role.EVAL
        items.append(make_item(p, label, cls, role, group=group))

    for p in _list_files(dirs["normal"], IMAGE_2D_SUFFIXES, log):
        add(p, 0, "normal")
    if "abnormal" in dirs:
        ab = dirs["abnormal"]
        for p in _list_files(ab, IMAGE_2D_SUFFIXES, log):
            rel = p.relative_to(ab).parts
            add(p, 1, rel[0] if len(rel) > 1 else "abnormal")
    return items


def build_oct2017(root: str | os.PathLike, skip_bad: bool = False, skip_log: SkipLog | None = None) -> list[dict]:
    """Items of an OCT2017-style folder: ``train/``, ``val/``, ``test/``, each with ``NORMAL/`` and disease folders.

    The split comes from the top folder; a class folder named ``normal`` (any case) gives label 0, any other label 1
    with ``cls`` the folder name (lower case). Normals in ``train``/``val`` get role ``normal``, every other item
    role ``eval``.

    Raises:
        BadInputError: no split folder, or a non-image file (unless ``skip_bad``).
    """
    root = Path(root)
    log = skip_log if skip_log is not None else SkipLog(skip_bad)
    items: list[dict] = []
    split_dirs = {_SPLIT_NAMES[n]: d for n, d in _subdirs(root).items() if n in _SPLIT_NAMES}
    if not split_dirs:
        raise BadInputError(root, "no train/, val/ or test/ folder (oct2017 layout)")
    for split in ("train", "val", "test"):
        if split not in split_dirs:
            continue
        for cname, cdir in _subdirs(split_dirs[split]).items():
            label = 0 if cname == "normal" else 1
            for p in _list_files(cdir, IMAGE_2D_SUFFIXES, log):
                items.append(make_item(p, label, cname, _role_for(label, split), split=split))
        for f in sorted(split_dirs[split].iterdir()):
            if f.is_file() and _visible(f) and file_suffix(f) not in _IGNORED_SUFFIXES:
                log.handle(BadInputError(f, "file outside a class folder (expected <split>/<CLASS>/<image>)"))
    return items


_BRAINOMALY = {
    # (split folder, class folder): (label, role, split)
    ("train", "neg"): (0, Role.NORMAL, "train"),
    ("train", "pos"): (1, Role.MIXED, "train"),
    ("train", "neg_mixed"): (0, Role.MIXED, "train"),
    ("test", "pos"): (1, Role.EVAL, "test"),
    ("test", "neg"): (0, Role.EVAL, "test"),
}


def build_brainomaly(root: str | os.PathLike, skip_bad: bool = False, skip_log: SkipLog | None = None) -> list[dict]:
    """Items of a Brainomaly-style folder: ``train/{pos,neg_mixed,neg}/`` and ``test/{pos,neg}/``.

    ``train/neg`` is the known-healthy set (role ``normal``, label 0). ``train/pos`` + ``train/neg_mixed`` form the
    unannotated mixed set (role ``mixed``); their true labels (1 / 0) are kept in ``label`` for de-biased AUCp
    evaluation only: a trainer must treat them as unlabelled. ``test/pos`` (label 1) and ``test/neg`` (label 0) are
    role ``eval``, split ``test``. Slice files ``<volume>__<NNN>.png`` give ``volume_id`` and ``slice_index``;
    ``cls`` is the class folder's name.

    Raises:
        BadInputError: an unknown class folder, or a non-image file (unless ``skip_bad``).
    """
    root = Path(root)
    log = skip_log if skip_log is not None else SkipLog(skip_bad)
    items: list[dict] = []
    for sname, sdir in _subdirs(root).items():
        if sname not in ("train", "test"):
            continue
        for cname, cdir in _subdirs(sdir).items():
            if (sname, cname) not in _BRAINOMALY:
                log.handle(
                    BadInputError(
                        cdir,
                        "unknown folder in a brainomaly layout (expected train/{pos,neg_mixed,neg}, test/{pos,neg})",
                    )
                )
                continue
            label, role, split = _BRAINOMALY[(sname, cname)]
            for p in _list_files(cdir, IMAGE_2D_SUFFIXES, log):
                items.append(make_item(p, label, cname, role, split=split))
    return items


def is_inside_folder(path: str | os.PathLike, root: str | os.PathLike) -> bool:
    """Whether ``path`` lies in the folder ``root``.

    True when its normalised absolute path is under ``root``'s (``..`` taken into account, symbolic links inside
    ``root`` accepted as they are), or when it is with both paths' symbolic links resolved (``root`` reached through
    a link, and the file named by its real path).

    Example:
        >>> is_inside_folder("/data/set/a/../b.png", "/data/set"), is_inside_folder("/data/set/../x.png", "/data/set")
        (True, False)
    """
    lexical = Path(os.path.normpath(os.path.abspath(path)))
    if lexical.is_relative_to(Path(os.path.normpath(os.path.abspath(root)))):
        return True
    return Path(os.path.realpath(path)).is_relative_to(Path(os.path.realpath(root)))


def _listed_path(value: str, base: Path, allow_outside: bool, csv_path: Path, line: int) -> Path:
    """The file a CSV row names: ``value`` relative to ``base`` (or absolute), refused outside ``base``."""
    path = base / value
    if not allow_outside and not is_inside_folder(path, base):
        raise BadInputError(
            csv_path,
            f"line {line}: path {value!r} is outside the dataset folder {base} (paths in a manifest must stay "
            "inside its folder; pass allow_outside=True to allow others)",
        )
    return path


def _parse_label(text: str, csv_path: Path, line: int) -> int:
    """A label cell: exactly 0 (normal), 1 (anomalous) or -1 (unknown); ``0.5``, ``inf``, ``nan`` or words are
    refused naming the line (``0.5`` was once read as 0)."""
    try:
        value = float(text)
    except ValueError:
        raise BadInputError(csv_path, f"line {line}: label {text!r} is not a number (0, 1 or -1)") from None
    if value not in (-1.0, 0.0, 1.0):  # also refuses inf and nan
        raise BadInputError(csv_path, f"line {line}: label {text!r} is not 0 (normal), 1 (anomalous) or -1 (unknown)")
    return int(value)


def _rows_to_items(
    fields: list[str], rows: list[dict], csv_path: Path, base: Path, log: SkipLog, allow_outside: bool = False
) -> list[dict]:
    """Items from CSV rows (manifest or labels.csv); paths relative to ``base`` and, unless ``allow_outside``,
    inside ``base``; missing files are bad input."""
    pcol = next((c for c in ("path", "image") if c in fields), None)
    missing = [n for n, ok in (("path (or image)", pcol is not None), ("label", "label" in fields)) if not ok]
    if missing:
        raise BadInputError(csv_path, f"missing required column(s): {', '.join(missing)} (found: {', '.join(fields)})")
    items: list[dict] = []
    seen: dict[str, int] = {}
    for n, row in enumerate(rows, start=2):
        try:
            if not row.get(pcol):
                if not any(v for v in row.values()):
                    continue  # a blank line
                raise BadInputError(csv_path, f"line {n}: no {pcol} (the row names no file)")
            image = _listed_path(row[pcol], base, allow_outside, csv_path, n)
            key = os.path.normcase(os.path.abspath(image))
            if key in seen:
                raise BadInputError(
                    csv_path, f"line {n}: {row[pcol]!r} is listed again (first on line {seen[key]}); each file once"
                )
            seen[key] = n
            if not image.exists():
                raise BadInputError(image, f"listed in {csv_path} (line {n}) but does not exist")
            label = _parse_label(row.get("label", ""), csv_path, n)
            mask = row.get("mask") or None
            if mask is not None:
                mask = _listed_path(mask, base, allow_outside, csv_path, n)
                if not mask.exists():
                    raise BadInputError(mask, f"mask listed in {csv_path} (line {n}) does not exist")
        except BadInputError as e:
            log.handle(e)
            continue
        split = _SPLIT_NAMES.get(row.get("split", "").lower(), "")
        if row.get("split") and not split:
            log.handle(BadInputError(csv_path, f"line {n}: split {row['split']!r} is not train, val or test"))
            continue
        role = row.get("role", "").lower() or _role_for(label, split)
        if role not in {r.value for r in Role}:
            log.handle(BadInputError(csv_path, f"line {n}: role {role!r} is not one of {[r.value for r in Role]}"))
            continue
        cls = (
            row.get("cls") or row.get("class") or ("normal" if label == 0 else "abnormal" if label == 1 else "unknown")
        )
        vid = _first(row, ("volume_id", "case_id", "subject_id")) or None
        sidx = row.get("slice_index") or None
        items.append(
            make_item(image, label, cls, role, split, vid, sidx, _first(row, ("group", "dhash_group")) or None, mask)
        )
    return items


def build_manifest(
    path: str | os.PathLike, skip_bad: bool = False, skip_log: SkipLog | None = None, allow_outside: bool = False
) -> list[dict]:
    """Items of a CSV manifest: columns ``path`` (or ``image``) and ``label``, optional ``volume_id`` (or ``case_id``
    / ``subject_id``), ``group`` (or ``dhash_group``), ``split``, ``mask``, ``slice_index``, ``cls``, ``role``.

    Relative paths are resolved against the CSV's folder. Every listed image and mask must lie inside that folder (a
    ``..`` escape or an absolute path elsewhere is refused) unless ``allow_outside``. Role defaults to ``normal`` for
    label 0 outside the test split, ``mixed`` for label -1 and ``eval`` otherwise.

    Args:
        path: the CSV file.
        skip_bad: skip (warn and record) bad rows instead of raising.
        skip_log: where to record skipped rows (a new one with ``skip_bad`` when ``None``).
        allow_outside: accept listed files outside the manifest's folder.

    Raises:
        BadInputError: a missing required column, a bad label, a listed file outside the manifest's folder, or one
            that does not exist (that row is skipped and recorded with ``skip_bad``).
    """
    path = Path(path)
    log = skip_log if skip_log is not None else SkipLog(skip_bad)
    if not path.is_file():
        raise BadInputError(path, "no such manifest file")
    return _rows_to_items(*_read_csv(path), path, path.parent, log, allow_outside)


def _volume_candidates(root: Path) -> list[Path]:
    """NIfTI files and DICOM series folders in ``root/volumes/``, ``root/series/`` or ``root`` itself."""
    found = []
    for folder in (root / "volumes", root / "series", root):
        if not folder.is_dir():
            continue
        for p in sorted(folder.iterdir()):
            if _visible(p) and ((p.is_file() and file_suffix(p) in (".nii", ".nii.gz")) or is_dicom_dir(p)):
                found.append(p)
    return found


def build_volumes_csv(
    root: str | os.PathLike,
    skip_bad: bool = False,
    skip_log: SkipLog | None = None,
    default_label: int | None = None,
    allow_outside: bool = False,
) -> list[dict]:
    """Items of a folder of volumes (``.nii``, ``.nii.gz``, DICOM series sub-folders), with or without labels.csv.

    With ``root/labels.csv`` (columns ``image`` or ``path``, ``label``; optional ``mask``, ``case_id`` /
    ``subject_id`` / ``volume_id``, ``group``, ``split``, ``cls``) the rows are the items, as in
    ``brats2018_sample`` (``volumes/*.nii.gz``, ``masks/*.nii.gz``, ``labels.csv``); the files it lists must lie
    inside ``root`` unless ``allow_outside``. Without one, every volume in ``root/volumes/``, ``root/series/`` and
    ``root`` becomes an item labelled ``default_label``.

    Raises:
        BadInputError: no labels.csv and no ``default_label``, no volumes, or a bad row (e.g. a file outside
            ``root``; skipped with ``skip_bad``).
    """
    root = Path(root)
    log = skip_log if skip_log is not None else SkipLog(skip_bad)
    csv_path = root / "labels.csv"
    if csv_path.is_file():
        return _rows_to_items(*_read_csv(csv_path), csv_path, root, log, allow_outside)
    vols = _volume_candidates(root)
    if not vols:
        raise BadInputError(root, "no NIfTI volumes or DICOM series folders found (volumes_csv layout)")
    if default_label is None:
        raise BadInputError(root, "has volumes but no labels.csv; give default_label (0 normal, 1 anomalous, -1)")
    label = int(default_label)
    cls = {0: "normal", 1: "abnormal"}.get(label, "unknown")
    return [make_item(v, label, cls, _role_for(label, ""), volume_id=_stem(v)) for v in vols]


def detect_layout(root: str | os.PathLike) -> Layout:
    """The layout of ``root`` (a folder, or a ``.csv`` manifest file).

    Raises:
        BadInputError: a missing or empty folder, or one that matches no known layout (the message lists them).

    Example:
        >>> detect_layout("brats2018_sample")  # doctest: +SKIP
        <Layout.VOLUMES_CSV: 'volumes_csv'>
    """
    root = Path(root)
    _check_folder(root)
    if root.is_file():
        if file_suffix(root) == ".csv":
            return Layout.MANIFEST
        raise BadInputError(root, "is a file but not a .csv manifest")
    dirs = _subdirs(root)
    if "normal" in dirs:
        return Layout.NORMAL_ABNORMAL
    train_classes = set(_subdirs(dirs["train"])) if "train" in dirs else set()
    test_classes = set(_subdirs(dirs["test"])) if "test" in dirs else set()
    if train_classes & {"pos", "neg_mixed"} or (test_classes and test_classes <= {"pos", "neg"}):
        return Layout.BRAINOMALY
    split_dirs = [d for n, d in dirs.items() if n in _SPLIT_NAMES]
    if any("normal" in _subdirs(d) for d in split_dirs):
        return Layout.OCT2017
    if (root / "labels.csv").is_file() or _volume_candidates(root):
        return Layout.VOLUMES_CSV
    looked = "; ".join(f"{k.value}: {v}" for k, v in LAYOUT_DESCRIPTIONS.items())
    raise BadInputError(root, f"matches no known layout (looked for {looked})")


_BUILDERS: dict[Layout, Callable[..., list[dict]]] = {
    Layout.NORMAL_ABNORMAL: build_normal_abnormal,
    Layout.OCT2017: build_oct2017,
    Layout.BRAINOMALY: build_brainomaly,
    Layout.VOLUMES_CSV: build_volumes_csv,
    Layout.MANIFEST: build_manifest,
}


def build_datalist(
    root: str | os.PathLike,
    layout: str | Layout = "auto",
    skip_bad: bool = False,
    default_label: int | None = None,
    allow_outside: bool = False,
) -> Datalist:
    """Read a data set into a :class:`Datalist`, detecting its layout unless ``layout`` names one.

    Args:
        root: a data-set folder, or a ``.csv`` manifest file.
        layout: ``"auto"`` or a :class:`~monai_anomaly.utils.enums.Layout` value (``normal_abnormal``, ``oct2017``,
            ``brainomaly``, ``volumes_csv``, ``manifest``).
        skip_bad: skip (warn and record in ``Datalist.skipped``) bad files instead of raising.
        default_label: label for the volumes of a ``volumes_csv`` folder that has no labels.csv.
        allow_outside: let a manifest (or a ``volumes_csv`` labels.csv) list files outside its folder; by default a
            path that resolves elsewhere (``..`` escapes, absolute paths) is refused.

    Returns:
        the items (sorted as found), the layout, the root and the skipped inputs.

    Raises:
        BadInputError: a missing or empty folder, no matching layout, a bad manifest, or (unless ``skip_bad``) a bad
            file or a listed path outside the folder; the message names the path and the problem.

    Example:
        >>> dl = build_datalist("/data/brats2018_sample")  # doctest: +SKIP
        >>> dl.items[0]["mask"]  # doctest: +SKIP
        '/data/brats2018_sample/masks/Brats18_CBICA_AOO_1_wt.nii.gz'
    """
    root = Path(root).expanduser().absolute()
    _check_folder(root)
    lay = detect_layout(root) if str(layout) == "auto" else Layout(layout)
    log = SkipLog(skip_bad)
    kwargs: dict = {}
    if lay == Layout.VOLUMES_CSV:
        kwargs = {"default_label": default_label, "allow_outside": allow_outside}
    elif lay == Layout.MANIFEST:
        kwargs = {"allow_outside": allow_outside}
    items = _BUILDERS[lay](root, skip_log=log, **kwargs)
    # every split's files, before any training starts (missing files are handled by the loaders)
    items = [it for it in items if file_passes_checks(str(it.get(AnomalyKeys.IMAGE.value, "")), log)]
    if not items:
        raise BadInputError(root, f"no usable images found ({lay.value} layout)")
    return Datalist(items=items, layout=lay, root=str(root), skipped=log.as_list())
