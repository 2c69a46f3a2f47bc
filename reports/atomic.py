"""Write a file so that a reader never sees half of it, and never through a planted link.

Shared by the report builder and the experiment folder (``sim.experiments.folder`` imports it; ``reports``
may not import ``sim``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def fresh_sibling(path: Path, tag: str = "tmp") -> Path:
    """A new empty file beside ``path`` under an unpredictable hidden name, created exclusively
    (``O_EXCL``, not following links: a fixed name could be a symlink planted to make a write land outside
    the folder), with mode 0666 less the umask, as any file the user writes (``tempfile.mkstemp`` would
    make it 0600, and a rename keeps that mode)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    return _beside(path, tag, lambda name: os.close(os.open(name, flags, 0o666)))


def _beside(path: Path, tag: str, create: Callable[[Path], object]) -> Path:
    """``create(name)`` for a fresh hidden name ``.<path's name>.<hex>.<tag>`` beside ``path``; ``create``
    must fail with FileExistsError on a name that exists (then another is tried)."""
    while True:
        name = path.with_name(f".{path.name}.{secrets.token_hex(6)}.{tag}")
        try:
            create(name)
            return name
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
    with _signals_kept():
        _write_all(writes)


def _write_all(writes: dict[Path, Callable[[Path], object]]) -> None:
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
            except BaseException:
                if os.path.lexists(tmp):  # not replaced: its previous version is still in place
                    if previous is not None:
                        previous.unlink(missing_ok=True)
                else:  # replaced after all (the exception came just after the rename)
                    done.append((current, previous))
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
    for _, previous in done:  # all in place: the previous versions go (one that will not stays hidden)
        if previous is not None:
            with contextlib.suppress(OSError):
                previous.unlink(missing_ok=True)


def _keep_previous(path: Path) -> Path | None:
    """A hard link to ``path``'s current file (None when there is none), so a failed :func:`write_all_atomic`
    can put it back; a copy where the file system has no hard links."""
    if not (path.exists() or path.is_symlink()):
        return None
    try:
        return _beside(path, "previous", lambda link: os.link(path, link, follow_symlinks=False))
    except OSError as exc:
        if exc.errno not in _NO_HARD_LINKS:
            raise
        return _copy_of(path)


#: What link(2) says where a file system (FAT, some network ones) or protected_hardlinks refuses a link.
_NO_HARD_LINKS = {errno.EPERM, errno.EMLINK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS}


def _copy_of(path: Path) -> Path:
    """:func:`_keep_previous` without hard links: a symlink is copied as a symlink (not as the file it
    points to), a file with its mode; a copy that fails half way is removed."""
    if path.is_symlink():
        target = os.readlink(path)
        return _beside(path, "previous", lambda copy: os.symlink(target, copy))
    copy = fresh_sibling(path, "previous")
    try:
        shutil.copy2(path, copy)
    except BaseException:
        copy.unlink(missing_ok=True)
        raise
    return copy


@contextlib.contextmanager
def _signals_kept() -> Iterator[None]:
    """SIGINT and SIGTERM kept meanwhile, then raised again for the handlers the caller had: raised
    between a rename and its bookkeeping, a signal would leave two reports mixed or a previous version
    unrecorded. Handlers, not a signal mask: a mask is per thread, and a process-directed signal goes to
    any thread that does not block it (numpy's BLAS threads), whose interpreter flag the main thread then
    acts on anyway. Python handlers run in the main thread only, so elsewhere nothing is changed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    kept: list[int] = []
    previous: dict[int, Any] = {}
    for signum in (int(signal.SIGINT), int(signal.SIGTERM)):
        if signal.getsignal(signum) is not None:  # (None: a handler set outside Python; left alone)
            previous[signum] = signal.signal(signum, lambda s, _f: kept.append(s))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if kept:
            signal.raise_signal(kept[0])


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
