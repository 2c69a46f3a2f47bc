"""Fill in per-token prices the scenario leaves unset, so the resolved scenario is self-contained.

Order: the model's own fields, then the scenario's ``prices_file``, then the genai-prices library (by
``dataset_model`` or ``name``). Prices are optional for a dataset that records per-query costs. Resolution happens at load time and the resolved prices are written into
the run folder's scenario.yaml, so a rerun never depends on a lookup.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import get_args

from sim.config.schema import PricePerMTok, Scenario
from sim.errors import DataError, ScenarioError
from sim.pricing import _lookup

COLUMNS = ("model", "price_in_per_mtok", "price_out_per_mtok")


def _price_range() -> tuple[float, float]:
    """The scenario schema's range for price_in_per_mtok / price_out_per_mtok (``PricePerMTok``): a price
    from the file is written into the run folder's scenario.yaml, which must validate when rerun."""
    bounds = {type(m).__name__: m for info in get_args(PricePerMTok)[1:] for m in getattr(info, "metadata", ())}
    return float(bounds["Ge"].ge), float(bounds["Le"].le)


PRICE_MIN, PRICE_MAX = _price_range()


def read_price_file(path: Path, model_names: list[str]) -> dict[str, tuple[float, float]]:
    """Read a price table; every row must name a scenario model and hold two prices in the schema's range.

    UTF-8 with or without a BOM (like the trace and dataset readers); undecodable bytes and malformed CSV
    are errors naming the line, not tracebacks."""
    reader = None
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            return _price_rows(reader, path, model_names)
    except UnicodeDecodeError as exc:
        from sim.datasets.validate import utf8_error_line  # pandas: only on this error path

        raise DataError(f"not UTF-8 text ({exc.reason}); expected a CSV price table", file=path,
                        where=f"line {utf8_error_line(path)}") from None
    except csv.Error as exc:
        line = reader.reader.line_num if reader is not None else 1  # DictReader's own lags on an error
        raise DataError(f"malformed CSV ({exc})", file=path, where=f"line {line}") from None
    except OSError as exc:
        raise DataError(f"cannot read the price table: {exc}", file=path) from None


def _price_rows(reader: csv.DictReader[str], path: Path, model_names: list[str]) -> dict[str, tuple[float, float]]:
    """The table of an open price file (rules in :func:`read_price_file`); lines are the file's own."""
    missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise DataError(f"missing column {missing[0]!r}; expected columns {', '.join(COLUMNS)}",
                        file=path, where="line 1")
    table: dict[str, tuple[float, float]] = {}
    first_line: dict[str, int] = {}
    for row in reader:
        line = reader.line_num  # the row's last line (a quoted field may span lines; blank lines are skipped)
        name = (row["model"] or "").strip()
        if name not in model_names:
            raise DataError(f"unknown model {name!r}; the scenario's models are: {', '.join(model_names)}",
                            file=path, where=f"line {line}, column model")
        if name in first_line:
            # Last-row-wins would silently pick one of two prices; which one was meant is unknowable.
            raise DataError(f"duplicate row for model {name!r} (lines {first_line[name]} and {line}); "
                            "expected one row per model", file=path, where=f"line {line}, column model")
        first_line[name] = line
        table[name] = (_price(row, COLUMNS[1], path, line), _price(row, COLUMNS[2], path, line))
    return table


def _price(row: dict[str, str | None], col: str, path: Path, line: int) -> float:
    """One price cell, in the schema's range (``PRICE_MIN`` .. ``PRICE_MAX`` USD per million tokens)."""
    expected = f"expected a price in USD per million tokens from {PRICE_MIN:g} to {PRICE_MAX:g}"
    try:
        value = float(row[col])  # type: ignore[arg-type]  # None (a short row): TypeError
    except (TypeError, ValueError):
        raise DataError(f"{expected}, got {row[col]!r}", file=path, where=f"line {line}, column {col}") from None
    if not (math.isfinite(value) and PRICE_MIN <= value <= PRICE_MAX):
        raise DataError(f"{expected}, got {row[col]!r}", file=path, where=f"line {line}, column {col}")
    return value


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
