"""Small pieces shared by the loaders: task encoding and long → wide pivoting.

Every source ends up as the same (queries × models) arrays of :class:`~sim.workload.queryset.QuerySet`;
doing the pivot and the missing-pair policy in one place keeps "what happens to a query some model never
answered" identical for all formats.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from sim.errors import DataError

MissingPolicy = Literal["error", "drop_query"]
MISSING_POLICIES: tuple[str, ...] = ("error", "drop_query")


def encode_tasks(labels: Sequence[object]) -> tuple[tuple[str, ...], NDArray[np.int64]]:
    """Sorted task names and each query's index into them (sorted, so the encoding is file-order free)."""
    as_str = np.asarray([str(x) for x in labels], dtype=object)
    names, codes = np.unique(as_str, return_inverse=True) if len(as_str) else (np.array([]), np.array([]))
    return tuple(str(x) for x in names), np.asarray(codes, dtype=np.int64).reshape(-1)


def pivot(
    query_codes: NDArray[np.int64],
    model_codes: NDArray[np.int64],
    values: NDArray[np.float64],
    n: int,
    m: int,
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Scatter per-row values into an (n, m) array (NaN where absent) plus the "present" mask."""
    out = np.full((n, m), np.nan)
    present = np.zeros((n, m), dtype=bool)
    out[query_codes, model_codes] = values
    present[query_codes, model_codes] = True
    return out, present


def apply_missing_policy(
    present: NDArray[np.bool_],
    policy: str,
    query_ids: Sequence[object],
    model_names: Sequence[str],
    file: str | Path,
) -> NDArray[np.int64]:
    """Indices of the queries to keep, given which (query, model) pairs the file has.

    ``"error"``: any missing pair is a DataError naming the first one (and how many there are);
    ``"drop_query"``: queries missing any model are dropped (DataError if none survive).
    """
    if policy not in MISSING_POLICIES:
        raise ValueError(f"missing={policy!r}: expected one of {', '.join(MISSING_POLICIES)}")
    complete = present.all(axis=1)
    if complete.all():
        return np.arange(present.shape[0], dtype=np.int64)
    if policy == "error":
        qi, mj = np.argwhere(~present)[0]
        raise DataError(
            f"no score for query {query_ids[qi]!r} on model {model_names[mj]!r} "
            f"({int((~present).sum())} missing (query, model) pairs in all); every query needs a score "
            "for every model, or load with missing='drop_query'",
            file=file,
            where=f"query {query_ids[qi]}, model {model_names[mj]}",
        )
    keep = np.flatnonzero(complete).astype(np.int64)
    if keep.size == 0:
        raise DataError(
            "no query has a score for every model (missing='drop_query' dropped them all)", file=file
        )
    return keep
