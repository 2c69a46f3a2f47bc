"""Time a whole child process: wall clock and its own peak resident memory.

The benchmarks compare whole processes (start-up, imports and file parsing included), so each run is a
fresh interpreter. ``os.wait4`` returns the rusage of that one child, so its ``ru_maxrss`` is the peak
RSS of exactly this run, unlike ``RUSAGE_CHILDREN``, which keeps the maximum over every child so far.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ChildRun:
    wall_s: float
    peak_rss_mib: float
    stdout: str


def run_child(cmd: list[str], cwd: Path) -> ChildRun:
    """Run ``cmd`` in ``cwd``; raise with its output when it fails (a benchmark of a failing run is
    meaningless). Output goes to a file, not a pipe, so a chatty child can never block on a full pipe."""
    with tempfile.TemporaryFile("w+") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read()
    if proc.returncode != 0:
        sys.exit(f"benchmark child failed (exit {proc.returncode}): {' '.join(cmd)}\n{text[-3000:]}")
    return ChildRun(wall, usage.ru_maxrss / 1024, text)  # Linux: ru_maxrss in KiB


def llmsim_cmd(scenario: Path, out: Path, *sets: str) -> list[str]:
    """``llmsim run`` as ``python -m sim.cli`` with this interpreter, quiet, into a fresh folder.

    Children run in a temporary directory, so ``sim`` resolves as installed (or via PYTHONPATH), never
    from a stray checkout in the current directory."""
    cmd = [sys.executable, "-m", "sim.cli", "run", str(scenario), "--out", str(out), "-q"]
    for s in sets:
        cmd += ["--set", s]
    return cmd


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
