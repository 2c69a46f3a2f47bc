"""Benchmark of the offline instance allocation (:mod:`policies.allocation`): MILP vs greedy vs baselines.

    python benchmarks/allocation.py            # sizes (models, batches, batch size) up to (8, 40, 200)
    python benchmarks/allocation.py --quick    # smoke run: two small sizes, two seeds

For each size and seed it prints every method's expected mean routed quality (the SAA objective), its
gap to the MILP in quality points, $/hour, and solve time. The MILP's only integers are the instance
counts (routing is LP-relaxed), so it is expected to stay fast; greedy re-solves one routing LP per
candidate instance, and ``greedy+swaps`` adds drop-and-refill moves on top.

Problems (:func:`make_problem`): a model ladder (weak/cheap → strong/expensive, logistic quality in a
per-query difficulty), each model on two GPU types (a fast expensive one and a slow cheap one) at
tensor-parallel degree 1, 2 or 4 by size, per-query token costs 1e-4 × 4^j USD, a per-query budget
that cannot pay for the strongest model everywhere, a tight GPU inventory and a $/hour cap.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

import numpy as np

from policies import (
    AllocationProblem,
    AllocationResult,
    allocate_greedy,
    allocate_milp,
    allocate_proportional,
    allocate_uniform,
)

SIZES = ((3, 10, 50), (4, 20, 100), (6, 30, 100), (8, 40, 200))
QUICK_SIZES = ((3, 5, 20), (4, 10, 40))
METHODS: dict[str, Callable[[AllocationProblem], AllocationResult]] = {
    "milp": allocate_milp,
    "greedy": allocate_greedy,
    "greedy+swaps": lambda p: allocate_greedy(p, swap_rounds=3),
    "uniform": allocate_uniform,
    "proportional": allocate_proportional,
}


def make_problem(m: int, s: int, n: int, seed: int = 0) -> AllocationProblem:
    """A random but realistic allocation problem (see the module docstring)."""
    rng = np.random.default_rng(seed)
    skill = np.linspace(-0.5, 2.0, m)
    quality, cost = [], []
    for _ in range(s):
        hard = rng.normal(0.0, 1.0, (n, 1))
        quality.append(1.0 / (1.0 + np.exp(-(skill[None, :] - hard))))
        cost.append(rng.uniform(0.5, 1.5, (n, m)) * 1e-4 * 4.0 ** np.arange(m))
    model = np.repeat(np.arange(m), 2)
    gtype = np.tile([0, 1], m)
    tp = 2 ** np.minimum(model * 3 // max(m, 1), 2)
    return AllocationProblem(
        model=model, gpu_type=gtype, gpus=tp, price_per_hour=tp * np.where(gtype == 0, 4.0, 2.0),
        rate=np.where(gtype == 0, 2.0, 1.0) / np.sqrt(tp), slots=np.where(gtype == 0, 8.0, 4.0) * n / 50,
        inventory=rng.integers(2 * m, 4 * m, 2), quality=quality, cost=cost,
        arrival_rate=float(rng.uniform(2.0, 3.0) * m), budget_per_query=1e-4 * 4.0 ** (m / 2),
        max_cost_per_hour=float(rng.uniform(8.0, 14.0) * m))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="two small sizes, two seeds")
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args(argv)
    sizes = QUICK_SIZES if args.quick else SIZES
    seeds = 2 if args.quick else args.seeds
    print(f"{'size (m,S,n)':>14} {'seed':>4} {'method':>13} {'quality':>8} {'gap':>7} {'$/h':>7} {'time s':>7}")
    gaps: dict[str, list[float]] = {k: [] for k in METHODS}
    for m, s, n in sizes:
        for seed in range(seeds):
            p = make_problem(m, s, n, seed)
            best: float | None = None
            for name, f in METHODS.items():
                t0 = time.perf_counter()
                r = f(p)
                dt = time.perf_counter() - t0
                best = r.expected_quality if best is None else best
                gaps[name].append(best - r.expected_quality)
                print(f"{str((m, s, n)):>14} {seed:>4} {name:>13} {r.expected_quality:8.4f} "
                      f"{best - r.expected_quality:7.4f} {r.cost_per_hour:7.1f} {dt:7.2f}")
    print("\nmean / max gap to the MILP (quality points):")
    for name, g in gaps.items():
        print(f"  {name:>13}: {np.mean(g):.4f} / {np.max(g):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
