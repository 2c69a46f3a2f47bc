"""Reading and checking tabular dataset files, with errors a user can act on.

A bad file must fail with ONE :class:`~sim.errors.DataError` naming the file, the column, the first bad
row and what was expected, never with a pandas or KeyError traceback from deep inside a loader.

Row convention (used by every loader): rows are **1-based data rows, the header not counted** — row 1
is the first record (line 2 of a CSV file, index 0 of a DataFrame). Loaders keep pandas' positional
RangeIndex from :func:`read_table` through their filtering, so ``index + 1`` is always the file row.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from sim.errors import DataError, read_error

ROW_CONVENTION = "rows are 1-based data rows, header not counted"


def row_where(index_label: int, column: str) -> str:
    """``"row 12, column score"`` for the DataFrame index label ``11``."""
    return f"row {index_label + 1}, column {column}"


def utf8_error_line(path: Path) -> int:
    """The 1-based line holding a file's first byte that is not UTF-8 (1 when it cannot be told).

    Decoders report offsets within their own buffers, so the file is decoded again here, once, on the
    error path only."""
    try:
        raw = path.read_bytes()
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return raw[: exc.start].count(b"\n") + 1
    except OSError:
        pass
    return 1


def require_file(path: Path, expected: str) -> None:
    """DataError unless ``path`` is a file (``expected`` says which kind): a directory is named as one,
    since "not found" would send the user looking for a path that is plainly there."""
    if path.is_dir():
        raise DataError(f"is a directory; expected {expected}", file=path)
    if not path.is_file():
        raise DataError(f"file not found (expected {expected})", file=path)


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a ``.csv`` or ``.parquet`` file into a DataFrame with a fresh positional index."""
    path = Path(path)
    require_file(path, "a .csv or .parquet file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            # Identifier columns stay text: "007" and "7" are different queries.
            df = pd.read_csv(path, dtype={"query_id": str, "sample_id": str, "task": str, "model": str})
        elif suffix in (".parquet", ".pq"):
            df = pd.read_parquet(path)
        else:
            raise DataError(f"unsupported file type {suffix!r}: expected .csv or .parquet", file=path)
    except DataError:
        raise
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text ({exc.reason}); expected a {suffix[1:]} file", file=path,
                        where=f"line {utf8_error_line(path)}") from None
    except pd.errors.EmptyDataError:
        raise DataError("the file is empty; expected a header row of column names", file=path,
                        where="line 1") from None
    except pd.errors.ParserError as exc:  # e.g. "Expected 3 fields in line 7, saw 5"
        line = re.search(r"line (\d+)", str(exc))
        raise DataError(f"not a well-formed CSV table: {str(exc)[:200]}", file=path,
                        where=f"line {line.group(1)}" if line else "line 1") from None
    except OSError as exc:  # unreadable (permissions): said plainly, not as pyarrow's sentence
        raise read_error(exc, path) from None
    except Exception as exc:  # pandas/pyarrow raise many types for a corrupt file
        raise DataError(f"cannot read file: {type(exc).__name__}: {exc}", file=path) from exc
    if len(df) == 0:
        raise DataError("the table has a header but no rows", file=path, where="line 2")
    return df.reset_index(drop=True)


def require_columns(
    df: pd.DataFrame, required: Sequence[str], file: str | Path, optional: Sequence[str] = ()
) -> None:
    """DataError naming the first missing required column and listing what the file has."""
    missing = [c for c in required if c not in df.columns]
    if missing:
        expected = ", ".join(required)
        if optional:
            expected += f" (optional: {', '.join(optional)})"
        found = ", ".join(map(str, df.columns)) or "none"
        raise DataError(
            f"missing column {missing[0]!r}; expected columns {expected}; found {found}",
            file=file,
            where=f"column {missing[0]}",
        )


def require_present(series: pd.Series, column: str, file: str | Path) -> None:
    """DataError at the first empty cell of a key column (ids, task, model names)."""
    bad = series.isna().to_numpy()
    if bad.any():
        label = series.index[int(np.argmax(bad))]
        raise DataError(
            f"empty value; every row needs a {column} ({ROW_CONVENTION})",
            file=file,
            where=row_where(int(label), column),
        )


def check_numeric(
    series: pd.Series,
    column: str,
    file: str | Path,
    *,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    allow_null: bool = False,
    what: str | None = None,
) -> NDArray[np.float64]:
    """The column as float64, or a DataError at its first bad row.

    Bad means: not a number (text, booleans), NaN/empty unless ``allow_null`` (then NaN is returned for
    it), infinite, below ``lo`` (or equal to it when ``lo_open``), or above ``hi``.
    """
    raw = series
    if raw.dtype == bool:
        raw = raw.astype(object)
    as_num = pd.to_numeric(raw, errors="coerce")
    values = np.asarray(as_num, dtype=np.float64)
    is_null = np.asarray(raw.isna(), dtype=bool)
    if raw.dtype.kind in "iuf":  # already numeric: no booleans hiding among the values
        is_bool = np.zeros(len(raw), dtype=bool)
    else:
        is_bool = np.asarray(raw.map(lambda v: isinstance(v, bool | np.bool_)), dtype=bool)
    non_numeric = (np.isnan(values) & ~is_null) | is_bool
    with np.errstate(invalid="ignore"):
        below = np.zeros(len(values), dtype=bool)
        if lo is not None:
            below = values <= lo if lo_open else values < lo
        above = values > hi if hi is not None else np.zeros(len(values), dtype=bool)
    bad = non_numeric | np.isinf(values) | below | above
    if not allow_null:
        bad |= is_null
    if not bad.any():
        return values
    pos = int(np.argmax(bad))
    shown = raw.iloc[pos]
    if is_null[pos]:
        reason = "empty / NaN"
    elif non_numeric[pos]:
        reason = f"non-numeric value {shown!r}"
    else:
        reason = f"value {shown!r} out of range"
    bound = what or _range_text(lo, hi, lo_open)
    raise DataError(
        f"{reason}: expected {bound} ({int(bad.sum())} bad row(s) in this column; {ROW_CONVENTION})",
        file=file,
        where=row_where(int(series.index[pos]), column),
    )


def _range_text(lo: float | None, hi: float | None, lo_open: bool) -> str:
    if lo is not None and hi is not None:
        return f"a number in {'(' if lo_open else '['}{lo:g}, {hi:g}]"
    if lo is not None:
        return f"a number {'>' if lo_open else '>='} {lo:g}"
    return "a number"


def check_score(series: pd.Series, column: str, file: str | Path) -> NDArray[np.float64]:
    """A quality/score column: numbers in [0, 1], no NaN."""
    return check_numeric(series, column, file, lo=0.0, hi=1.0, what="a score in [0, 1]")
