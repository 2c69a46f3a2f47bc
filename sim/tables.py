"""A run's result tables as columns (name → 1-D numpy array): a DataFrame or a parquet file only when asked.

Why: importing pandas takes ~0.27 s here, about a third of a small ``llmsim run`` (issue 14), and a run
needs none of it. The engine and the summary work on numpy arrays; the run folder's parquet files are
written from the columns by pyarrow (~0.04 s to import), through its buffer API, since
``pyarrow.array`` on a numpy array imports pandas; pandas loads only when a caller reads a table as a
DataFrame (:class:`sim.results.RunResult`'s ``requests``, ``batches``, ``instances``, ``occupancy``).

The files hold what ``pandas.DataFrame(columns).to_parquet(index=False)`` wrote before, column for
column: text as ``large_string`` (``string`` under pandas 2; an object column of no rows has no type:
``null``), NaN in a float column as null, numbers and booleans in their own width. Only pandas' schema
metadata is absent, which pandas needs to restore an index or extension types these tables do not
have; ``tests/sim/test_tables.py`` writes both ways and compares what is read back.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

#: A table: column name → 1-D array, every array of the same length, in column order.
Columns = dict[str, np.ndarray]


def frame(cols: Columns) -> pd.DataFrame:
    """The table as a DataFrame (the constructor every table used before it was kept as columns)."""
    import pandas as pd

    return pd.DataFrame(cols)


def _validity(missing: np.ndarray) -> tuple[Any, int]:
    """Arrow's validity bitmap for a mask of missing values (None when nothing is missing), and the count."""
    import pyarrow as pa

    nulls = int(missing.sum())
    return (pa.py_buffer(np.packbits(~missing, bitorder="little")) if nulls else None), nulls


@functools.cache
def _pandas_major() -> int:
    """The installed pandas' major version, read from its metadata without importing it (3 if unknown)."""
    import importlib.metadata  # (only when a text column is written: not at start-up)

    try:
        return int(importlib.metadata.version("pandas").split(".")[0])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return 3


def _text_type() -> Any:
    """The arrow type pandas gives text: ``large_string`` from pandas 3 (its ``str`` dtype), ``string``
    before (text was an object column then)."""
    import pyarrow as pa

    return pa.large_string() if _pandas_major() >= 3 else pa.string()


def _utf8(col: np.ndarray) -> tuple[np.ndarray, bytes]:
    """A text column's UTF-8 bytes, concatenated, and each value's length in bytes.

    ASCII text of similar lengths (the tables' names, statuses and ids) is converted by numpy as a
    fixed-width array, ~10× faster than a str at a time; anything else (non-ASCII, a NUL, values whose
    longest is far above their mean, which would make that array huge) goes a str at a time. A numpy
    text column is read as it is, with no str per value (a million ids took ~130 MB as Python strs)."""
    if col.dtype.kind == "U":  # its values are what it holds: numpy keeps no trailing NUL
        got = _ascii(np.ascontiguousarray(col))
        if got is not None:
            return got
        items = col.tolist()
    else:
        items = col.tolist()
        if not set(map(type, items)) <= {str}:  # (pandas types a column of None otherwise)
            raise TypeError("a text column holds something other than str: these tables have no missing text")
        chars = np.fromiter(map(len, items), dtype=np.int64, count=len(items))  # code points
        if len(items) and chars.max() <= 4 * chars.mean() + 16:
            got = _ascii(np.ascontiguousarray(col.astype(str)), chars)
            if got is not None:
                return got
    enc = [v.encode() for v in items]
    return np.fromiter(map(len, enc), dtype=np.int64, count=len(enc)), b"".join(enc)


def _ascii(fixed: np.ndarray, chars: np.ndarray | None = None) -> tuple[np.ndarray, bytes] | None:
    """``fixed`` (numpy text, C-contiguous) as ASCII bytes if each value is ASCII without NUL and, when
    given, ``chars`` code points long (the values it was made from); ``None`` otherwise (numpy drops a
    trailing NUL, then the lengths differ, and counts one inside, then ``kept`` does not)."""
    n, width = len(fixed), fixed.dtype.itemsize // 4
    if not n or not width:
        return None
    lens = np.char.str_len(fixed).astype(np.int64)
    if chars is not None and not (lens == chars).all():
        return None
    chars = lens
    points = fixed.view(np.uint32).reshape(n, width)
    if points.max() >= 128:
        return None
    kept = points != 0
    if not (kept.sum(axis=1) == chars).all():
        return None
    return chars, points.astype(np.uint8)[kept].tobytes()


def _arrow(col: np.ndarray) -> Any:
    """One column as pandas hands it to pyarrow (``to_parquet``): text (str only) as pandas types it
    (:func:`_text_type`), an object column of no rows untyped (``null``; text of no rows under
    pandas 2, where text was an object column), NaN in floats as null,
    numbers in their own width. Built from the array's buffers: ``pyarrow.array`` on a numpy
    array imports pandas to look for pandas types, which is the import this module avoids."""
    import pyarrow as pa

    n, kind = len(col), col.dtype.kind
    if n == 0 and (kind == "O" or (kind == "U" and _pandas_major() < 3)):  # an object column of no rows
        return pa.nulls(0)
    if kind in "OU":
        lens, data = _utf8(col)
        text = _text_type()
        offsets = np.zeros(n + 1, dtype=np.int64 if text == pa.large_string() else np.int32)
        np.cumsum(lens, out=offsets[1:])
        return pa.Array.from_buffers(text, n, [None, pa.py_buffer(offsets), pa.py_buffer(data)], null_count=0)
    if kind == "b":
        return pa.Array.from_buffers(pa.bool_(), n, [None, pa.py_buffer(np.packbits(col, bitorder="little"))],
                                     null_count=0)
    if kind not in "iuf":
        raise TypeError(f"no parquet column for numpy dtype {col.dtype}")
    valid, nulls = _validity(np.isnan(col)) if kind == "f" else (None, 0)
    values = np.ascontiguousarray(col, dtype=col.dtype.newbyteorder("="))
    return pa.Array.from_buffers(pa.from_numpy_dtype(values.dtype), n, [valid, pa.py_buffer(values)], null_count=nulls)


ROW_GROUP_ROWS = 1 << 17
"""Rows per parquet row group, converted and written one at a time: a million-row table converted and
written at once took ~280 MB more at the end of a 1 M-request run (issue 14: its tables in 600 MB)."""


def write_parquet(cols: Columns, path: Path) -> None:
    """Write the table to ``path`` as a parquet file (no index column, as ``to_parquet(index=False)``), in
    row groups of :data:`ROW_GROUP_ROWS` rows, each converted to arrow only when it is written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = list(cols)
    arrays = [np.asarray(c) for c in cols.values()]
    n = len(arrays[0]) if arrays else 0
    rows = ROW_GROUP_ROWS

    def part(lo: int, hi: int) -> Any:
        return pa.Table.from_arrays([_arrow(a[lo:hi]) for a in arrays], names=names)

    first = part(0, min(n, rows))
    with pq.ParquetWriter(path, first.schema) as writer:  # what write_table does, a group at a time
        writer.write_table(first)
        for lo in range(rows, n, rows):
            writer.write_table(part(lo, lo + rows))
