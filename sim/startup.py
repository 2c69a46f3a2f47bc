"""Garbage collection deferred while the command line starts up.

An ``llmsim`` process spends a large part of a small run importing (numpy, pydantic, pyarrow, typer)
and building the scenario schema: hundreds of thousands of objects that all live until the process
exits. CPython's cyclic collector runs every 700 net allocations and, as survivors pile up, walks the
older generations again and again, finding nothing to free: ~5 % of a 19 k-request run's wall time.
The console script therefore raises the collector's first threshold until the inputs are loaded
(:func:`defer`), then moves everything start-up built into the permanent generation (``gc.freeze``,
which CPython recommends for exactly this) and restores the thresholds (:func:`resume`), so the
simulation's collections never rescan start-up's objects. Collection is only postponed, never off: a
command that never calls :func:`resume` still collects, every :data:`STARTUP_THRESHOLD` allocations.
Library use (``import sim``) is untouched: nothing here runs unless the command line calls it.
"""

from __future__ import annotations

import gc

#: The first-generation threshold during start-up (CPython's default is 700).
STARTUP_THRESHOLD = 100_000

_saved: tuple[int, int, int] | None = None
_frozen = False


def defer() -> None:
    """Raise the first collection threshold until :func:`resume` or :func:`end`."""
    global _saved
    if _saved is None:
        _saved = gc.get_threshold()
        gc.set_threshold(max(STARTUP_THRESHOLD, _saved[0]), _saved[1], _saved[2])


def resume() -> None:
    """Start-up is over: freeze what it built and collect as usual again (no-op unless deferred)."""
    global _saved, _frozen
    if _saved is None:
        return
    gc.freeze()
    _frozen = True
    gc.set_threshold(*_saved)
    _saved = None


def end() -> None:
    """Undo :func:`defer` and :func:`resume` (the command line is returning to an in-process caller)."""
    global _saved, _frozen
    if _frozen:
        gc.unfreeze()
        _frozen = False
    if _saved is not None:
        gc.set_threshold(*_saved)
        _saved = None
