"""The report builder's user-facing error.

``reports`` may not import ``sim`` (import-linter contract), so it cannot raise ``sim.errors.InputError``.
:class:`ReportError` carries the same ``file`` / ``where`` / ``detail`` fields and formats its message
the same way, so the CLI can turn it into an ``InputError`` (one message, exit code 2) unchanged.
"""

from __future__ import annotations

import os
from pathlib import Path


class ReportError(ValueError):
    """A run or experiment folder that cannot be reported: missing or malformed file, missing column."""

    def __init__(self, message: str, *, file: str | Path | None = None, where: str | None = None) -> None:
        self.file = str(file) if file is not None else None
        self.where = where
        self.detail = message
        super().__init__(self.format())

    def format(self) -> str:
        parts = [p for p in (self.file, self.where) if p]
        return ": ".join([*parts, self.detail])


def os_reason(exc: OSError) -> str:
    """What the system said, without the path or errno number Python adds ("Permission denied"): the
    message names the file itself. (pyarrow puts its own sentence in ``strerror``; the errno says it.)"""
    return os.strerror(exc.errno) if exc.errno else (exc.strerror or str(exc))
