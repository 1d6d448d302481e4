"""Text that can always be written: file names that are not valid UTF-8 shown escaped."""

from __future__ import annotations

import os
import re

__all__ = ["safe_text", "safe_file_stem"]


def safe_text(value: str | os.PathLike | bytes) -> str:
    """``value`` as text that any UTF-8 writer (CSV, JSON, a plot label) accepts: bytes that are not UTF-8 (Python
    keeps them in a file name as lone surrogates) are written as ``\\xNN`` escapes.

    Example:
        >>> safe_text(b"caf\\xe9.png".decode("utf-8", "surrogateescape"))
        'caf\\\\xe9.png'
    """
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    text = os.fspath(value)
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def safe_file_stem(value: str) -> str:
    """A file-name stem from an id: characters other than letters, digits, ``.``, ``_``, ``-`` become ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", safe_text(value)).strip("_") or "volume"
