"""Where a big ``llmsim run`` spends its memory and time: wall and peak RSS per phase, in one process.

``benchmarks/scale.py`` gives a whole run's peak; this splits it at the phase boundaries of
:func:`sim.runner.simulate` (imports, prepare, engine, summarise, writing the run folder) by wrapping
those functions and running ``llmsim run`` itself (``sim.cli.main``, with start-up garbage collection
deferred as the console script does, ``sim.startup``). After each phase it prints the
phase's wall time, the resident memory then, and the phase's own peak: the kernel's high-water mark
(``VmHWM``) is reset at every boundary (``/proc/self/clear_refs``; Linux only), so a phase whose
temporaries are freed before it ends still shows them. Issue 14's 1 M run, outputs off:

    python benchmarks/phases.py --n 1000000
    python benchmarks/phases.py --n 300000 --set outputs.requests=true
    python benchmarks/phases.py --scenario my.yaml     # any scenario, at its own num_queries
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from child import build

QUICKSTART = Path(__file__).resolve().parents[1] / "scenarios" / "quickstart.yaml"


def _status_mib(key: str) -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key + ":")) / 1024


class Phases:
    """Prints one row per phase; :meth:`wrap` times a function call as a phase."""

    def __init__(self) -> None:
        self.t = time.perf_counter()
        print(f"{'phase':<10} {'wall s':>7} {'RSS MiB':>8} {'peak MiB':>9}")

    def mark(self, name: str) -> None:
        now = time.perf_counter()
        print(f"{name:<10} {now - self.t:>7.2f} {_status_mib('VmRSS'):>8.0f} {_status_mib('VmHWM'):>9.0f}",
              flush=True)
        with open("/proc/self/clear_refs", "w") as f:  # reset VmHWM to the current RSS
            f.write("5")
        self.t = time.perf_counter()

    def wrap(self, owner: Any, attr: str, name: str) -> None:
        inner: Callable[..., Any] = getattr(owner, attr)

        def timed(*args: Any, **kwargs: Any) -> Any:
            if time.perf_counter() - self.t > 0.05:  # loading the scenario, building the cluster, ...
                self.mark("other")
            out = inner(*args, **kwargs)
            self.mark(name)
            return out

        setattr(owner, attr, timed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", type=Path, default=QUICKSTART, help="scenario file (default: quickstart)")
    ap.add_argument("--n", type=int, default=None,
                    help="num_queries (default: 1,000,000 for quickstart, the file's own otherwise)")
    ap.add_argument("--set", action="append", default=[], help="more --set KEY=VALUE for llmsim run")
    args = ap.parse_args()
    from sim import startup

    startup.defer()  # as the console script (sim.__main__) does before its imports
    phases = Phases()
    import sim.output
    import sim.runner
    from sim.cli import main as cli

    phases.mark("imports")
    print(build(), flush=True)
    phases.wrap(sim.runner, "prepare", "prepare")
    phases.wrap(sim.runner, "_run_engine", "engine")
    phases.wrap(sim.runner, "summarise", "summarise")
    phases.wrap(sim.output, "write_run", "write")
    n = 1_000_000 if args.n is None and args.scenario == QUICKSTART else args.n
    sets = ([] if n is None else [f"num_queries={n}"]) + ["outputs.requests=false", "outputs.batches=false", *args.set]
    with tempfile.TemporaryDirectory(prefix="llmsim-phases-") as tmp:
        argv = ["run", str(args.scenario), "--out", str(Path(tmp) / "run"), "-q"]
        for s in sets:
            argv += ["--set", s]
        try:
            cli(argv)
        except SystemExit as exc:
            if exc.code:
                raise


if __name__ == "__main__":
    main()
