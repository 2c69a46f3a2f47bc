"""Write a file so that a reader never sees half of it, and never through a planted link.

Shared by the report builder and the experiment folder (``sim.experiments.folder`` imports it; ``reports``
may not import ``sim``).
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path


def fresh_sibling(path: Path, tag: str = "tmp") -> Path:
    """A new empty file beside ``path`` under an unpredictable hidden name, created exclusively
    (``O_EXCL``, not following links: a fixed name could be a symlink planted to make a write land outside
    the folder), with mode 0666 less the umask, as any file the user writes (``tempfile.mkstemp`` would
    make it 0600, and a rename keeps that mode)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.{tag}")
        try:
            os.close(os.open(tmp, flags, 0o666))
            return tmp
        except FileExistsError:  # (a collision of 48 random bits): another name
            continue


def write_atomic(path: Path, write: Callable[[Path], object]) -> None:
    """``write(tmp)`` into a :func:`fresh_sibling`, then rename it over ``path``; the sibling never
    outlives the call."""
    tmp = fresh_sibling(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_all_atomic(writes: dict[Path, Callable[[Path], object]]) -> None:
    """:func:`write_atomic` for several files that belong together (a report's Markdown, HTML and CSVs):
    all or none. Every new file is written first; then each replaces its name, the previous one kept as a
    hard link until all are in place. If any write or rename fails, the files already replaced get their
    previous version back (a file that did not exist is removed again) and the error is raised. A previous
    version that cannot be put back stays under its hidden ``.<name>.<hex>.previous`` name, never deleted."""
    temps: dict[Path, Path] = {}
    done: list[tuple[Path, Path | None]] = []  # replaced: (path, its previous version, or None: it was new)
    current = None
    try:
        for current, write in writes.items():
            temps[current] = fresh_sibling(current)
            write(temps[current])
        for current, tmp in temps.items():
            previous = _keep_previous(current)
            try:
                os.replace(tmp, current)
            except BaseException:  # not replaced: its previous version is still in place
                if previous is not None:
                    previous.unlink(missing_ok=True)
                raise
            done.append((current, previous))
    except OSError as exc:  # named by the file it was about, not by a temporary name
        _put_back(done)
        raise OSError(exc.errno, exc.strerror or str(exc), str(current)) from None
    except BaseException:
        _put_back(done)
        raise
    finally:
        for tmp in temps.values():
            tmp.unlink(missing_ok=True)
    for _, previous in done:
        if previous is not None:
            previous.unlink(missing_ok=True)


def _keep_previous(path: Path) -> Path | None:
    """A hard link to ``path``'s current file (None when there is none), so a failed :func:`write_all_atomic`
    can put it back; a copy where the file system has no hard links."""
    if not (path.exists() or path.is_symlink()):
        return None
    while True:
        link = path.with_name(f".{path.name}.{secrets.token_hex(6)}.previous")
        try:
            os.link(path, link, follow_symlinks=False)
            return link
        except FileExistsError:  # (a collision of 48 random bits): another name
            continue
        except OSError:  # no hard links here (some network or FAT file systems)
            copy = fresh_sibling(path, "previous")
            shutil.copyfile(path, copy)
            return copy


def _put_back(done: list[tuple[Path, Path | None]]) -> None:
    for path, previous in reversed(done):
        try:
            if previous is None:
                path.unlink(missing_ok=True)
            else:
                os.replace(previous, path)
                previous.unlink(missing_ok=True)  # (rename does nothing when both names are one file)
        except OSError:  # the previous version stays under its hidden name (see write_all_atomic)
            continue
