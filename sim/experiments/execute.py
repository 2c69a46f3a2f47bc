"""Run an experiment's runs on local worker processes or a Dask cluster, writing each run folder as it
completes (so Ctrl-C keeps what finished) and skipping runs already in the folder (resume).

Runs that share a :func:`sim.runner.prepare_key` (same seed and workload, another policy or budget) go to
a worker together, which prepares the workload and predictions once and simulates each run on them:
the common random numbers of a comparison are then the very same arrays, not just the same seed.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import multiprocessing.connection
import signal
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sim import __version__
from sim.config.checks import resolved_config
from sim.experiments.plan import RunSpec
from sim.output import GUARD
from sim.results import RunResult
from sim.runner import prepare, prepare_key, simulate

Done = tuple[RunSpec, dict[str, Any]]  # a finished run and its summary


@dataclass(frozen=True)
class GroupTask:
    """Runs that share a prepare key, and where their folders go: ``folder`` set means the worker shares
    this machine's file system and writes each run folder itself (the parent would otherwise write them
    one after another, which caps the speed-up of a sweep of short runs)."""

    specs: list[RunSpec]
    folder: Path | None


Finished = tuple[RunSpec, dict[str, Any], RunResult | None, float]  # spec, summary, result to write, wall s


class _Stop:
    """A pool worker's SIGTERM / SIGINT, raised only while a task runs (:func:`simulate_group`). Between
    tasks the worker is in the pool's queue code: raised there, it can leave a queue's lock taken (the
    exception lands just after the acquire), and the worker, the others and the parent's shutdown wait
    for that lock forever. There the signal is kept instead, and a task taken later ends at once; an idle
    worker ends when the shutting-down pool tells it to."""

    running = False
    signum: int | None = None

    @classmethod
    def on_signal(cls, signum: int, _frame: Any) -> None:
        """Only the first signal counts: Ctrl-C reaches the workers, then the parent's SIGTERM follows
        milliseconds later, and it must not interrupt the cleanup the first one started. Inside
        ``GUARD.hold()`` (a run folder being moved into place) it is kept, and raised once that is done
        (:func:`_simulate_group` checks after each run)."""
        if cls.signum is not None:
            return
        cls.signum = signum
        if cls.running and not GUARD.holding:
            cls.stop()

    @classmethod
    def check(cls) -> None:
        """End the task now if a signal arrived (one kept while a run folder was being moved into place)."""
        if cls.signum is not None:
            cls.stop()

    @classmethod
    def stop(cls) -> None:
        if cls.signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(143)


def simulate_group(task: GroupTask) -> list[Finished]:
    """Worker entry point: prepare once, simulate every run of the group, write or return each."""
    try:
        _Stop.running = True  # before the check: a signal in between is raised by its handler
        _Stop.check()
        return _simulate_group(task)
    finally:
        _Stop.running = False


def _simulate_group(task: GroupTask) -> list[Finished]:
    prepared = prepare(task.specs[0].scenario)
    out: list[Finished] = []
    for spec in task.specs:
        t0 = time.perf_counter()
        result = simulate(spec.scenario, prepared=prepared)
        wall = time.perf_counter() - t0
        if task.folder is not None:
            write_one(task.folder, spec, result, wall)
            _Stop.check()  # a signal kept while the run folder was moved into place
        out.append((spec, result.summary, None if task.folder is not None else result, wall))
    return out


def group_runs(runs: list[RunSpec], min_tasks: int = 1) -> list[list[RunSpec]]:
    """Runs grouped by prepare key, in first-seen order (deterministic); groups are cut into chunks when
    there are fewer than ``min_tasks`` of them, so every worker gets work (a chunk prepares again)."""
    groups: dict[str, list[RunSpec]] = {}
    for spec in runs:
        groups.setdefault(prepare_key(spec.scenario), []).append(spec)
    chunk = max(1, -(-len(runs) // max(min_tasks, 1)))
    if len(groups) >= min_tasks:
        return list(groups.values())
    return [g[k:k + chunk] for g in groups.values() for k in range(0, len(g), chunk)]


class Executor(Protocol):
    jobs: int
    shared_fs: bool  # workers see this machine's files (they write run folders themselves)

    def map_unordered(self, fn: Callable[[Any], Any], items: list[Any]) -> Iterator[Any]: ...

    def close(self) -> None: ...


def _worker_init() -> None:
    """In a forked worker: SIGTERM ends the current task through Python (a run folder being written
    removes its temporary files), SIGINT too as the usual KeyboardInterrupt (both only inside a task, see
    :class:`_Stop`), and on Linux the worker is killed when its parent dies, so a killed ``llmsim sweep``
    leaves no workers behind (a SIGTERM would be caught by the pool's worker loop, which then waits for a
    parent that is gone; a temporary folder it leaves carries an owner file and is removed by the next
    run into that folder)."""
    signal.signal(signal.SIGTERM, _Stop.on_signal)
    signal.signal(signal.SIGINT, _Stop.on_signal)
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


STOP_GRACE_S = 5.0
"""Seconds an interrupted worker has to end (and remove the run folder it was writing) before SIGKILL."""


class LocalExecutor:
    """Up to ``jobs`` worker processes (never more than there are tasks); jobs=1 runs in this process.
    Workers are forked, so they start with everything the parent imported (a fresh interpreter spends
    ~2 s importing pandas, scipy and SimPy); the pool forks all of them at the first submit, before any
    progress-bar thread could exist (the CLI's progress bar does not run a refresh thread)."""

    def __init__(self, jobs: int) -> None:
        self.jobs = jobs
        self.shared_fs = True
        self.pool: ProcessPoolExecutor | None = None

    def map_unordered(self, fn: Callable[[Any], Any], items: list[Any]) -> Iterator[Any]:
        if self.jobs == 1 or len(items) <= 1:
            yield from (fn(x) for x in items)
            return
        self.close()
        ctx = multiprocessing.get_context("fork")
        self.pool = ProcessPoolExecutor(max_workers=min(self.jobs, len(items)), mp_context=ctx,
                                        initializer=_worker_init)
        futures: list[Future[Any]] = [self.pool.submit(fn, x) for x in items]
        try:
            for fut in as_completed(futures):
                yield fut.result()
        except BaseException:
            self.stop_workers()
            raise
        finally:
            for fut in futures:
                fut.cancel()

    def stop_workers(self) -> None:
        """On an interruption or a failed run, end the workers now rather than after their current runs
        (each removes the run folder it was writing). One still there after :data:`STOP_GRACE_S` is
        killed: a SIGTERM that lands just as a worker takes the result queue's lock leaves that lock
        held, and the worker (and a pool shutdown waiting for its result) would wait for it forever."""
        if self.pool is not None:
            procs = list(getattr(self.pool, "_processes", {}).values())  # no public API for this
            for proc in procs:
                with contextlib.suppress(OSError):
                    proc.terminate()
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = None
            _kill_stragglers(procs, STOP_GRACE_S)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None


def _kill_stragglers(procs: list[Any], grace_s: float) -> None:
    """SIGKILL the processes of ``procs`` that have not ended within ``grace_s``. Their sentinels say
    which ended (not ``is_alive``: the pool's own thread may reap them meanwhile); one that has not
    ended is not reaped, so its pid is still its own. The pool's thread reaps the killed ones."""
    pending = {proc.sentinel: proc for proc in procs}
    deadline = time.monotonic() + grace_s
    while pending and (left := deadline - time.monotonic()) > 0:
        for ready in multiprocessing.connection.wait(list(pending), left):
            del pending[ready]
    for proc in pending.values():
        with contextlib.suppress(OSError):
            proc.kill()


class DaskExecutor:
    """A ``dask.distributed`` client: a new LocalCluster of ``jobs`` single-threaded worker processes, or
    an existing cluster at ``scheduler`` (``tcp://HOST:PORT``). Results come back to this process, which
    writes the run folders, so workers on other machines need no shared file system."""

    def __init__(self, jobs: int, scheduler: str | None = None) -> None:
        self.jobs = jobs
        try:
            from dask.distributed import Client, LocalCluster
        except ImportError:
            from sim.errors import InputError

            raise InputError('--executor dask needs the dask extra: pip install "llmsim[dask]"',
                             where="--executor") from None
        self.cluster = None
        self.shared_fs = scheduler is None  # a LocalCluster runs on this machine; a remote one may not
        if scheduler is None:
            self.cluster = LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True,
                                        dashboard_address=None, silence_logs=40)
            self.client = Client(self.cluster)
        else:
            try:
                self.client = Client(scheduler, timeout="5s")
            except (OSError, TimeoutError, ValueError) as exc:
                from sim.errors import InputError

                raise InputError(f"cannot reach the Dask scheduler {scheduler}: {exc}", where="--scheduler") from None

    def map_unordered(self, fn: Callable[[Any], Any], items: list[Any]) -> Iterator[Any]:
        from dask.distributed import as_completed as dask_completed

        futures = self.client.map(fn, items, pure=False)
        try:
            for fut in dask_completed(futures):
                yield fut.result()
        finally:
            self.client.cancel(futures)

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def completed_summary(folder: Path, spec: RunSpec) -> dict[str, Any] | None:
    """The summary of ``spec`` if its run folder holds a finished run with the same id (resume)."""
    run = folder / spec.run_dir
    try:
        info = json.loads((run / "run_info.json").read_text(encoding="utf-8"))
        if not isinstance(info, dict) or info.get("run_id") != spec.run_id:
            return None
        summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    from sim.output import SUMMARY_FIELDS

    # a damaged file is a run to redo, not a result (its folder is llmsim's: write_run may replace it)
    return summary if isinstance(summary, dict) and all(k in summary for k in SUMMARY_FIELDS) else None


def write_one(folder: Path, spec: RunSpec, result: RunResult, wall_s: float) -> None:
    from sim.engine import compiled as engine_compiled
    from sim.output import write_run

    info = {"llmsim_version": __version__, "run_id": spec.run_id, "policy": spec.policy, "seed": spec.seed,
            "params": spec.params, "wall_time_s": wall_s, "python": sys.version.split()[0],
            "engine_compiled": engine_compiled()}
    sc = spec.scenario
    # overwrite: a folder of this name without this run id is a stale or broken run of this experiment
    # (llmsim wrote it); only the run's own files are replaced.
    write_run(folder / spec.run_dir, result, resolved_config(sc), info,
              requests=sc.outputs.requests, batches=sc.outputs.batches, overwrite=True)


def execute(
    folder: Path, runs: list[RunSpec], executor: Executor, on_done: Callable[[int], None] | None = None
) -> Iterator[Done]:
    """Simulate ``runs`` (none of them complete in ``folder`` yet) and yield (spec, summary) for each as
    soon as its folder is written. ``on_done`` gets the number of runs finished so far."""
    finished = 0
    tasks = [GroupTask(g, folder if executor.shared_fs else None) for g in group_runs(runs, 2 * executor.jobs)]
    for batch in executor.map_unordered(simulate_group, tasks):
        for spec, summary, result, wall in batch:
            if result is not None:
                write_one(folder, spec, result, wall)
            finished += 1
            if on_done:
                on_done(finished)
            yield spec, summary
