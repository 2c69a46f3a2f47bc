"""Fill in per-token prices the scenario leaves unset, so the resolved scenario is self-contained.

Order: the model's own fields, then the scenario's ``prices_file``, then the genai-prices library (by
``dataset_model`` or ``name``). Prices are optional for a dataset that records per-query costs. Resolution happens at load time and the resolved prices are written into
the run folder's scenario.yaml, so a rerun never depends on a lookup.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from sim.config.schema import Scenario
from sim.errors import DataError, ScenarioError
from sim.pricing import _lookup

COLUMNS = ("model", "price_in_per_mtok", "price_out_per_mtok")


def read_price_file(path: Path, model_names: list[str]) -> dict[str, tuple[float, float]]:
    """Read a price table; every row must name a scenario model and hold two finite prices >= 0."""
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise DataError(f"missing column {missing[0]!r}; expected columns {', '.join(COLUMNS)}",
                                file=path, where="line 1")
            table: dict[str, tuple[float, float]] = {}
            first_line: dict[str, int] = {}
            for line, row in enumerate(reader, start=2):
                name = (row["model"] or "").strip()
                if name not in model_names:
                    raise DataError(f"unknown model {name!r}; the scenario's models are: {', '.join(model_names)}",
                                    file=path, where=f"line {line}, column model")
                if name in first_line:
                    # Last-row-wins would silently pick one of two prices; which one was meant is unknowable.
                    raise DataError(f"duplicate row for model {name!r} (lines {first_line[name]} and {line}); "
                                    "expected one row per model", file=path, where=f"line {line}, column model")
                first_line[name] = line
                pair = []
                for col in COLUMNS[1:]:
                    try:
                        v = float(row[col])
                    except (TypeError, ValueError):
                        raise DataError(f"expected a number >= 0, got {row[col]!r}", file=path,
                                        where=f"line {line}, column {col}") from None
                    if not math.isfinite(v) or v < 0:
                        raise DataError(f"expected a number >= 0, got {row[col]!r}", file=path,
                                        where=f"line {line}, column {col}")
                    pair.append(v)
                table[name] = (pair[0], pair[1])
            return table
    except OSError as exc:
        raise DataError(f"cannot read the price table: {exc}", file=path) from None


def records_costs(sc: Scenario, base_dir: Path | None) -> bool:
    """Does the scenario bill the dataset's recorded per-query costs (so prices are not needed)?

    True for a routerbench pool (``<model>|total_cost``) and a long table with a ``cost_usd`` column,
    unless a trace's own token counts are served (those are priced per token). Only the header is read.
    """
    from sim.config.schema import DatasetPool, TraceArrivals

    pool, arrivals = sc.workload.pool, sc.workload.arrivals
    if not isinstance(pool, DatasetPool):
        return False
    if isinstance(arrivals, TraceArrivals) and arrivals.use_trace_tokens:
        return False
    if pool.kind == "routerbench":
        return True
    if pool.kind != "long_table":
        return False
    path = Path(pool.paths[0])  # a list of files is routerbench's only (which records costs: above)
    path = path if path.is_absolute() or base_dir is None else base_dir / path
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            return "cost_usd" in pq.read_schema(path).names
        with path.open(newline="", encoding="utf-8") as fh:
            return "cost_usd" in next(csv.reader(fh), [])
    except (OSError, ValueError, UnicodeDecodeError):
        return False  # the loader reports an unreadable file, with its own message


def resolve_prices(sc: Scenario, file: str | Path, base_dir: Path | None) -> Scenario:
    """The scenario with every unset price filled (order in the module docstring).

    A model with no price anywhere is an error, unless the dataset records what each call cost
    (:func:`records_costs`): then the price stays unset (null in the resolved scenario) and routing
    predicts cost from the recorded costs (see :mod:`sim.predict`).
    """
    names = [m.name for m in sc.models]
    recorded = None
    table: dict[str, tuple[float, float]] = {}
    if sc.prices_file is not None:
        p = Path(sc.prices_file)
        p = p if p.is_absolute() or base_dir is None else base_dir / p
        table = read_price_file(p, names)
    models = []
    for i, m in enumerate(sc.models):
        pin, pout = m.price_in_per_mtok, m.price_out_per_mtok
        if pin is None or pout is None:
            found = table.get(m.name)
            if found is None:
                found, reason = _lookup(m.dataset_model or m.name, None)
                if found is None:
                    recorded = records_costs(sc, base_dir) if recorded is None else recorded
                    if recorded:
                        models.append(m)
                        continue
                    raise ScenarioError(
                        f"no price for model {m.name!r}: set price_in_per_mtok and price_out_per_mtok "
                        f"(0 for a self-hosted model billed by GPU time), or list it in prices_file ({reason})",
                        file=file,
                        where=f"models[{i}]",
                    )
            pin = found[0] if pin is None else pin
            pout = found[1] if pout is None else pout
        models.append(m.model_copy(update={"price_in_per_mtok": pin, "price_out_per_mtok": pout}))
    return sc.model_copy(update={"models": models})
