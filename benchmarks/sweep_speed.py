"""Sweep speed: a 40-run sweep of the quickstart scenario on 1 vs 2 local worker processes.

Both sweeps are the same command over fresh folders, timed one after the other in this process, so the
speed-up is meaningful on any machine (target, issue 9: ≥ 1.7× on 2 cores). The grid varies the
batching window and the per-query rule's α, which leaves the workload alone: runs sharing a seed share
one prepared workload inside a worker, as compare does. The 1-worker sweep runs in this process (no
pool), so the speed-up includes the pool's start-up cost.

    python benchmarks/sweep_speed.py               # 40 runs of 3,000 queries
    python benchmarks/sweep_speed.py --queries 1000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from sim.experiments.execute import LocalExecutor
from sim.experiments.folder import run_experiment
from sim.experiments.plan import plan_experiment, read_source
from sim.experiments.specs import parse_grid, parse_policies


def timed_sweep(jobs: int, queries: int, folder: Path) -> tuple[float, int]:
    exp = plan_experiment(
        "sweep",
        read_source(None),
        parse_policies("threshold_greedy,utility_greedy"),
        seeds=2,
        grid=parse_grid(["router.window_s=0,0.5", "router.min_quality=0.5:0.9:0.1"]) if queries else {},
        sets=[f"num_queries={queries}"],
    )
    executor = LocalExecutor(jobs)
    t0 = time.perf_counter()
    try:
        results = run_experiment(folder, exp, executor, command="benchmark")
    finally:
        executor.close()
    return time.perf_counter() - t0, len(results)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--queries", type=int, default=3000, help="queries per run")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [(jobs, *timed_sweep(jobs, args.queries, Path(tmp) / f"j{jobs}")) for jobs in (1, 2)]
    base = rows[0][1]
    print(f"{'workers':>8} {'runs':>5} {'wall s':>8} {'runs/s':>7} {'speed-up':>9}")
    for jobs, wall, runs in rows:
        print(f"{jobs:>8} {runs:>5} {wall:>8.2f} {runs / wall:>7.2f} {base / wall:>8.2f}x")
    print("target: speed-up >= 1.70x with 2 workers")


if __name__ == "__main__":
    main()
