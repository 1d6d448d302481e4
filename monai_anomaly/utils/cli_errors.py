"""What the command line prints when a run fails: the real cause in one or two lines, no traceback.

MONAI wraps an error raised inside a bundle several times (``RuntimeError: Failed to evaluate ConfigExpression``,
``RuntimeError: applying transform ...``), and its ``StatsHandler`` logs the whole traceback. The CLI uses
:func:`root_cause` to find the error worth showing, :func:`exit_code` to choose the exit status and
:func:`quiet_tracebacks` so that log records carry no traceback unless the user asked for one (``--debug`` or
``MONAI_ANOMALY_DEBUG=1``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from monai_anomaly.utils.errors import BadInputError

__all__ = [
    "UsageError",
    "root_cause",
    "exit_code",
    "disk_full",
    "format_error",
    "quiet_tracebacks",
    "debug_requested",
]

DEBUG_ENV = "MONAI_ANOMALY_DEBUG"

# errors that are the user's input or options (exit status 2); anything else is ours or the system's (exit status 1)
_USER_ERRORS: tuple[type[BaseException], ...] = (
    BadInputError,
    FileNotFoundError,
    FileExistsError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
    ValueError,
)
# wrappers that only say where an error happened (MONAI's config and transform layers, ignite, DataLoader workers)
_WRAPPER_PREFIXES = ("Failed to evaluate", "applying transform", "Caught ", "Engine run is terminating")


class UsageError(ValueError):
    """A command-line option that cannot work (checked before any work starts)."""


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in out:
        out.append(cur)
        cur = cur.__cause__ or (None if cur.__suppress_context__ else cur.__context__)
    return out


def root_cause(exc: BaseException) -> BaseException:
    """The error to show for ``exc``: the first :class:`BadInputError` / :class:`UsageError` in its cause chain, else
    the innermost error that is not one of MONAI's or ignite's wrappers.

    Example:
        >>> try:
        ...     try:
        ...         raise BadInputError("a.png", "empty file")
        ...     except BadInputError as e:
        ...         raise RuntimeError("Failed to evaluate ConfigExpression") from e
        ... except RuntimeError as e:
        ...     print(root_cause(e))
        a.png: empty file
    """
    chain = _chain(exc)
    for e in chain:
        if isinstance(e, (BadInputError, UsageError)):
            return e
    for e in chain:  # a project error the user can act on (a missing file, an existing output...)
        if isinstance(e, _USER_ERRORS) and not str(e).startswith(_WRAPPER_PREFIXES):
            return e
    inner = [e for e in chain if not str(e).startswith(_WRAPPER_PREFIXES)]
    return inner[-1] if inner else chain[-1]


def exit_code(exc: BaseException) -> int:
    """2 for bad input, bad options or outputs in the way; 1 for anything else."""
    return 2 if isinstance(root_cause(exc), _USER_ERRORS) else 1


_DISK_FULL_TEXT = ("No space left on device", "iostream error", "Disk quota exceeded", "failed writing file")


def disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or an error in its chain) is a full disk: ``ENOSPC`` / ``EDQUOT``, or the messages torch's
    C++ writer gives for it (``basic_ios::clear: iostream error``)."""
    import errno

    for e in _chain(exc):
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if any(t in str(e) for t in _DISK_FULL_TEXT):
            return True
    return False


def format_error(exc: BaseException, where: str | None = None) -> str:
    """``error: <message>`` for the cause of ``exc`` (a DataLoader worker's embedded traceback is cut off).

    ``where``: the run's output folder, named when the error itself names no file (a full disk)."""
    if disk_full(exc):
        named = next((e.filename for e in _chain(exc) if isinstance(e, OSError) and e.filename), None)
        return (
            f"error: {named or where or 'the output folder'}: no space left on the device while writing results; "
            "free some space and run again (finished files and the last complete checkpoint were kept; `train` "
            "continues with --resume)"
        )
    cause = root_cause(exc)
    msg = str(cause).strip() or type(cause).__name__
    if "Original Traceback" in msg:  # torch re-raises worker errors with the worker's traceback in the message
        msg = msg.splitlines()[-1].strip()
    if isinstance(cause, (FileNotFoundError, FileExistsError)) and cause.filename and str(cause.filename) not in msg:
        msg = f"{cause.filename}: {msg}"
    if not isinstance(cause, _USER_ERRORS) and not isinstance(cause, RuntimeError):
        msg = f"{type(cause).__name__}: {msg}"
    return f"error: {msg}"


def debug_requested(argv: list[str]) -> tuple[bool, list[str]]:
    """Whether ``--debug`` is in ``argv`` or ``MONAI_ANOMALY_DEBUG`` is set, and ``argv`` without the flag."""
    env = os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes", "on")
    return env or "--debug" in argv, [a for a in argv if a != "--debug"]


def quiet_tracebacks() -> Callable[..., Any]:
    """Make every log record created from now on carry no traceback (``logger.exception`` prints its message only).

    Returns the previous record factory, so a caller can restore it with :func:`logging.setLogRecordFactory`.
    """
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        return record

    logging.setLogRecordFactory(factory)
    return previous
