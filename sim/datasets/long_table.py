"""The canonical long table: one row per (query, model) outcome, CSV or Parquet.

Columns ``query_id, task, model, score`` (score in [0, 1]) and optionally ``prompt, input_tokens,
output_tokens, cost_usd``. It is the interchange format: any routing dataset can be exported to it
without code, and it is pivoted here to the queries × models :class:`QuerySet`.

Queries and models keep their order of first appearance in the file. Per-query columns (task, prompt)
must agree across a query's rows. ``prompt_tokens`` is the largest ``input_tokens`` of the query's rows
(tokenizers differ by model; the largest prices conservatively), else estimated from the prompt, else
:data:`~sim.datasets.tokens.DEFAULT_PROMPT_TOKENS`. Missing ``output_tokens`` are filled by
:func:`~sim.datasets.tokens.fill_output_tokens`. ``cost_usd``, when the column exists, must be given
for every row.

``on_missing_score: drop`` removes rows with an empty score first (the (query, model) pairs they held are
then missing, handled by ``missing``); ``on_duplicate: first`` keeps the first row of a repeated
(query_id, model). Both default to ``error``; the counts are in ``QuerySet.data_report``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from sim.datasets.common import apply_missing_policy, encode_tasks, pivot
from sim.datasets.tokens import (
    DEFAULT_OUTPUT_TOKENS,
    DEFAULT_PROMPT_TOKENS,
    check_token_option,
    estimate_tokens,
    fill_output_tokens,
)
from sim.datasets.validate import (
    check_numeric,
    check_score,
    read_table,
    require_columns,
    require_present,
    row_where,
)
from sim.errors import DataError
from sim.workload.queryset import QuerySet

REQUIRED = ("query_id", "task", "model", "score")
OPTIONAL = ("prompt", "input_tokens", "output_tokens", "cost_usd")


def load_long_table(
    path: str | Path,
    *,
    missing: str = "error",
    default_prompt_tokens: int = DEFAULT_PROMPT_TOKENS,
    default_output_tokens: int = DEFAULT_OUTPUT_TOKENS,
    on_duplicate: str = "error",
    on_missing_score: str = "error",
) -> QuerySet:
    """Load a long table (see the module docstring); ``missing`` is ``"error"`` or ``"drop_query"``."""
    path = Path(path)
    for name, value, allowed in (("on_duplicate", on_duplicate, ("error", "first")),
                                 ("on_missing_score", on_missing_score, ("error", "drop"))):
        if value not in allowed:
            raise ValueError(f"{name}={value!r}: expected one of {', '.join(allowed)}")
    default_prompt_tokens = check_token_option("default_prompt_tokens", default_prompt_tokens)
    default_output_tokens = check_token_option("default_output_tokens", default_output_tokens)
    df = read_table(path)
    require_columns(df, REQUIRED, path, OPTIONAL)
    for col in ("query_id", "task", "model"):
        require_present(df[col], col, path)
    report = {"rows_dropped_duplicate": 0, "rows_dropped_missing_score": 0}
    if on_missing_score == "drop":
        empty = df["score"].isna().to_numpy()
        report["rows_dropped_missing_score"] = int(empty.sum())
        df = df[~empty]  # labels kept: errors still name the file's rows
    if on_duplicate == "first":
        dup = df.duplicated(["query_id", "model"]).to_numpy()
        report["rows_dropped_duplicate"] = int(dup.sum())
        df = df[~dup]
    if len(df) == 0:
        raise DataError("no rows left after dropping rows with an empty score", file=path)
    scores = check_score(df["score"], "score", path)
    q_codes, q_uniques = pd.factorize(df["query_id"])
    m_codes, m_uniques = pd.factorize(df["model"].astype(str))
    query_ids = np.asarray(q_uniques, dtype=object)
    model_names = tuple(str(x) for x in m_uniques)
    n, m = len(query_ids), len(model_names)
    _reject_duplicates(df, path)

    quality, present = pivot(q_codes, m_codes, scores, n, m)
    first_row = _first_row_per_query(q_codes, n)
    tasks = _per_query(df, "task", q_codes, first_row, path)
    prompts = _per_query(df, "prompt", q_codes, first_row, path) if "prompt" in df.columns else None

    if "input_tokens" in df.columns:
        inp = check_numeric(df["input_tokens"], "input_tokens", path, lo=1.0, what="a token count >= 1")
        largest = np.zeros(n)
        np.maximum.at(largest, q_codes, inp)
        prompt_tokens = np.rint(largest).astype(np.int64)
    elif prompts is not None:
        prompt_tokens = estimate_tokens(str(p) for p in prompts)
    else:
        prompt_tokens = np.full(n, int(default_prompt_tokens), dtype=np.int64)

    out_tokens = np.full((n, m), np.nan)
    if "output_tokens" in df.columns:
        vals = check_numeric(
            df["output_tokens"],
            "output_tokens",
            path,
            lo=0.0,
            lo_open=True,
            allow_null=True,
            what="a token count > 0 (or empty if unknown)",
        )
        out_tokens, _ = pivot(q_codes, m_codes, vals, n, m)
    cost = None
    if "cost_usd" in df.columns:
        cvals = check_numeric(df["cost_usd"], "cost_usd", path, lo=0.0, what="a cost in USD >= 0")
        cost, _ = pivot(q_codes, m_codes, cvals, n, m)

    keep = apply_missing_policy(present, missing, list(query_ids), model_names, path)
    task_names, task = encode_tasks([tasks[i] for i in keep])
    return QuerySet(
        model_names=model_names,
        task_names=task_names,
        task=task,
        prompt_tokens=prompt_tokens[keep],
        quality=quality[keep],
        output_tokens=fill_output_tokens(out_tokens[keep], task, default_output_tokens),
        query_ids=query_ids[keep],
        prompts=None if prompts is None else tuple(str(prompts[i]) for i in keep),
        cost_usd=None if cost is None else cost[keep],
        data_report=report,
    )


def _reject_duplicates(df: pd.DataFrame, path: Path) -> None:
    dup = df.duplicated(["query_id", "model"]).to_numpy()
    if dup.any():
        pos = int(np.argmax(dup))
        raise DataError(
            f"duplicate row for query {df['query_id'].iloc[pos]!r} and model {df['model'].iloc[pos]!r}: "
            "expected one row per (query_id, model)",
            file=path,
            where=row_where(int(df.index[pos]), "model"),
        )


def _first_row_per_query(q_codes: np.ndarray, n: int) -> np.ndarray:
    first = np.full(n, -1, dtype=np.int64)
    rows = np.arange(len(q_codes))[::-1]
    first[q_codes[::-1]] = rows  # the last write wins, and reversed that is the first row
    return first


def _per_query(df: pd.DataFrame, column: str, q_codes: np.ndarray, first_row: np.ndarray, path: Path) -> list:
    """The column's value per query, which must be present and the same on all of the query's rows."""
    require_present(df[column], column, path)
    values = df[column].to_numpy(dtype=object)
    reference = values[first_row][q_codes]
    differs = values != reference
    if differs.any():
        pos = int(np.argmax(differs))
        raise DataError(
            f"{column} {values[pos]!r} differs from {reference[pos]!r} on this query's first row; "
            f"a query has one {column}",
            file=path,
            where=row_where(int(df.index[pos]), column),
        )
    return list(values[first_row])
