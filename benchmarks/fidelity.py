"""Fidelity of the built-in latency profiles: every entry run through the engine on every measured table covering it.

    python benchmarks/fidelity.py                 # every entry, every table in ../shared/data/gpu
    python benchmarks/fidelity.py --quick         # smoke run: 3 configurations per (entry, table)
    python benchmarks/fidelity.py --scheduler paged --frameworks vLLM,TensorRT-LLM,llama.cpp

For each built-in entry (``sim/data/profiles.json``) and each measured set covering its model, GPU and TP
(Splitwise, LLM-Inference-Bench per framework, the H200 iteration table, the pure rows of the H200
mixed-step table), every measured batch is simulated as a user would write it — one deployment, ``max_seqs``
= the batch, ``latency: {GPU: {builtin: true}}``, the batch as a tiny trace — and the table prints the
median / p90 / max relative error of TTFT, decode step and end to end (how each table maps to a batch, and
why the ``reserve`` scheduler: :mod:`sim.profiles.fidelity`). Sets an entry was fitted on are shown but
marked ``(fit)``; rows whose median error exceeds 15 % are flagged. Measured sets that no entry covers but
a built-in lookup answers (e.g. Llama-3-70B, or 70B on A100-40GB) follow as ``(lookup)`` rows: the scaled
profile a scenario with that model gets. The headline counts the entries within 15 % median end-to-end
error of an independent vLLM measurement. Absent tables are skipped; the exit code is 0 either way.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from sim.profiles import list_builtin
from sim.profiles.fidelity import (
    SCHEDULERS,
    THRESHOLD_PCT,
    FidelityRow,
    MeasuredSet,
    entry_fidelity,
    format_fidelity,
    harness,
    lookup_fidelity,
    read_measurements,
)

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "gpu"
TABLES = (
    "splitwise_perf_model.csv",
    "llm_inference_bench_all_results.csv",
    "h200_torch_iteration_times.csv",
    "h200_torch_mixed_step_times.csv",
)
FRAMEWORKS = ("vLLM", "TensorRT-LLM")  # serving engines; llama.cpp / Deepspeed-MII only on request
QUICK_LIMIT = 3  # distinct batches per (entry, set) with --quick
VLLM_TABLE = "bench vLLM"


def load_sets(data: Path, frameworks: Sequence[str]) -> tuple[list[MeasuredSet], list[str]]:
    """Measured sets of every table present (bench sets of the chosen frameworks); names of absent tables."""
    sets, absent = [], []
    for name in TABLES:
        path = data / name
        if not path.is_file():
            absent.append(name)
            continue
        for s in read_measurements(path):
            if not s.framework or s.framework in frameworks:
                sets.append(s)
    return sets, absent


def _within(row: FidelityRow, threshold: float) -> bool:
    """Within the threshold on end to end where measured, else on every metric the set measures."""
    if "e2e" in row.errors:
        return row.errors["e2e"].median_pct <= threshold
    return bool(row.errors) and not row.over(threshold)


def _why_not(row: FidelityRow) -> str:
    """Why an entry over the threshold against vLLM is kept: it measures another engine, and builtin:
    true picks the vLLM-fitted entry for the same configuration instead."""
    if row.default:
        return ""
    return ("; cannot match: it is a fit of another engine's measurements (Splitwise), kept by name "
            "(builtin: splitwise); builtin: true picks the vLLM-fitted entry for this configuration")


def headline(rows: Sequence[FidelityRow], lookups: Sequence[FidelityRow], threshold: float) -> list[str]:
    """The summary lines: entries vs independent vLLM rows, all independent pairs, lookups, training sets."""
    lines = []
    vllm: dict[str, list[FidelityRow]] = {}
    for r in rows:
        if r.table == VLLM_TABLE and not r.training and "e2e" in r.errors:
            vllm.setdefault(r.entry, []).append(r)
    good = [e for e, rs in vllm.items() if all(_within(r, threshold) for r in rs)]
    bad = [
        f"{e} ({rs[0].errors['e2e'].bias_pct:+.0f} %{_why_not(rs[0])})"
        for e, rs in vllm.items()
        if e not in good
    ]
    lines.append(
        f"{len(good)} of {len(vllm)} entries within {threshold:g} % median e2e of independent vLLM measurements"
        + (f"; over: {', '.join(bad)}" if bad else "")
    )
    indep = [r for r in rows if not r.training and r.errors]
    n_ok = sum(_within(r, threshold) for r in indep)
    lines.append(
        f"{n_ok} of {len(indep)} (entry, independent table) pairs within {threshold:g} % median error "
        "(e2e where measured; other engines than vLLM included)"
    )
    scored = [r for r in lookups if r.errors and r.table == VLLM_TABLE]
    if scored:
        lines.append(
            f"{sum(_within(r, threshold) for r in scored)} of {len(scored)} lookups (no entry; builtin: true "
            f"scales one) within {threshold:g} % median e2e of vLLM measurements"
        )
    fit = [r for r in rows if r.training and "e2e" in r.errors]
    if fit:
        worst = max(fit, key=lambda r: r.errors["e2e"].median_pct)
        lines.append(
            f"on their own training data: worst median e2e error {worst.errors['e2e'].median_pct:.1f} % "
            f"({worst.entry}, {worst.table})"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--data", type=Path, default=DATA, help="folder of the measured tables (default: %(default)s)"
    )
    ap.add_argument(
        "--quick", action="store_true", help=f"only {QUICK_LIMIT} distinct batches per (entry, table)"
    )
    ap.add_argument(
        "--scheduler", choices=SCHEDULERS, default="reserve", help="engine scheduler (default reserve)"
    )
    ap.add_argument(
        "--frameworks",
        default=",".join(FRAMEWORKS),
        help="LLM-Inference-Bench frameworks (default %(default)s)",
    )
    ap.add_argument("--threshold", type=float, default=THRESHOLD_PCT, help="flag median errors above this %%")
    args = ap.parse_args(argv)
    start = time.perf_counter()
    sets, absent = load_sets(args.data, [f.strip() for f in args.frameworks.split(",") if f.strip()])
    for name in absent:
        print(f"skipped {name}: not in {args.data}")
    if not sets:
        print("no measured tables found: nothing to compare (exit 0)")
        return 0
    limit = QUICK_LIMIT if args.quick else None
    entries = list_builtin()
    with harness(args.scheduler) as h:
        rows, uncovered = entry_fidelity(entries, sets, h, limit=limit)
        lookups = lookup_fidelity(entries, sets, h, limit=limit)
        runs = h.runs
    print(f"Latency-profile fidelity: the engine ({args.scheduler} scheduler) on each measured batch; ")
    print("|relative error| in % (median, p90, max), e2e bias = median signed error (+ = simulated slower)")
    print()
    print(format_fidelity([*rows, *lookups], args.threshold))
    print()
    if uncovered:
        print(f"not covered by any measured table ({len(uncovered)}): {', '.join(e.name for e in uncovered)}")
    notes = {(r.entry, n) for r in [*rows, *lookups] for n in r.notes if n.startswith("not runnable")}
    for entry, n in sorted(notes):
        print(f"note: {entry}: {n}")
    print()
    for line in headline(rows, lookups, args.threshold):
        print(line)
    print(f"({runs} engine runs, {time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
