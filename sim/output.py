"""Write a run folder safely: summary.json, scenario.yaml, run_info.json and the parquet tables.

Safety rules (issue 8), because a run folder lives among the user's own files:

* Never delete or replace anything llmsim did not write. An existing non-empty folder is refused unless
  it is a run folder (:func:`is_run_folder`: its ``summary.json`` is an llmsim summary) and
  ``overwrite`` is set; even then only the names in :data:`RUN_FILES` are replaced or removed, every
  other file stays, and a failed replacement puts the previous run's files back (:func:`_commit`).
* Everything is first written into a temporary sibling (``.llmsim-tmp-<tag>-<random>``) holding an
  owner file (:data:`OWNER_FILE`); only then is it moved into place, a folder rename or one
  ``os.replace`` per file. A failed or interrupted run leaves nothing; a killed one leaves a marked
  temporary folder that the next run into the same folder recognises by its owner file and removes.
* One run at a time per folder: :func:`reserve_out_dir` holds an exclusive ``flock`` on a lock file
  in the parent from the first check through the last write. The kernel drops it when the process
  dies, so a stale lock file from a killed run never blocks the next one.
* Any OS error (name too long, read-only disk, permission) becomes an :class:`InputError` naming the
  path, so the CLI exits with code 2 and one message.

``summary.json`` holds only deterministic numbers: same scenario and seed give a byte-identical file.
Wall times go to run_info.json.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import yaml

from sim.errors import InputError, os_reason
from sim.tables import write_parquet

if TYPE_CHECKING:  # the CLI imports this module for its signal guard even where nothing runs
    from sim.results import RunResult

RUN_MARKER = "summary.json"
# Every file a run may write, in the order they are moved into place (summary.json, the marker that
# makes a folder a run folder, last). Files of a previous run that this run does not write are removed.
RUN_FILES: tuple[str, ...] = ("requests.parquet", "batches.parquet", "occupancy.parquet", "instances.parquet",
                              "scenario.yaml", "run_info.json", "summary.json")
TMP_PREFIX = ".llmsim-tmp-"
LOCK_PREFIX = ".llmsim-lock-"
OWNER_FILE = ".llmsim-owner"
MAX_SHOWN = 120  # longest path shown in a message


def shown(path: str | Path) -> str:
    """``path`` for a message: a name too long to use (ENAMETOOLONG) is shortened in the middle."""
    text = str(path)
    if len(text) <= MAX_SHOWN:
        return text
    return f"{text[:60]}…{text[-40:]} ({len(text)} characters)"


def _tag(out: Path) -> str:
    """A fixed-length stand-in for the folder name in sibling names (the name itself may be NAME_MAX)."""
    return hashlib.sha1(out.name.encode("utf-8", "surrogateescape")).hexdigest()[:12]


def _absolute(out: Path) -> Path:
    """The folder as an absolute normalised path, so ``.`` or ``a/..`` have a real name and parent."""
    return Path(os.path.abspath(out))


def dumps_summary(summary: dict[str, Any]) -> str:
    return json.dumps(summary, indent=2, sort_keys=True, allow_nan=False, default=_jsonable) + "\n"


def _jsonable(x: Any) -> Any:
    if hasattr(x, "item"):
        return x.item()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def _os_error(out: Path, exc: OSError, doing: str) -> InputError:
    reason = exc.strerror or str(exc)
    name = _user_path(exc)
    where = f" ({shown(name)})" if name and name != str(out) else ""
    return InputError(f"cannot {doing}: {reason}{where}", file=shown(out))


def _user_path(exc: OSError) -> str | None:
    """The path an OS error is about, as the user knows it: of a move from our temporary folder into the
    run folder, the run folder's file (the temporary one is gone by the time the message is read)."""
    names = [str(n) for n in (exc.filename, exc.filename2) if n]
    return next((n for n in names if TMP_PREFIX not in n), names[0] if names else None)


#: Whether ``os.access`` can check with the effective ids, as the writes will run: with the real ones
#: (its default) a process that may write by a capability (CAP_DAC_OVERRIDE) would be refused.
EFFECTIVE = os.access in os.supports_effective_ids


def writable_dir(path: Path) -> bool:
    """Whether ``path`` is a folder this process may create files in."""
    return path.is_dir() and os.access(path, os.W_OK | os.X_OK, effective_ids=EFFECTIVE)


def nearest_existing(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists (where a new folder's missing parents would be made)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_out_dir(out: Path, *, overwrite: bool = False) -> None:
    """Refuse, before simulating, a folder we could not write or must not replace."""
    try:
        _check_out_dir(out, overwrite)
    except OSError as exc:
        raise _os_error(out, exc, "use this run folder") from None


def _check_out_dir(out: Path, overwrite: bool) -> None:
    path = _absolute(out)
    if path.parent == path:
        raise InputError("is the root of the file system, not a run folder; choose another --out", file=out)
    if path.is_symlink() and not path.exists():
        raise InputError("is a broken symbolic link; choose another --out or remove it", file=shown(out))
    if path.exists():
        if not path.is_dir():
            raise InputError("exists and is not a folder; choose another --out", file=shown(out))
        if any(path.iterdir()):
            if not is_run_folder(path):
                raise InputError(_not_run_folder(path), file=shown(out))
            if not overwrite:
                raise InputError("already holds a run; pass --overwrite to replace its run files (other "
                                 "files in it are kept) or choose another --out", file=shown(out))
            for name in RUN_FILES:  # a run file's name taken by a folder (or a device) would stop the commit
                f = path / name
                if (f.exists() or f.is_symlink()) and not (f.is_file() or f.is_symlink()):
                    raise InputError(f"{name} there is not a file (llmsim writes its run file of that name); "
                                     "move it away or choose another --out", file=shown(out))
        if not writable_dir(path):  # the run files go into it: refused now, not after the run
            raise InputError("is not writable (permission denied); choose another --out", file=shown(out))
    parent = nearest_existing(path.parent)
    if not writable_dir(parent):
        raise InputError(f"cannot create the run folder here ({shown(parent)} is not a writable directory)",
                         file=shown(out))
    if len(path.name.encode("utf-8", "surrogateescape")) > _name_max(parent):
        raise InputError(f"folder name is {len(path.name)} characters; this file system allows at most "
                         f"{_name_max(parent)}", file=shown(out))


def _not_run_folder(path: Path) -> str:
    """Why a non-empty folder is refused: not a run folder, or one whose marker we may not even read (the
    user should hear about the permission, not be told the folder is someone else's)."""
    for name in (RUN_MARKER, "run_info.json"):
        try:
            if (path / name).is_file():
                (path / name).open("rb").close()
        except OSError as exc:
            return (f"exists, and its {name} cannot be read ({os_reason(exc)}), so it cannot be told to be "
                    "an llmsim run folder; choose another --out")
    return "exists and is not an llmsim run folder; choose another --out or remove it"


#: Fields every summary.json llmsim writes has (``sim.metrics.summary``): how a run folder is told from
#: a folder that happens to hold a file of that name.
SUMMARY_FIELDS = ("scenario", "policy", "seed", "queries")


def _json_object(path: Path, size_limit: int = 64 << 20) -> dict[str, Any] | None:
    """``path`` parsed as a JSON object, or None (missing, unreadable, too big, not JSON, not an object)."""
    try:
        if not path.is_file() or path.stat().st_size > size_limit:
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_run_folder(path: Path) -> bool:
    """Whether ``path`` holds a run llmsim wrote: its summary.json is an llmsim summary, or its
    run_info.json is llmsim's (a commit cut short before summary.json, which moves last, or a damaged
    summary that a resumed experiment redoes). A file named summary.json alone is not enough: the
    folder's run files would be replaced."""
    summary = _json_object(path / RUN_MARKER)
    if summary is not None and all(k in summary for k in SUMMARY_FIELDS):
        return True
    info = _json_object(path / "run_info.json")
    return info is not None and "llmsim_version" in info and "wall_time_s" in info


def _name_max(directory: Path) -> int:
    try:
        return int(os.pathconf(directory, "PC_NAME_MAX"))
    except (OSError, ValueError):
        return 255


# ---------------------------------------------------------------------------------------------- locking
_HELD: dict[Path, int] = {}  # folder -> fd of the lock this process holds on it


def _lock_file(out: Path) -> Path:
    return out.parent / f"{LOCK_PREFIX}{_tag(out)}"


def _acquire(out: Path) -> int:
    """An exclusive flock on the folder's lock file; refuse if another process holds it."""
    path = _lock_file(out)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode("ascii", "replace").strip()
            os.close(fd)
            pid = f" (pid {holder})" if holder.isdigit() else ""
            raise InputError(f"another llmsim run{pid} is writing to this folder; wait for it to finish "
                             "or choose another --out", file=shown(out)) from None
        # The previous holder unlinks the file before releasing it: make sure ours is still the one there.
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            return fd
        os.close(fd)


def _release(out: Path, fd: int) -> None:
    with contextlib.suppress(OSError):
        os.unlink(_lock_file(out))
    os.close(fd)


def _make_parents(path: Path) -> list[Path]:
    """Create the missing ancestors of ``path``; return the ones created (outermost first)."""
    missing = []
    parent = path.parent
    while not parent.exists():
        missing.append(parent)
        parent = parent.parent
    created = []
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:  # made by a concurrent run meanwhile: not ours to remove
            continue
        created.append(d)
    return created


@contextlib.contextmanager
def reserve_out_dir(out: Path, *, overwrite: bool = False) -> Iterator[None]:
    """Check ``out`` and hold its lock until the block ends (simulate and :func:`write_run` inside it).

    Creates missing parent folders (the lock lives in the parent) and removes them again if the block
    fails before anything was written. Stale temporary folders of killed runs are removed here.
    """
    check_out_dir(out, overwrite=overwrite)
    path = _absolute(out)
    created: list[Path] = []
    try:
        created = _make_parents(path)
        fd = _acquire(path)
    except OSError as exc:
        remove_empty(created)
        raise _os_error(out, exc, "create the run folder") from None
    except BaseException:
        remove_empty(created)
        raise
    _HELD[path] = fd
    try:
        _remove_stale_temps(path)
        yield
    except BaseException:
        del _HELD[path]
        _release(path, fd)
        if not path.exists():
            remove_empty(created)
        raise
    del _HELD[path]
    _release(path, fd)


def remove_empty(dirs: list[Path]) -> None:
    """Remove the folders ``dirs`` (outermost first) from the innermost out, each only if it is empty."""
    for d in reversed(dirs):
        with contextlib.suppress(OSError):
            d.rmdir()  # only if still empty: never removes anything else


# ------------------------------------------------------------------------------------ temporary folders
def _owner() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname()}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _owned_stale(tmp: Path, out: Path) -> bool:
    """True for a temporary folder a dead llmsim process on this host left for ``out``."""
    try:
        if tmp.is_symlink() or not tmp.is_dir():
            return False
        owner = json.loads((tmp / OWNER_FILE).read_text(encoding="utf-8"))
        return (isinstance(owner, dict) and owner.get("out") == str(out)
                and owner.get("host") == socket.gethostname()
                and isinstance(owner.get("pid"), int) and not _pid_alive(owner["pid"]))
    except (OSError, ValueError):
        return False


def _remove_stale_temps(out: Path) -> None:
    for tmp in out.parent.glob(f"{TMP_PREFIX}{_tag(out)}-*"):
        if _owned_stale(tmp, out):
            _remove_tmp(tmp)


def _remove_tmp(tmp: Path) -> None:
    """Remove a temporary folder of ours: its files, then the owner file (last, so a removal cut short
    still leaves it recognisable), then the folder."""
    with contextlib.suppress(OSError):
        for p in tmp.iterdir():
            if p.name == OWNER_FILE:
                continue
            if p.is_dir() and not p.is_symlink():  # .previous: the replaced run's files (_commit)
                if any(p.iterdir()):  # a rollback could not put them back: never delete them
                    return
                p.rmdir()
            else:
                p.unlink()
        (tmp / OWNER_FILE).unlink(missing_ok=True)
        tmp.rmdir()


def _new_tmp(out: Path) -> Path:
    """A fresh temporary sibling of ``out`` with its owner file (mode from the umask, like any folder)."""
    while True:
        tmp = out.parent / f"{TMP_PREFIX}{_tag(out)}-{secrets.token_hex(4)}"
        try:
            tmp.mkdir()
            break
        except FileExistsError:
            continue
    (tmp / OWNER_FILE).write_text(json.dumps({**_owner(), "out": str(out)}) + "\n", encoding="utf-8")
    return tmp


# --------------------------------------------------------------------------------------------- signals
class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived (raised by the handler :class:`SignalGuard` installs). A BaseException,
    like KeyboardInterrupt, so no ``except Exception`` swallows it and every cleanup runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)  # args stay (signum,): copies and pickles rebuild it
        self.signum = int(signum)

    def __str__(self) -> str:
        return signal.Signals(self.signum).name


class SignalGuard:
    """Turns SIGINT and SIGTERM into :class:`Interrupted`, except inside :meth:`hold` (moving finished
    files into place, removing a temporary folder), where the signal is only recorded: those steps are
    short and must not be cut in half. After the first signal further ones are ignored, so cleanup runs
    to its end.

    A handler runs between any two bytecodes, also inside a weakref callback or ``__del__``, where Python
    prints the exception and drops it. So the run also calls :meth:`check` at safe points (progress
    updates, before each file, before moving files into place), which raises a signal that was lost that
    way, and the unraisable hook stays silent about Interrupted.
    """

    def __init__(self) -> None:
        self.pending: int | None = None
        self._holding = 0
        self._old: dict[int, Any] = {}
        self._old_hook: Callable[[Any], object] | None = None

    def install(self) -> None:
        """Install the handlers (only the main thread may; elsewhere signals keep their handlers)."""
        self.pending = None
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)
        self._old_hook = sys.unraisablehook
        sys.unraisablehook = self._unraisable

    def restore(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()
        if self._old_hook is not None:
            sys.unraisablehook = self._old_hook
            self._old_hook = None

    def _unraisable(self, unraisable: Any) -> None:
        if not isinstance(unraisable.exc_value, Interrupted) and self._old_hook is not None:
            self._old_hook(unraisable)

    def check(self) -> None:
        """Raise :class:`Interrupted` if a signal arrived (outside :meth:`hold`) and its raise was lost."""
        if self.pending is not None and not self._holding:
            raise Interrupted(self.pending)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.pending is not None:
            return
        self.pending = signum
        if not self._holding:
            raise Interrupted(signum)

    @property
    def holding(self) -> bool:
        """Whether a :meth:`hold` is in progress (signals are then kept, not raised)."""
        return self._holding > 0

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        self._holding += 1
        try:
            yield
        finally:
            self._holding -= 1


GUARD = SignalGuard()


# ----------------------------------------------------------------------------------------------- writing
def _write_files(tmp: Path, result: RunResult, resolved_config: dict[str, Any], run_info: dict[str, Any],
                 requests: bool, batches: bool) -> list[str]:
    """Write the run's files into ``tmp``; return their names."""
    writers: dict[str, Callable[[Path], object]] = {
        "summary.json": lambda p: p.write_text(dumps_summary(result.summary), encoding="utf-8"),
        "scenario.yaml": lambda p: p.write_text(
            yaml.safe_dump(resolved_config, sort_keys=False, allow_unicode=True), encoding="utf-8"),
        "run_info.json": lambda p: p.write_text(json.dumps(run_info, indent=2) + "\n", encoding="utf-8"),
        # a few thousand samples per deployment: always written (reports plot utilisation and queues)
        "occupancy.parquet": lambda p: write_parquet(result.columns("occupancy"), p),
        # one row per instance: what requests.parquet's `instance` and a failure's instance_ids refer to
        "instances.parquet": lambda p: write_parquet(result.columns("instances"), p),
    }
    # written from the tables' columns by pyarrow, without pandas (sim.tables)
    if requests:
        writers["requests.parquet"] = lambda p: write_parquet(result.columns("requests"), p)
    if batches:
        writers["batches.parquet"] = lambda p: write_parquet(result.columns("batches"), p)
    for name, write in writers.items():
        GUARD.check()
        write(tmp / name)
    return list(writers)


def _commit(tmp: Path, out: Path, names: list[str]) -> None:
    """Move the finished files into ``out``: a rename of the whole folder when ``out`` does not exist,
    else one ``os.replace`` per run file (other files in ``out`` stay).

    Replacing files one by one cannot be atomic, but it is all or nothing on errors: the previous run's
    files are first moved aside into ``tmp``, and put back if any move fails, so an error never leaves
    a folder mixing two runs. summary.json (the marker) is replaced in place, last."""
    if not out.exists():
        os.replace(tmp, out)
        (out / OWNER_FILE).unlink()
        return
    aside = tmp / ".previous"
    aside.mkdir()
    moved: list[str] = []
    placed: list[str] = []
    try:
        for name in RUN_FILES:
            if name != RUN_MARKER and ((out / name).is_file() or (out / name).is_symlink()):
                os.replace(out / name, aside / name)  # (files a previous run wrote that this one does not
                moved.append(name)  # write, e.g. requests: false, go too)
        for name in RUN_FILES:  # summary.json last
            if name in names:
                os.replace(tmp / name, out / name)
                placed.append(name)
        if RUN_MARKER not in names and (out / RUN_MARKER).is_file():
            (out / RUN_MARKER).unlink()
    except OSError as exc:
        for name in placed:
            with contextlib.suppress(OSError):
                (out / name).unlink()
        lost = []
        for name in moved:  # each on its own: one that cannot go back must not stop the others
            try:
                os.replace(aside / name, out / name)
            except OSError:
                lost.append(name)
        if lost:  # they stay in `aside`, which _remove_tmp never empties
            raise InputError(f"cannot write the run folder: {exc.strerror or exc}; and could not put back the "
                             f"previous run's {', '.join(lost)}: they are in {shown(aside)}", file=shown(out)) from None
        raise
    for name in moved:  # replaced: the new run's files are in place
        (aside / name).unlink()
    _remove_tmp(tmp)


def write_run(
    out: Path,
    result: RunResult,
    resolved_config: dict[str, Any],
    run_info: dict[str, Any],
    *,
    requests: bool = True,
    batches: bool = True,
    overwrite: bool = False,
) -> Path:
    """Write the run folder ``out`` (see the module docstring for what is safe to replace)."""
    path = _absolute(out)
    if path not in _HELD:
        with reserve_out_dir(out, overwrite=overwrite):
            return write_run(out, result, resolved_config, run_info, requests=requests, batches=batches,
                             overwrite=overwrite)
    check_out_dir(out, overwrite=overwrite)  # the folder may have changed while the run simulated
    tmp: Path | None = None
    try:
        with GUARD.hold():
            tmp = _new_tmp(path)
        names = _write_files(tmp, result, resolved_config, run_info, requests, batches)
        GUARD.check()
        with GUARD.hold():
            _commit(tmp, path, names)
    except BaseException as exc:
        if tmp is not None:
            with GUARD.hold():
                _remove_tmp(tmp)
        if isinstance(exc, OSError):
            raise _os_error(out, exc, "write the run folder") from None
        raise
    return out
