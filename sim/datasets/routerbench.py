"""RouterBench (withmartian/routerbench) in its published wide format, and datasets derived from it.

One row per prompt with ``sample_id, prompt, eval_name``; per model ``<model>`` (score in [0, 1]),
``<model>|total_cost`` (USD) and ``<model>|model_response`` (text). A model is any column ``X`` that has
an ``X|total_cost`` partner; other columns (e.g. ``oracle_model_to_route_to``) are ignored.

- task = ``eval_name``; cost_usd = ``<model>|total_cost``. Prompts and responses are published as Python
  list literals (``"['What is 2+2?']"``); they are unwrapped (:func:`~sim.datasets.tokens.unwrap_list_literal`)
  before tokens are estimated (:func:`~sim.datasets.tokens.estimate_tokens`), so a response ``['A']`` is
  one token. An empty response is filled by :func:`~sim.datasets.tokens.fill_output_tokens`.
- ``path`` is one file, a list of files, or a folder (every ``.csv``/``.parquet``/``.pq`` in it, and
  ``.pkl`` when trusted, in name order). Every file must have the same models. Each query remembers its
  file's part in ``QuerySet.split``: ``"test"`` when the file name (before its first dot, lower case)
  has the word ``test`` or ``testing`` (``arc_test.csv``, ``test-00000.parquet``), ``"train"`` for
  ``train`` / ``training``, else ``""`` — what ``split: files`` uses.
- ``.csv`` and ``.parquet`` are always readable. RouterBench is published as ``.pkl``; unpickling runs
  arbitrary code from the file, so a pickle is only read with ``trusted=True``.
- ``on_duplicate``: ``"error"`` (default) stops at a repeated ``sample_id`` naming both places;
  ``"first"`` keeps its first row (files in the order above) and drops the others.
- ``on_missing_score``: ``"error"`` (default) stops at an empty/NaN score; ``"drop"`` drops the rows
  with any empty score. A missing or NaN cost is always an error.
- How many rows each option dropped is in ``QuerySet.data_report`` (and the run summary's ``data``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from sim.datasets.common import encode_tasks
from sim.datasets.tokens import estimate_tokens, fill_output_tokens, unwrap_list_literal
from sim.datasets.validate import (
    check_numeric,
    check_score,
    read_table,
    require_columns,
    require_file,
    require_present,
    row_where,
)
from sim.errors import DataError
from sim.workload.queryset import QuerySet

BASE_COLUMNS = ("sample_id", "prompt", "eval_name")
COST_SUFFIX = "|total_cost"
RESPONSE_SUFFIX = "|model_response"
PICKLE_SUFFIXES = (".pkl", ".pickle")
TABLE_SUFFIXES = (".csv", ".parquet", ".pq")
ON_DUPLICATE = ("error", "first")
ON_MISSING_SCORE = ("error", "drop")

PathArg = str | Path | Sequence[str | Path]


def load_routerbench(
    path: PathArg,
    *,
    trusted: bool = False,
    on_duplicate: str = "error",
    on_missing_score: str = "error",
) -> QuerySet:
    """Load RouterBench file(s) (see the module docstring)."""
    _check_option("on_duplicate", on_duplicate, ON_DUPLICATE)
    _check_option("on_missing_score", on_missing_score, ON_MISSING_SCORE)
    files = routerbench_files(path, trusted)
    models: list[str] | None = None
    parts: list[pd.DataFrame] = []
    dropped_missing = 0
    for file in files:
        df = _read(file, trusted)
        file_models = _check_file(df, file, models)
        models = models or file_models
        df, k = _missing_scores(df, models, file, on_missing_score)
        dropped_missing += k
        df = df.assign(__file=str(file), __row=df.index.to_numpy(), __split=split_of(file))
        parts.append(df)
    assert models is not None
    df = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0].reset_index(drop=True)
    df, dropped_dup = _duplicates(df, on_duplicate)
    if len(df) == 0:
        raise DataError("no rows left after dropping rows with missing scores", file=files[0])
    return _query_set(df, models, {"rows_dropped_duplicate": dropped_dup,
                                   "rows_dropped_missing_score": dropped_missing})


def _check_option(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r}: expected one of {', '.join(allowed)}")


def split_of(file: Path) -> str:
    """The part a file holds, from its name: "test", "train", or "" (rule in the module docstring).

    Words, not substrings, so ``latest.csv`` or ``contest.csv`` hold no test split."""
    words = set(re.findall(r"[a-z]+", file.name.lower().split(".", 1)[0]))
    if words & {"test", "testing"}:
        return "test"
    return "train" if words & {"train", "training"} else ""


def routerbench_files(path: PathArg, trusted: bool = False) -> list[Path]:
    """The files behind ``path``: itself, each listed file, or a folder's data files in name order."""
    if isinstance(path, str | Path):
        root = Path(path)
        if not root.is_dir():
            return [root]
        suffixes = TABLE_SUFFIXES + (PICKLE_SUFFIXES if trusted else ())
        found = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in suffixes)
        if not found:
            raise DataError(f"the folder has no data file (expected {', '.join(suffixes)} files)", file=root)
        return found
    files = [Path(p) for p in path]
    if not files:
        raise DataError("an empty list of files", where="path")
    return files


def _check_file(df: pd.DataFrame, file: Path, models: list[str] | None) -> list[str]:
    """Base columns present and filled; the file's models (which must match the first file's)."""
    require_columns(df, BASE_COLUMNS, file)
    for col in BASE_COLUMNS:
        require_present(df[col], col, file)
    mine = _model_columns(df, file)
    if models is not None and mine != models:
        extra = sorted(set(mine) - set(models)) or sorted(set(models) - set(mine)) or ["(order differs)"]
        raise DataError(
            f"the models differ from the first file's ({', '.join(models)}): {extra[0]}; every file of a "
            "dataset needs the same model columns in the same order",
            file=file,
            where="columns",
        )
    return mine


def _missing_scores(df: pd.DataFrame, models: list[str], file: Path, policy: str) -> tuple[pd.DataFrame, int]:
    """``"drop"``: the rows with any empty score removed (and how many); ``"error"``: unchanged."""
    if policy != "drop":
        return df, 0
    missing = df[models].isna().any(axis=1).to_numpy()
    return df[~missing], int(missing.sum())


def _duplicates(df: pd.DataFrame, policy: str) -> tuple[pd.DataFrame, int]:
    """Rows with a repeated ``sample_id``: an error naming both places, or all but the first dropped."""
    ids = df["sample_id"].astype(str)
    dup = ids.duplicated().to_numpy()
    if not dup.any():
        return df, 0
    if policy == "first":
        return df[~dup].reset_index(drop=True), int(dup.sum())
    pos = int(np.argmax(dup))
    first = int(np.argmax((ids == ids.iloc[pos]).to_numpy()))
    here, there = df.iloc[pos], df.iloc[first]
    other = f"row {int(there['__row']) + 1}" + ("" if there["__file"] == here["__file"] else f" of {there['__file']}")
    raise DataError(
        f"duplicate sample_id {ids.iloc[pos]!r} (first at {other}; {int(dup.sum())} repeated row(s) in all): "
        "expected one row per prompt, or load with on_duplicate: first to keep each id's first row",
        file=here["__file"],
        where=row_where(int(here["__row"]), "sample_id"),
    )


def _query_set(df: pd.DataFrame, models: list[str], report: dict[str, int]) -> QuerySet:
    """The QuerySet of the checked, concatenated rows (values checked file by file for their rows)."""
    quality = np.column_stack([_per_file(df, lambda part, f, m=m: check_score(part[m], m, f)) for m in models])
    cost = np.column_stack(
        [
            _per_file(
                df,
                lambda part, f, c=m + COST_SUFFIX: check_numeric(part[c], c, f, lo=0.0, what="a cost in USD >= 0"),
            )
            for m in models
        ]
    )
    task_names, task = encode_tasks(list(df["eval_name"]))
    prompts = tuple(unwrap_list_literal(str(p)) for p in df["prompt"])
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
        split=df["__split"].to_numpy(dtype=object),
        data_report=report,
    )


def _per_file(df: pd.DataFrame, check: Callable[..., np.ndarray]) -> np.ndarray:
    """Run a column check on each file's rows, indexed by their row in that file (for the error)."""
    out = []
    for name, part in df.groupby("__file", sort=False):
        out.append((part.index.to_numpy(), check(part.set_index("__row"), Path(str(name)))))
    values = np.empty(len(df))
    for idx, vals in out:
        values[idx] = vals
    return values


def _read(path: Path, trusted: bool) -> pd.DataFrame:
    if path.suffix.lower() not in PICKLE_SUFFIXES:
        if path.suffix.lower() not in TABLE_SUFFIXES:
            raise DataError(
                f"unsupported file type {path.suffix!r}: expected .csv or .parquet (or a trusted .pkl)",
                file=path,
            )
        return read_table(path)
    if not trusted:
        raise DataError(
            "refusing to read a pickle: unpickling runs code embedded in the file; convert it to CSV, "
            "or mark the file trusted in the scenario (trusted: true) if you trust its source",
            file=path,
        )
    require_file(path, "a RouterBench .pkl file")
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
    """Estimated tokens per (unwrapped) response; NaN (to be filled) where it is missing or empty."""
    texts = [
        "" if r is None or (isinstance(r, float) and np.isnan(r)) else unwrap_list_literal(str(r))
        for r in responses
    ]
    tokens = estimate_tokens(texts).astype(np.float64)
    tokens[np.asarray([t == "" for t in texts])] = np.nan
    return tokens
