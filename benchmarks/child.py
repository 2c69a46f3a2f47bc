"""Time a whole child process: wall clock and its own peak resident memory.

The benchmarks compare whole processes (start-up, imports and file parsing included), so each run is a
fresh interpreter. Peak memory is the child's ``VmHWM`` (/proc/self/status, read at exit by a tiny
launcher that then runs the command as ``python -m`` / ``python script`` would): its own high-water
mark since ``exec``. ``ru_maxrss`` of the child would not do: Linux folds the parent's RSS at spawn time
into it (the pre-``exec`` image), so a benchmark that had just generated a big trace file would read its
own size as the child's peak. Without /proc, ``ru_maxrss`` is the fallback.

Children import llmsim as installed, from cached bytecode (:func:`ensure_bytecode`): ``pip install``
compiles it, but an editable install in an environment with ``PYTHONDONTWRITEBYTECODE`` set (this
sandbox's) never caches it, and every child would compile ~70 modules from source (~0.2 s) that no
installed copy compiles.
"""

from __future__ import annotations

import compileall
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

#: Runs ``argv[2:]`` (``-m module args`` or ``script args``) in this interpreter and writes VmHWM (KiB)
#: to ``argv[1]`` at exit, also on ``sys.exit`` with an error.
LAUNCHER = """
import atexit, runpy, sys
out = sys.argv[1]
def _peak():
    try:
        with open('/proc/self/status') as f:
            kib = next(line.split()[1] for line in f if line.startswith('VmHWM:'))
    except OSError:
        return
    with open(out, 'w') as f:
        f.write(kib)
atexit.register(_peak)
if sys.argv[2] == '-m':
    sys.argv = sys.argv[3:]
    runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)
else:
    sys.argv = sys.argv[2:]
    runpy.run_path(sys.argv[0], run_name='__main__')
"""


@dataclass(frozen=True)
class ChildRun:
    wall_s: float
    peak_rss_mib: float
    stdout: str


def run_child(cmd: list[str], cwd: Path) -> ChildRun:
    """Run ``cmd`` (``[python, -m, module, ...]`` or ``[python, script, ...]``) in ``cwd`` under the
    launcher; exit with its output when it fails (a benchmark of a failing run is meaningless). Output
    goes to a file, not a pipe, so a chatty child can never block on a full pipe."""
    assert cmd[0] == sys.executable, "children are Python commands run by this interpreter"
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryDirectory() as tmp:
        peak_file = Path(tmp) / "vmhwm"
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", LAUNCHER, str(peak_file), *cmd[1:]], cwd=cwd,
                                stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read()
        peak_kib = float(peak_file.read_text()) if peak_file.exists() else float(usage.ru_maxrss)
    if proc.returncode != 0:
        sys.exit(f"benchmark child failed (exit {proc.returncode}): {' '.join(cmd)}\n{text[-3000:]}")
    return ChildRun(wall, peak_kib / 1024, text)


def ensure_bytecode(packages: tuple[str, ...] = ("sim", "policies", "reports")) -> None:
    """Compile the bytecode of llmsim's packages where they are imported from, as ``pip install`` does
    (a no-op when it is cached and current), so whole-process timings measure an installed llmsim, not
    one compiling its modules from source at every start (see the module docstring)."""
    for name in packages:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            continue
        for folder in spec.submodule_search_locations:
            compileall.compile_dir(folder, quiet=1)


def build() -> str:
    """Which llmsim the rows time: its engine compiled by mypyc (a regular ``pip install .``, setup.py) or
    pure Python (an editable install, ``LLMSIM_PURE_PYTHON=1``, no C compiler): ~1.7x apart."""
    import sim.engine

    where = Path(sim.engine.__file__).parents[1]
    kind = "engine compiled by mypyc" if sim.engine.compiled() else "engine in pure Python (not compiled)"
    return f"build: {kind} (llmsim imported from {where})"


def llmsim_cmd(scenario: Path, out: Path, *sets: str) -> list[str]:
    """``llmsim run`` as ``python -m sim`` (what the console script runs) with this interpreter, quiet,
    into a fresh folder.

    Children run in a temporary directory, so ``sim`` resolves as installed (or via PYTHONPATH), never
    from a stray checkout in the current directory."""
    cmd = [sys.executable, "-m", "sim", "run", str(scenario), "--out", str(out), "-q"]
    for s in sets:
        cmd += ["--set", s]
    return cmd


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
