"""Result folders that are provably ours: a marker written before anything else, a lock, and deletions limited to
the files the marker lists.

The rule (docs/errors.md, "Output folders"):

- a run writes ``.monai_anomaly`` (JSON: command, version, date, pid and, when the run ends, the list of files it
  created) into its output folder **before** any other file, and holds ``.monai_anomaly.lock`` (its PID) while it
  runs; a second run into the same folder is refused while the lock is held, and a stale lock (its process is gone)
  is cleaned;
- ``--overwrite`` deletes only the files the marker lists (for a run that was killed before it could list them: the
  files matching what that command writes), then the folders they were in if empty. Other files in the folder are
  kept (named in a warning). A non-empty folder without our marker is refused with a message naming its files, and
  nothing is deleted;
- results written before markers existed are recognised by their full set of files (every file of the command's
  required set present, and nothing else), never by one name.

Example:
    >>> with claim_output("runs/infer", INFER, overwrite=False) as claim:  # doctest: +SKIP
    ...     write_everything(claim.path)
"""

from __future__ import annotations

import datetime as _dt
import fnmatch
import json
import logging
import os
import socket
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monai_anomaly.utils.version import __version__

__all__ = [
    "DEMO",
    "EVALUATE",
    "INFER",
    "LOCK_NAME",
    "MARKER_NAME",
    "REPORT_FILES",
    "REPORT_PATTERNS",
    "TRAIN",
    "OutputKind",
    "OutputClaim",
    "OutputInUseError",
    "OutputNotOursError",
    "claim_output",
    "owned_files",
    "read_marker",
]

MARKER_NAME = ".monai_anomaly"
LOCK_NAME = ".monai_anomaly.lock"
_OURS = (MARKER_NAME, LOCK_NAME)
logger = logging.getLogger("monai_anomaly")


@dataclass(frozen=True)
class OutputKind:
    """What one command writes into its folder.

    Args:
        command: the command's name (recorded in the marker).
        what: words for messages ("inference result").
        patterns: glob patterns (relative, ``/``-separated, ``**`` for any depth) of every file the command writes.
        legacy_required: files that together identify a result written before markers existed.
        subfolders: sub-folders that are results of their own (own marker), cleaned with their own rule.
    """

    command: str
    what: str
    patterns: tuple[str, ...]
    legacy_required: tuple[str, ...] = ()
    subfolders: tuple[str, ...] = ()


# what the report writer (monai_anomaly.reports.writer.write_report) writes into a report folder
REPORT_FILES = (
    "detailed_results.csv",
    "volume_results.csv",
    "metrics.json",
    "anomaly_report.txt",
    "roc_curve.png",
    "pr_curve.png",
    "score_distribution.png",
    "confusion_matrix.png",
    "training_curves.png",
)
REPORT_PATTERNS = ("top_anomaly_*.png", "anomaly_map_*.nii.gz")
_REPORT = (*REPORT_FILES, *REPORT_PATTERNS, "quality.json")
INFER = OutputKind(
    "infer",
    "inference result",
    (
        *_REPORT,
        "scores.json",
        ".scores.json.tmp*",
        "scans/*.json",
        "scans/.*.tmp*",
        "maps/*_anomaly_map.nii.gz",
        "maps/*_heatmap.png",
        "maps/*_panels.png",
        "maps/.*.tmp*",
        "translations/**",
    ),
    legacy_required=("scores.json", "detailed_results.csv", "volume_results.csv", "anomaly_report.txt"),
)
EVALUATE = OutputKind(
    "evaluate",
    "evaluation report",
    (*_REPORT, "maps/**", "*.nii.gz", "logs/**"),
    legacy_required=("detailed_results.csv", "volume_results.csv", "metrics.json", "anomaly_report.txt"),
)
TRAIN = OutputKind(
    "train",
    "training run",
    ("models/model.pt", "models/*.pt", "models/tmp*", "logs/**"),
    legacy_required=("models/model.pt",),
    subfolders=("eval",),
)
DEMO = OutputKind(
    "demo",
    "demo",
    (*TRAIN.patterns, "scans/*.nii.gz"),
    legacy_required=("models/model.pt", "eval/anomaly_report.txt", "infer/scores.json"),
    subfolders=("eval", "infer"),
)


_RESUMABLE = ("infer", "train")  # commands with --resume


class OutputNotOursError(ValueError):
    """A folder that holds files monai_anomaly did not write (nothing was deleted)."""


class OutputInUseError(ValueError):
    """Another running monai_anomaly process holds the folder's lock."""


def _rel_files(folder: Path) -> list[str]:
    """Every file (and symlink) under ``folder``, as ``/``-separated relative paths, the marker and lock left out."""
    out = []
    for root, dirs, files in os.walk(folder):
        rootp = Path(root)
        for d in list(dirs):
            if (rootp / d).is_symlink():  # never followed: a link's target is not ours
                out.append((rootp / d).relative_to(folder).as_posix())
                dirs.remove(d)
        for f in files:
            if f not in _OURS and f != f"{MARKER_NAME}.tmp":  # markers and locks (also of sub-results) are not results
                out.append((rootp / f).relative_to(folder).as_posix())
    return sorted(out)


def _matches(rel: str, patterns: Iterable[str]) -> bool:
    for pat in patterns:
        if pat.endswith("/**"):
            if rel.startswith(pat[:-3] + "/"):
                return True
        elif "/" not in pat and "/" in rel:
            continue
        elif fnmatch.fnmatchcase(rel, pat):
            return True
    return False


def read_marker(folder: Path) -> dict[str, Any] | None:
    """The marker's content (``None`` when absent or unreadable: then the folder is not known to be ours)."""
    try:
        doc = json.loads((folder / MARKER_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("tool") == "monai_anomaly" else None


def _write_marker(folder: Path, doc: dict[str, Any]) -> None:
    tmp = folder / f"{MARKER_NAME}.tmp"
    tmp.write_text(json.dumps(doc, indent=2, ensure_ascii=True), encoding="utf-8")
    os.replace(tmp, folder / MARKER_NAME)


def owned_files(folder: str | os.PathLike, kind: OutputKind) -> tuple[list[str], list[str]]:
    """Split the files under ``folder`` into (ours, not ours).

    Ours: the files the marker lists; for a run that ended before listing them (killed), the files matching
    ``kind.patterns``; for a folder without a marker, the files matching the patterns, but only when every file of
    ``kind.legacy_required`` is present (an earlier version's result). Sub-folders in ``kind.subfolders`` are judged
    by their own marker (or the evaluate / infer rules).
    """
    folder = Path(folder)
    present = _rel_files(folder)
    marker = read_marker(folder)
    listed: set[str] = set()
    if marker is not None:
        listed = {str(f) for f in marker.get("files", []) if isinstance(f, str)}
        by_pattern = not marker.get("complete", False)
    else:
        by_pattern = bool(kind.legacy_required) and all((folder / f).is_file() for f in kind.legacy_required)
    ours, foreign = [], []
    sub_rules = {s: (EVALUATE if s == "eval" else INFER) for s in kind.subfolders}
    sub_result: dict[str, tuple[list[str], list[str]]] = {}
    for rel in present:
        top = rel.split("/", 1)[0]
        if top in sub_rules and "/" in rel:
            if top not in sub_result:
                o, f = owned_files(folder / top, sub_rules[top])
                sub_result[top] = ([f"{top}/{x}" for x in o], [f"{top}/{x}" for x in f])
            continue
        if rel in listed or (by_pattern and _matches(rel, kind.patterns)):
            ours.append(rel)
        else:
            foreign.append(rel)
    for o, f in sub_result.values():
        ours += o
        foreign += f
    return sorted(ours), sorted(foreign)


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _show(items: Sequence[str], n: int = 5) -> str:
    shown = ", ".join(repr(x)[1:-1] for x in items[:n])  # repr: names that are not valid UTF-8 print escaped
    return shown + (f" and {len(items) - n} more" if len(items) > n else "")


def _remove_owned(folder: Path, ours: Sequence[str]) -> None:
    dirs: set[Path] = set()
    for rel in ours:
        p = folder / rel
        if p.is_symlink() or p.is_file():
            p.unlink()
        parent = p.parent
        while parent != folder and folder in parent.parents:
            dirs.add(parent)
            parent = parent.parent
    for d in sorted(dirs, key=lambda x: len(x.parts), reverse=True):
        left = {c.name for c in d.iterdir()} if d.is_dir() else set()
        if left == {MARKER_NAME}:  # a sub-result (eval/, infer/) whose files were all removed: its marker goes too
            (d / MARKER_NAME).unlink()
        try:
            d.rmdir()  # only when empty
        except OSError:
            pass


@dataclass
class OutputClaim:
    """An output folder taken for one run: locked, marked, and recorded when the run ends.

    Use :func:`claim_output`; as a context manager it records the files and releases the lock on exit, and on a
    failure removes what this run created (``keep_on_failure`` keeps, e.g., a training run's checkpoints).
    """

    path: Path
    kind: OutputKind
    created_dir: bool
    before: set[str] = field(default_factory=set)
    before_dirs: set[str] = field(default_factory=set)
    nested: bool = False
    keep_on_failure: bool = False
    _released: bool = False

    def created_files(self) -> list[str]:
        return [f for f in _rel_files(self.path) if f not in self.before] if self.path.is_dir() else []

    def finish(self, complete: bool = True) -> None:
        """Record every file under the folder that this run wrote (the marker's ``files``) and release the lock."""
        if self._released or self.nested:
            return
        if self.path.is_dir():
            marker = read_marker(self.path) or {}
            files = sorted(set(marker.get("files", [])) | set(self.created_files()))
            marker.update(files=files, complete=bool(complete), finished=_now())
            try:
                _write_marker(self.path, marker)
            except OSError:
                pass  # e.g. disk full: the marker written at the start still says the folder is ours
        self.release()

    def fail(self) -> None:
        """After a failure: delete what this run wrote (unless ``keep_on_failure``), then the folder if this run
        created it and it is empty, and release the lock."""
        if self.nested or self._released:
            return
        if not self.keep_on_failure and self.path.is_dir():
            _remove_owned(self.path, self.created_files())
            for root, dirs, _ in os.walk(self.path, topdown=False):  # empty folders this run created (models/)
                for d in dirs:
                    p = Path(root) / d
                    if p.relative_to(self.path).as_posix() not in self.before_dirs and not p.is_symlink():
                        try:
                            p.rmdir()
                        except OSError:
                            pass
        if self.created_dir and self.path.is_dir() and not _rel_files(self.path):
            for n in _OURS:
                (self.path / n).unlink(missing_ok=True)
            (self.path / f"{MARKER_NAME}.tmp").unlink(missing_ok=True)
            try:
                self.path.rmdir()
            except OSError:
                pass
            self._released = True
            return
        self.finish(complete=False)

    def release(self) -> None:
        if not self._released and not self.nested:
            lock = self.path / LOCK_NAME
            try:
                if json.loads(lock.read_text()).get("pid") == os.getpid():
                    lock.unlink()
            except (OSError, ValueError):
                pass
            _HELD.discard(self.path)
        self._released = True

    def __enter__(self) -> OutputClaim:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.finish()
        else:
            self.fail()


_HELD: set[Path] = set()  # folders this process holds (a nested claim, e.g. the demo's train, reuses the lock)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _take_lock(folder: Path, kind: OutputKind) -> None:
    lock = folder / LOCK_NAME
    doc = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": kind.command, "date": _now()})
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                held = json.loads(lock.read_text())
                pid, host = int(held.get("pid", -1)), held.get("host")
            except (OSError, ValueError, TypeError):
                pid, host = -1, None
            if host in (None, socket.gethostname()) and pid != os.getpid() and _pid_alive(pid):
                raise OutputInUseError(
                    f"{folder}: in use by another monai_anomaly run (pid {pid}, {held.get('command', '?')} since "
                    f"{held.get('date', '?')}); wait for it to end or choose another --output_dir. If no such run is "
                    f"going on, delete {lock}."
                ) from None
            if host not in (None, socket.gethostname()):
                raise OutputInUseError(
                    f"{folder}: locked by a monai_anomaly run on host {host} (pid {pid}); if no such run is going on, "
                    f"delete {lock}."
                ) from None
            lock.unlink(missing_ok=True)  # stale: its process is gone
            continue
        with os.fdopen(fd, "w") as f:
            f.write(doc)
        return
    raise OutputInUseError(f"{folder}: cannot take the lock {lock}")


def claim_output(
    output_dir: str | os.PathLike,
    kind: OutputKind,
    overwrite: bool = False,
    keep: bool = False,
    argv: Sequence[str] | None = None,
    keep_on_failure: bool = False,
) -> OutputClaim:
    """Take ``output_dir`` for a run of ``kind``: lock it, check what it holds, apply ``--overwrite``, mark it.

    Args:
        output_dir: the folder (created if missing).
        kind: what the command writes (:data:`INFER`, :data:`EVALUATE`, :data:`TRAIN`, :data:`DEMO`, or the audit's
            ``monai_anomaly.data.audit.report.AUDIT``).
        overwrite: delete an earlier result of ours first (only the files its marker lists; other files are kept).
        keep: keep an earlier result of ours as it is (``train --resume``): the folder must be ours.
        argv: the command line, recorded in the marker.
        keep_on_failure: on failure, keep what the run wrote (a training run's checkpoints, for ``--resume``).

    Raises:
        OutputInUseError: another running process holds the folder.
        FileExistsError: the folder holds an earlier result and neither ``overwrite`` nor ``keep`` was given.
        OutputNotOursError: the folder is not empty and not ours (its files are named in the message).
        NotADirectoryError: ``output_dir`` is a file.
    """
    folder = Path(output_dir).expanduser().absolute()
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"{folder}: exists and is not a folder; choose another --output_dir.")
    if folder in _HELD:  # this process already holds it (the demo's train step): nothing more to check
        return OutputClaim(folder, kind, created_dir=False, before=set(_rel_files(folder)), nested=True)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    _take_lock(folder, kind)
    _HELD.add(folder)
    claim = OutputClaim(folder, kind, created_dir=created, keep_on_failure=keep_on_failure)
    try:
        present = _rel_files(folder)
        if present:
            ours, foreign = owned_files(folder, kind)
            marker = read_marker(folder)
            if marker is None and not ours:
                raise OutputNotOursError(
                    f"{folder}: not empty and not a monai_anomaly {kind.what} ({_show(foreign)}); nothing was deleted"
                    + (" (--overwrite only deletes files monai_anomaly wrote)" if overwrite else "")
                    + ". Choose an empty or new --output_dir."
                )
            if ours and not (overwrite or keep):
                unfinished = marker is not None and not marker.get("complete", False)
                raise FileExistsError(
                    f"{folder}: holds an earlier {kind.what}"
                    + (" that did not finish (the run was stopped)" if unfinished else "")
                    + ("; pass --resume True to continue it" if unfinished and kind.command in _RESUMABLE else "")
                    + "; pass --overwrite to replace it, or choose another --output_dir."
                )
            clobber = [f for f in foreign if _matches(f, kind.patterns)]
            if clobber and not keep:
                raise OutputNotOursError(
                    f"{folder}: holds files monai_anomaly did not write under names that `{kind.command}` writes "
                    f"({_show(clobber)}); they would be overwritten, so nothing was done. Move them or choose "
                    "another --output_dir."
                )
            if foreign:
                logger.warning(
                    "%s: keeping %d file(s) monai_anomaly did not write (%s); they are never deleted",
                    folder,
                    len(foreign),
                    _show(foreign),
                )
            if overwrite and ours:
                _remove_owned(folder, ours)
                (folder / MARKER_NAME).unlink(missing_ok=True)
        marker = read_marker(folder) if keep else None
        doc = {
            "tool": "monai_anomaly",
            "version": __version__,
            "command": kind.command,
            "argv": [a.encode("utf-8", "surrogateescape").decode("utf-8", "replace") for a in (argv or sys.argv)],
            "date": _now(),
            "pid": os.getpid(),
            "complete": False,
            "files": (marker or {}).get("files", []) if keep else [],
        }
        if keep and marker is None:  # an earlier version's run, recognised by its files: list them now
            doc["files"] = owned_files(folder, kind)[0]
        _write_marker(folder, doc)
        claim.before = set(_rel_files(folder))
        claim.before_dirs = {Path(r, d).relative_to(folder).as_posix() for r, ds, _ in os.walk(folder) for d in ds}
    except BaseException:
        claim.release()
        if created:
            for n in _OURS:
                (folder / n).unlink(missing_ok=True)
            try:
                folder.rmdir()
            except OSError:
                pass
        raise
    return claim
