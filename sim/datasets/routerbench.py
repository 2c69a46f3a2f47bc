"""RouterBench (withmartian/routerbench) in its published wide format.

One row per prompt with ``sample_id, prompt, eval_name``; per model ``<model>`` (score in [0, 1]),
``<model>|total_cost`` (USD) and ``<model>|model_response`` (text). A model is any column ``X`` that has
an ``X|total_cost`` partner; other columns (e.g. ``oracle_model_to_route_to``) are ignored.

- task = ``eval_name``; cost_usd = ``<model>|total_cost``; prompt tokens are estimated from the prompt and
  output tokens from the response text (:func:`~sim.datasets.tokens.estimate_tokens`); an empty
  response is filled by :func:`~sim.datasets.tokens.fill_output_tokens`.
- ``.csv`` is always readable. RouterBench is published as ``.pkl``; unpickling runs arbitrary code from
  the file, so a pickle is only read with ``trusted=True`` (the scenario must mark the file trusted).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from sim.datasets.common import encode_tasks
from sim.datasets.tokens import estimate_tokens, fill_output_tokens
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

BASE_COLUMNS = ("sample_id", "prompt", "eval_name")
COST_SUFFIX = "|total_cost"
RESPONSE_SUFFIX = "|model_response"
PICKLE_SUFFIXES = (".pkl", ".pickle")


def load_routerbench(path: str | Path, *, trusted: bool = False) -> QuerySet:
    """Load a RouterBench ``.csv`` (or, with ``trusted=True``, ``.pkl``) file."""
    path = Path(path)
    df = _read(path, trusted)
    require_columns(df, BASE_COLUMNS, path)
    for col in BASE_COLUMNS:
        require_present(df[col], col, path)
    models = _model_columns(df, path)
    dup = df["sample_id"].duplicated().to_numpy()
    if dup.any():
        raise DataError(
            "duplicate sample_id: expected one row per prompt",
            file=path,
            where=row_where(int(np.argmax(dup)), "sample_id"),
        )
    quality = np.column_stack([check_score(df[m], m, path) for m in models])
    cost = np.column_stack(
        [
            check_numeric(df[m + COST_SUFFIX], m + COST_SUFFIX, path, lo=0.0, what="a cost in USD >= 0")
            for m in models
        ]
    )
    task_names, task = encode_tasks(list(df["eval_name"]))
    prompts = tuple(str(p) for p in df["prompt"])
    return QuerySet(
        model_names=tuple(models),
        task_names=task_names,
        task=task,
        prompt_tokens=estimate_tokens(prompts),
        quality=quality,
        output_tokens=fill_output_tokens(
            np.column_stack([_response_tokens(df[m + RESPONSE_SUFFIX]) for m in models]), task
        ),
        query_ids=df["sample_id"].to_numpy(dtype=object),
        prompts=prompts,
        cost_usd=cost,
    )


def _read(path: Path, trusted: bool) -> pd.DataFrame:
    if path.suffix.lower() not in PICKLE_SUFFIXES:
        if path.suffix.lower() != ".csv":
            raise DataError(
                f"unsupported file type {path.suffix!r}: expected .csv (or a trusted .pkl)", file=path
            )
        return read_table(path)
    if not trusted:
        raise DataError(
            "refusing to read a pickle: unpickling runs code embedded in the file; convert it to CSV, "
            "or mark the file trusted in the scenario (trusted: true) if you trust its source",
            file=path,
        )
    if not path.is_file():
        raise DataError("file not found (expected a RouterBench .pkl file)", file=path)
    try:
        obj = pd.read_pickle(path)
    except Exception as exc:  # a corrupt pickle can raise almost anything
        raise DataError(f"unreadable pickle: {type(exc).__name__}: {exc}", file=path) from exc
    if not isinstance(obj, pd.DataFrame):
        raise DataError(f"the pickle holds a {type(obj).__name__}, expected a pandas DataFrame", file=path)
    return obj.reset_index(drop=True)


def _model_columns(df: pd.DataFrame, path: Path) -> list[str]:
    """Models, in column order: every ``X`` with an ``X|total_cost``; each needs its score and response."""
    columns = [str(c) for c in df.columns]
    models = [c[: -len(COST_SUFFIX)] for c in columns if c.endswith(COST_SUFFIX)]
    if not models:
        raise DataError(
            "no model columns: expected, per model, columns '<model>', '<model>|total_cost' and "
            "'<model>|model_response'",
            file=path,
            where="column <model>|total_cost",
        )
    for model in models:
        for col in (model, model + RESPONSE_SUFFIX):
            if col not in columns:
                raise DataError(
                    f"missing column {col!r} (model {model!r} has a {model + COST_SUFFIX!r} column)",
                    file=path,
                    where=f"column {col}",
                )
    return models


def _response_tokens(responses: pd.Series) -> np.ndarray:
    """Estimated tokens per response; NaN (to be filled) where the response is missing or empty."""
    texts = ["" if r is None or (isinstance(r, float) and np.isnan(r)) else str(r) for r in responses]
    tokens = estimate_tokens(texts).astype(np.float64)
    tokens[np.asarray([t == "" for t in texts])] = np.nan
    return tokens
