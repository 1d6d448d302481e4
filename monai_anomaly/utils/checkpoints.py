"""Safe checkpoint loading: plain tensors and containers only, and errors that name the file and say what is wrong."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

from monai_anomaly.utils.errors import BadInputError

__all__ = ["load_checkpoint"]

_GLOBAL_RE = re.compile(r"GLOBAL ([\w.]+)")
_ADVICE_RE = re.compile(r"weights_only|trust|safe_globals|allowlist", re.IGNORECASE)
_PLAIN_ONLY = "only tensors, numbers, strings and lists/dicts of them are read"


def _clean(text: str) -> str:
    """The first line of an error message, without sentences that advise loading the file another (unsafe) way."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    keep = [s for s in re.split(r"(?<=\.)\s+", line) if not _ADVICE_RE.search(s)]
    return " ".join(keep)[:300]


def _reason(err: BaseException, path: Path) -> str:
    """What went wrong, in plain words, without PyTorch's advice on loading the file another (unsafe) way."""
    text = str(err)
    with open(path, "rb") as f:
        head = f.read(2)
    if isinstance(err, EOFError):
        return "the file ends too early (truncated or not completely written)"
    if "Weights only load failed" in text or "WeightsUnpickler" in text:
        found = _GLOBAL_RE.search(text)
        if found:
            return (
                f"it holds Python objects ({found.group(1)}), not just plain data; {_PLAIN_ONLY}, so it cannot be "
                "loaded safely and was not loaded"
            )
        kind = "a plain Python pickle or corrupted data" if head[:1] == b"\x80" else "unrecognised or corrupted data"
        return f"not a PyTorch checkpoint ({kind}); it was not loaded"
    if "central directory" in text:
        return "not a complete PyTorch checkpoint (the archive is truncated or corrupted)"
    if "PytorchStreamReader" in text:
        return "a zip archive but not a PyTorch checkpoint"
    if head != b"PK" and head[:1] != b"\x80":
        return "not a PyTorch checkpoint (unrecognised data)"
    return f"{type(err).__name__}: {_clean(text)}"


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """Read a ``torch.save`` file with ``torch.load(..., weights_only=True)``: tensors, numbers, strings and containers
    only, so that a planted file cannot run code.

    Every failure becomes a short :class:`~monai_anomaly.utils.errors.BadInputError` naming the file and the problem:
    missing, a folder, empty, truncated or not a checkpoint, or holding Python objects that cannot be loaded safely.

    Args:
        path: the checkpoint file.
        map_location: ``torch.load`` map location.

    Returns:
        the loaded object (usually a dict of state dicts).

    Raises:
        BadInputError: the file cannot be loaded (the message names it and says why).

    Example:
        >>> state = load_checkpoint("models/model.pt")  # doctest: +SKIP
        >>> load_checkpoint("notes.txt")  # doctest: +SKIP
        BadInputError: notes.txt: not a readable PyTorch checkpoint (...)
    """
    path = Path(path)
    if not path.exists():
        raise BadInputError(path, "no such checkpoint file")
    if path.is_dir():
        raise BadInputError(path, "is a folder, not a checkpoint file")
    try:
        if path.stat().st_size == 0:
            raise BadInputError(path, "checkpoint file is empty (0 bytes)")
        return torch.load(path, map_location=map_location, weights_only=True)
    except BadInputError:
        raise
    except OSError as e:
        raise BadInputError(path, f"cannot read checkpoint ({e.strerror or type(e).__name__})") from None
    except Exception as e:  # noqa: BLE001 - torch raises many types; each becomes a plain-words error naming the file
        try:
            reason = _reason(e, path)
        except OSError:
            reason = f"{type(e).__name__}: {_clean(str(e))}"
        raise BadInputError(path, f"cannot load checkpoint: {reason}") from None
