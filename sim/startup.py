"""Garbage collection deferred while the command line starts up.

An ``llmsim`` process spends a large part of a small run importing (numpy, pydantic, pyarrow, typer)
and building the scenario schema: hundreds of thousands of objects that all live until the process
exits. CPython's cyclic collector runs every 700 net allocations and, as survivors pile up, walks the
older generations again and again, finding nothing to free: ~5 % of a 19 k-request run's wall time.
The console script therefore raises the collector's first threshold until the inputs are loaded
(:func:`defer`), then moves everything start-up built into the permanent generation (``gc.freeze``,
which CPython recommends for exactly this) and restores the thresholds (:func:`resume`), so neither
the simulation's collections nor the interpreter's last one at exit rescan start-up's objects. Every
command calls :func:`resume` once its inputs are read, before any simulation, so what gets frozen is
start-up's own objects plus at most a few hundred garbage ones. Collection is only postponed, never
off: a command that never resumes still collects every :data:`STARTUP_THRESHOLD` allocations.

Only the console script's process (:mod:`sim.__main__`) defers; library use (``import sim``,
:func:`sim.cli.main` in process) is untouched, since :func:`resume` does nothing unless deferred.
"""

from __future__ import annotations

import gc

#: The first-generation threshold during start-up (CPython's default is 700).
STARTUP_THRESHOLD = 100_000

_saved: tuple[int, int, int] | None = None


def defer() -> None:
    """Raise the first collection threshold until :func:`resume` (a threshold of 0, collection
    switched off by the caller, stays 0)."""
    global _saved
    if _saved is None:
        _saved = gc.get_threshold()
        if _saved[0]:
            gc.set_threshold(max(STARTUP_THRESHOLD, _saved[0]), _saved[1], _saved[2])


def resume() -> None:
    """Start-up is over: freeze what it built and collect as usual again (a no-op unless deferred, and
    after the first call)."""
    global _saved
    if _saved is None:
        return
    gc.freeze()
    gc.set_threshold(*_saved)
    _saved = None
