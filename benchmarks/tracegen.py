"""Azure-format trace files for the benchmarks: replicate the real trace, or draw a synthetic one.

The benchmarks need traces larger than the 19,366-request Azure conversation trace (a ~100 k-request
run on 16 instances; a 1 M-row file of which a run reads 10 k rows). Both simulators under comparison
must read the very same file, so the file is written once in the Azure CSV format
(``TIMESTAMP,ContextTokens,GeneratedTokens``, datetime strings) that llmsim and the fleet_sim driver
both parse, rather than being scaled by each simulator in its own way.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens\n"
_EPOCH = np.datetime64("2023-11-16T18:00:00", "ns")


def read_azure(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(nanoseconds since the first row, context tokens, generated tokens) of an Azure CSV."""
    with path.open(newline="") as f:
        rows = list(csv.reader(f))[1:]
    stamps = np.array([r[0].strip() for r in rows], dtype="datetime64[ns]")
    ns = (stamps - stamps[0]).astype(np.int64)
    ctx = np.array([int(r[1]) for r in rows], dtype=np.int64)
    gen = np.array([int(r[2]) for r in rows], dtype=np.int64)
    return ns, ctx, gen


def write_azure(path: Path, ns: np.ndarray, ctx: np.ndarray, gen: np.ndarray) -> None:
    """Write rows at ``ns`` nanoseconds after a fixed epoch, microsecond timestamps, space separator."""
    stamps = np.datetime_as_string(_EPOCH + ns.astype("timedelta64[ns]"), unit="us")
    with path.open("w") as f:
        f.write(HEADER)
        f.writelines(
            f"{s[:10]} {s[11:]},{c},{g}\n" for s, c, g in zip(stamps.tolist(), ctx.tolist(), gen.tolist(),
                                                             strict=True)
        )


def replicate(src: Path, dst: Path, copies: int, speedup: float, rows: int | None = None) -> int:
    """Write ``copies`` back-to-back copies of ``src`` (first ``rows`` rows only, when given) with times
    divided by ``speedup``, so the request rate is ``speedup`` × the trace's; return the row count.

    Copies follow each other after one mean gap, so the rate drifts as in the original trace and the
    rows stay in time order (llmsim refuses an unsorted trace)."""
    ns, ctx, gen = read_azure(src)
    if rows is not None:
        ns, ctx, gen = ns[:rows], ctx[:rows], gen[:rows]
    period = int(ns[-1]) + (int(ns[-1]) // max(len(ns) - 1, 1))
    shifts = np.repeat(np.arange(copies, dtype=np.int64) * period, len(ns))
    all_ns = ((np.tile(ns, copies) + shifts) / speedup).astype(np.int64)
    write_azure(dst, all_ns, np.tile(ctx, copies), np.tile(gen, copies))
    return len(all_ns)


def synthetic(dst: Path, rows: int, rate: float, seed: int = 0) -> None:
    """A Poisson trace of ``rows`` requests at ``rate``/s with lognormal token counts shaped like the
    Azure conversation trace (medians ≈ 1,020 in and 129 out), for sizes beyond the real trace."""
    rng = np.random.default_rng(seed)
    ns = np.cumsum(rng.exponential(1e9 / rate, rows)).astype(np.int64)
    ns -= ns[0]
    ctx = np.clip(rng.lognormal(np.log(1020), 0.9, rows), 1, 32_000).astype(np.int64)
    gen = np.clip(rng.lognormal(np.log(129), 0.8, rows), 1, 4_000).astype(np.int64)
    write_azure(dst, ns, ctx, gen)
