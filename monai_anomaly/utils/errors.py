"""Errors and the record of skipped bad input."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

__all__ = ["BadInputError", "SkippedFile", "SkipLog"]

logger = logging.getLogger("monai_anomaly")


class BadInputError(ValueError):
    """A file or folder that cannot be used, with the offending path in the message.

    Args:
        path: the file or folder.
        problem: what is wrong with it, in words a user understands.

    Example:
        >>> str(BadInputError("/data/a.nii.gz", "contains NaN voxels"))
        '/data/a.nii.gz: contains NaN voxels'
    """

    def __init__(self, path: str | os.PathLike, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self):  # keep picklable for DataLoader workers
        return (self.__class__, (self.path, self.problem))


@dataclass
class SkippedFile:
    """One input that was skipped because it was bad."""

    path: str
    problem: str

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "problem": self.problem}


@dataclass
class SkipLog:
    """Collects bad inputs when the user asked to skip them, so that reports can list them.

    Use :meth:`handle` inside an ``except BadInputError`` block: with ``skip_bad=False`` it re-raises, otherwise it
    warns and records the file.
    """

    skip_bad: bool = False
    skipped: list[SkippedFile] = field(default_factory=list)

    def handle(self, err: BadInputError) -> None:
        if not self.skip_bad:
            raise err
        logger.warning("skipping bad input %s", err)
        self.skipped.append(SkippedFile(err.path, err.problem))

    def extend(self, other: SkipLog) -> None:
        self.skipped.extend(other.skipped)

    def as_list(self) -> list[dict[str, str]]:
        return [s.as_dict() for s in self.skipped]

    def __len__(self) -> int:
        return len(self.skipped)
