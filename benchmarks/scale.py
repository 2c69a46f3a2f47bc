"""Scale: wall time and peak memory of ``llmsim run`` on a million requests, as a whole process.

Issue 14's row: 1 M requests of a quickstart-like scenario (``scenarios/quickstart.yaml`` with
``num_queries`` raised: its 4-model ladder at 5 queries/s stays below saturation, queues stay short),
target ≤ 20 s and ≤ 600 MB peak RSS (43–55 s and 1.1–1.26 GB when the issue was filed). Run with the
per-request and per-batch tables off and on (``--outputs``). Each run is a fresh interpreter
(start-up, imports and writing the run folder included); peak RSS is the child's own ``ru_maxrss``.

The issue's second case: a trace file of 1 M rows of which the run needs only ``num_queries`` = 10 k
(6.4 s and 618 MiB when filed) — the whole file used to be parsed. The same run on a file of exactly
10 k rows is printed next to it, so the difference is what the unused rows cost. The trace is
synthetic (Poisson at 5/s, Azure format, written to a temporary folder); the run keeps quickstart's
own token counts (``use_trace_tokens: false``) so only the arrivals come from the file.

    python benchmarks/scale.py                    # 1 M requests, outputs off and on, and the trace case
    python benchmarks/scale.py --n 100000 --outputs off --trace-rows 200000
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from child import ChildRun, build, ensure_bytecode, llmsim_cmd, run_child
from tracegen import synthetic

QUICKSTART = Path(__file__).resolve().parents[1] / "scenarios" / "quickstart.yaml"
WALL_TARGET_S = 20.0
RSS_TARGET_MB = 600.0


def mb(mib: float) -> float:
    return mib * 2**20 / 1e6


def quickstart_run(n: int, outputs: bool, work: Path) -> tuple[ChildRun, dict]:  # type: ignore[type-arg]
    """``llmsim run quickstart`` with ``n`` queries and the request/batch tables on or off."""
    out = work / f"quickstart-{n}-{'on' if outputs else 'off'}"
    flag = str(outputs).lower()
    child = run_child(llmsim_cmd(QUICKSTART, out, f"num_queries={n}", f"outputs.requests={flag}",
                                 f"outputs.batches={flag}"), work)
    return child, json.loads((out / "summary.json").read_text())


def trace_run(trace: Path, need: int, work: Path) -> tuple[ChildRun, dict]:  # type: ignore[type-arg]
    """Quickstart with its arrivals read from ``trace``, needing its first ``need`` rows."""
    out = work / f"trace-{trace.stem}"
    arrivals = json.dumps({"type": "trace", "path": str(trace), "use_trace_tokens": False})
    child = run_child(llmsim_cmd(QUICKSTART, out, f"num_queries={need}", f"workload.arrivals={arrivals}",
                                 "outputs.requests=false", "outputs.batches=false"), work)
    return child, json.loads((out / "summary.json").read_text())


def row(what: str, n: int, child: ChildRun, summary: dict, targets: bool) -> None:  # type: ignore[type-arg]
    q = summary["queries"]
    verdict = ""
    if targets:
        ok_t, ok_m = child.wall_s <= WALL_TARGET_S, mb(child.peak_rss_mib) <= RSS_TARGET_MB
        verdict = (f"  time {'met' if ok_t else 'NOT met'} (<= {WALL_TARGET_S:.0f} s), "
                   f"memory {'met' if ok_m else 'NOT met'} (<= {RSS_TARGET_MB:.0f} MB)")
    print(f"{what:<44} {n:>10,} {child.wall_s:>8.1f} {mb(child.peak_rss_mib):>9,.0f} "
          f"{n / child.wall_s:>10,.0f} {q['completed']:>10,}{verdict}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="requests of the quickstart-like run")
    ap.add_argument("--outputs", choices=["off", "on", "both"], default="both",
                    help="request/batch tables of the quickstart-like run")
    ap.add_argument("--trace-rows", type=int, default=1_000_000, help="rows of the big trace file (0: skip)")
    ap.add_argument("--trace-need", type=int, default=10_000, help="num_queries of the trace case")
    args = ap.parse_args()
    ensure_bytecode()  # time llmsim as installed (child.py)
    print(build())
    print(f"{'what':<44} {'requests':>10} {'wall s':>8} {'peak MB':>9} {'req/s':>10} {'completed':>10}")
    with tempfile.TemporaryDirectory(prefix="llmsim-scale-") as tmp:
        work = Path(tmp)
        for outputs in {"off": [False], "on": [True], "both": [False, True]}[args.outputs]:
            child, summary = quickstart_run(args.n, outputs, work)
            row(f"quickstart-like, outputs {'on' if outputs else 'off'}", args.n, child, summary, True)
        if args.trace_rows > 0:
            need = min(args.trace_need, args.trace_rows)
            big, small = work / "big.csv", work / "small.csv"
            synthetic(big, args.trace_rows, rate=5.0)
            with big.open() as src, small.open("w") as dst:  # the big file's header and first rows
                dst.writelines(line for _, line in zip(range(need + 1), src, strict=False))
            child_b, summ_b = trace_run(big, need, work)
            row(f"trace file of {args.trace_rows:,} rows, needs {need:,}", need, child_b, summ_b, False)
            child_s, summ_s = trace_run(small, need, work)
            row(f"trace file of {need:,} rows (reference)", need, child_s, summ_s, False)
            print(f"cost of the {args.trace_rows - need:,} unused rows: "
                  f"{child_b.wall_s - child_s.wall_s:+.1f} s, "
                  f"{mb(child_b.peak_rss_mib - child_s.peak_rss_mib):+,.0f} MB peak "
                  f"(ratio {child_b.wall_s / child_s.wall_s:.2f}x time, "
                  f"{child_b.peak_rss_mib / child_s.peak_rss_mib:.2f}x memory)")


if __name__ == "__main__":
    main()
