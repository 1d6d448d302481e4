"""Find the scans to score at inference: single files, DICOM series folders, or folders holding them."""

from __future__ import annotations

import os
from pathlib import Path

from monai_anomaly.data.formats import check_scan_file, scan_kind
from monai_anomaly.utils.enums import AnomalyKeys
from monai_anomaly.utils.errors import BadInputError, SkipLog

__all__ = [
    "IMAGE_SUFFIXES",
    "VOLUME_SUFFIXES",
    "file_suffix",
    "is_dicom_dir",
    "scan_id",
    "file_passes_checks",
    "find_scans",
    "read_manifest",
    "unique_scan_ids",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
VOLUME_SUFFIXES = (".nii", ".nii.gz", ".dcm")


def file_suffix(p: Path) -> str:
    """The lower-case suffix of a file, ``.nii.gz`` counted as one."""
    name = p.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else p.suffix.lower()


def scan_id(path: str | os.PathLike) -> str:
    """The volume id of a scan: the file name without its (double) extension, or the DICOM folder's name."""
    p = Path(path)
    name = p.name
    for ext in (".nii.gz", ".nii", ".dcm", ".png", ".jpg", ".jpeg"):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name


def _is_dicom(f: Path) -> bool:
    """A ``.dcm`` file, or a file without an extension whose content is DICOM (many scanners write those)."""
    if f.suffix.lower() == ".dcm":
        return True
    if f.suffix or not f.is_file():
        return False
    try:
        with open(f, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return head[128:132] == b"DICM"


def is_dicom_dir(p: Path) -> bool:
    """Whether ``p`` is a folder holding DICOM files (``.dcm``, or extension-less files with DICOM content): a
    series."""
    return p.is_dir() and any(f.is_file() and not f.name.startswith(".") and _is_dicom(f) for f in p.iterdir())


def file_passes_checks(f: str | os.PathLike, log: SkipLog) -> bool:
    """Cheap checks of a file before anything is written (empty, content not matching its name, unreadable header, a
    singular affine, too large: :func:`~monai_anomaly.data.formats.check_scan_file`); a bad file is raised or, when
    ``log`` skips, recorded. Returns whether it is kept. Folders (DICOM series) are left to their reader."""
    f = Path(f)
    if not f.is_file():
        return True
    try:
        check_scan_file(f, scan_kind(f))
    except BadInputError as e:
        log.handle(e)
        return False
    return True


def find_scans(path: str | os.PathLike | list, skip_bad: bool = False, skip_log: SkipLog | None = None) -> list[dict]:
    """List the scans under ``path`` as datalist items ``{"image", "volume_id", "label": -1}``.

    ``path`` may be one image/volume file, a DICOM series folder (``*.dcm`` files), a folder holding any of these
    (searched recursively; a folder of ``.dcm`` files counts as one series), or a list of such paths.

    Volume ids are unique within the list (:func:`unique_scan_ids`): a scan's id is its file name without the
    extension; scans that would share one (``sub-01/anat/T1w.nii.gz`` and ``sub-02/anat/T1w.nii.gz`` in a BIDS
    folder, ``case.png`` beside ``case.jpg``) get their path relative to the input folder instead, ``/`` written as
    ``__``, and the extension where that is still not unique (``sub-01__anat__T1w``, ``case_png``, ``case_jpg``).
    A ``.csv`` file is a manifest (:func:`read_manifest`): each listed path is taken as if given here. Each item also
    carries its position (``scan_index``), which orders every output file of an inference run.

    Raises:
        BadInputError: a missing path, a file of an unsupported type (unless ``skip_bad``), an unreadable folder
            (unless ``skip_bad``), or nothing to score.

    Example:
        >>> find_scans("scans/")  # doctest: +SKIP
        [{'image': 'scans/case1.nii.gz', 'volume_id': 'case1', 'label': -1}, ...]
    """
    log = skip_log if skip_log is not None else SkipLog(skip_bad)
    paths = list(path) if isinstance(path, (list, tuple)) else [path]
    found: list[Path] = []
    roots: list[Path] = []
    for one in paths:
        p = Path(one).expanduser()
        if p.is_file() and file_suffix(p) == ".csv":  # a manifest: one scan per row
            for listed in read_manifest(p):
                kept = [f for f in _find(listed, log) if file_passes_checks(f, log)] if _exists(listed, log) else []
                found += kept
                roots += [p.parent] * len(kept)
            continue
        kept = [f for f in _find(p, log) if file_passes_checks(f, log)]
        if not kept:
            what = "no readable" if len(log) else "no"
            raise BadInputError(p, f"{what} PNG, JPEG, NIfTI or DICOM scans found")
        found += kept
        roots += [p if p.is_dir() and not is_dicom_dir(p) else p.parent] * len(kept)
    if not found:
        raise BadInputError(paths[0], "no readable PNG, JPEG, NIfTI or DICOM scans found")
    seen: set[str] = set()
    unique = []
    for f, r in zip(found, roots):  # the same file given twice (a list naming a folder and a file in it) once
        key = os.path.realpath(f)
        if key not in seen:
            seen.add(key)
            unique.append((f, r))
    ids = unique_scan_ids([f for f, _ in unique], [r for _, r in unique])
    return [
        {AnomalyKeys.IMAGE: str(f), AnomalyKeys.VOLUME_ID: vid, AnomalyKeys.LABEL: -1, AnomalyKeys.SCAN_INDEX: i}
        for i, ((f, _), vid) in enumerate(zip(unique, ids))
    ]


MANIFEST_COLUMNS = ("image", "path", "file", "filename")


def read_manifest(path: str | os.PathLike) -> list[Path]:
    """The scan paths a manifest CSV lists, in its order: the column ``image`` (or ``path`` / ``file`` /
    ``filename``); relative paths are relative to the CSV's folder. Other columns are ignored.

    Raises:
        BadInputError: the CSV cannot be read, has no such column, or lists nothing.

    Example:
        >>> read_manifest("cohort.csv")  # doctest: +SKIP
        [PosixPath('/data/cohort/sub-001.nii.gz'), ...]
    """
    import csv

    p = Path(path)
    try:
        with open(p, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            fields = [c.strip().lower() for c in (reader.fieldnames or [])]
            column = next((reader.fieldnames[fields.index(c)] for c in MANIFEST_COLUMNS if c in fields), None)
            if column is None:
                raise BadInputError(
                    p, f"a manifest CSV needs a column named one of {list(MANIFEST_COLUMNS)}; it has {fields}"
                )
            listed = [(row.get(column) or "").strip() for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise BadInputError(p, f"manifest cannot be read ({type(e).__name__}: {e})") from None
    out = [(Path(v).expanduser() if Path(v).expanduser().is_absolute() else p.parent / v) for v in listed if v]
    if not out:
        raise BadInputError(p, f"the manifest lists no scans in its column {column!r}")
    return out


def _exists(p: Path, log: SkipLog) -> bool:
    """A manifest's entry exists (else an error, or a skip when the log skips)."""
    if p.exists():
        return True
    log.handle(BadInputError(p, "listed in the manifest but no such file or folder"))
    return False


def unique_scan_ids(files: list[Path], roots: list[Path]) -> list[str]:
    """One id per scan, unique within the run (see :func:`find_scans`); names that are not valid UTF-8 are
    escaped (:func:`~monai_anomaly.utils.text.safe_text`)."""
    from collections import Counter

    from monai_anomaly.utils.text import safe_text

    ids = [safe_text(scan_id(f)) for f in files]
    clash = Counter(ids)
    for i, f in enumerate(files):
        if clash[ids[i]] > 1:
            try:
                rel = Path(f).relative_to(roots[i])
            except ValueError:
                rel = Path(f)
            ids[i] = safe_text("__".join([*rel.parent.parts, scan_id(rel)]).lstrip("_/")) or ids[i]
    clash = Counter(ids)
    for i, f in enumerate(files):
        if clash[ids[i]] > 1:
            ext = file_suffix(Path(f)).lstrip(".").replace(".", "_")
            ids[i] = f"{ids[i]}_{ext}" if ext else ids[i]
    counts: Counter = Counter()
    final = []
    for vid in ids:
        counts[vid] += 1
        final.append(vid if counts[vid] == 1 else f"{vid}~{counts[vid]}")
    return final


def _find(p: Path, log: SkipLog) -> list[Path]:
    if not p.exists():
        raise BadInputError(p, "no such file or folder")
    found: list[Path] = []
    if p.is_file():
        if file_suffix(p) in IMAGE_SUFFIXES + VOLUME_SUFFIXES or _is_dicom(p):
            found.append(p)
        else:
            log.handle(BadInputError(p, f"unsupported file type (expected one of {IMAGE_SUFFIXES + VOLUME_SUFFIXES})"))
        return found
    if is_dicom_dir(p):
        _series_extras(p, log)
        return [p]

    def unreadable(err: OSError) -> None:
        log.handle(BadInputError(err.filename or p, f"folder cannot be read ({err.strerror or err})"))

    for root, dirs, files in os.walk(p, onerror=unreadable):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        rootp = Path(root)
        if is_dicom_dir(rootp):
            found.append(rootp)  # a DICOM series folder
            _series_extras(rootp, log)
            continue
        for f in sorted(files):
            fp = rootp / f
            if f.startswith("."):
                continue
            if file_suffix(fp) in IMAGE_SUFFIXES + VOLUME_SUFFIXES:
                found.append(fp)
            elif file_suffix(fp) not in (".csv", ".json", ".md", ".txt"):
                log.handle(BadInputError(fp, "unsupported file type, not an image or volume"))
    return found


def _series_extras(folder: Path, log: SkipLog) -> None:
    """A DICOM series folder is read as one scan: other scans in it (a PNG, a NIfTI) would be dropped silently, so
    each is reported (an error, or a skip listed in the report)."""
    for f in sorted(folder.iterdir()):
        if f.is_file() and not f.name.startswith(".") and not _is_dicom(f):
            if file_suffix(f) in IMAGE_SUFFIXES + VOLUME_SUFFIXES:
                log.handle(
                    BadInputError(
                        f, "is inside a DICOM series folder, which is read as one scan; move it out to score it"
                    )
                )
