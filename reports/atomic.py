"""Write a file so that a reader never sees half of it, and never through a planted link.

Shared by the report builder and the experiment folder (``sim.experiments.folder`` imports it; ``reports``
may not import ``sim``).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path


def write_atomic(path: Path, write: Callable[[Path], object]) -> None:
    """``write(tmp)`` into a fresh sibling, then rename it over ``path``; the sibling never outlives the call.

    The sibling is created exclusively (``O_EXCL``, not following links) under an unpredictable name: a
    fixed name could be a symlink planted to make the write land outside the folder. It is created with
    mode 0666 less the umask, as any file the user writes (``tempfile.mkstemp`` would make it 0600, and the
    rename keeps that mode)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            os.close(os.open(tmp, flags, 0o666))
            break
        except FileExistsError:  # (a collision of 48 random bits): another name
            continue
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
