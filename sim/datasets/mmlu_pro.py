"""MMLU-Pro per-model outcomes (TIGER-AI-Lab/MMLU-Pro), as reduced in ``shared/data/routing/mmlu_pro``.

A directory with ``queries.parquet`` (``question_id, category, prompt`` …; 12,032 questions, 14
categories) and ``outcomes.parquet`` (``question_id, model, correct, output_chars``; 29 models).

- task = ``category``; quality = ``correct`` (0/1).
- prompt tokens are estimated from the prompt text (:func:`~sim.datasets.tokens.estimate_tokens`).
- output tokens are ``output_chars`` converted with the same 4-characters-per-token rule; where
  ``output_chars`` is null (the API models publish no output text: gemini-1.5-*, jamba-1.5-large,
  DeepSeek-Coder-V2) it is filled by :func:`~sim.datasets.tokens.fill_output_tokens`: the model's own
  median in that category when it has any, else the median of all models in that category.
- Not every model answered every question (DeepSeek-Coder-V2 lacks 1,681, the gemini models a few), so
  by default a query missing any *selected* model is dropped (``missing="drop_query"``); with all 29
  models 10,326 queries remain. Choose ``models=[...]`` to keep more.
- ``max_queries``: a task-stratified subsample drawn with ``rng`` (or ``sim.rng.stream(seed,
  "datasets.subsample")``), in source order.

Models are ordered as given in ``models``, else alphabetically.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from sim.datasets.common import apply_missing_policy, encode_tasks, pivot
from sim.datasets.split import stratified_sample
from sim.datasets.tokens import estimate_tokens, fill_output_tokens, tokens_from_chars
from sim.datasets.validate import (
    check_numeric,
    check_score,
    read_table,
    require_columns,
    require_present,
    row_where,
)
from sim.errors import DataError
from sim.rng import stream
from sim.workload.queryset import QuerySet

QUERY_COLUMNS = ("question_id", "category", "prompt")
OUTCOME_COLUMNS = ("question_id", "model", "correct")


def load_mmlu_pro(
    path: str | Path,
    *,
    models: Sequence[str] | None = None,
    max_queries: int | None = None,
    seed: int = 0,
    rng: np.random.Generator | None = None,
    missing: str = "drop_query",
) -> QuerySet:
    """Load the MMLU-Pro directory ``path`` (see the module docstring)."""
    root = Path(path)
    if not root.is_dir():
        raise DataError("expected a directory holding queries.parquet and outcomes.parquet", file=root)
    qfile, ofile = root / "queries.parquet", root / "outcomes.parquet"
    queries = read_table(qfile)
    require_columns(queries, QUERY_COLUMNS, qfile)
    for col in QUERY_COLUMNS:
        require_present(queries[col], col, qfile)
    dup = queries["question_id"].duplicated().to_numpy()
    if dup.any():
        pos = int(np.argmax(dup))
        raise DataError(
            "duplicate question_id: expected one row per question",
            file=qfile,
            where=row_where(pos, "question_id"),
        )
    outcomes = read_table(ofile)
    require_columns(outcomes, OUTCOME_COLUMNS, ofile, ("output_chars",))
    for col in ("question_id", "model"):
        require_present(outcomes[col], col, ofile)

    known = sorted(outcomes["model"].astype(str).unique())
    model_names = tuple(models) if models is not None else tuple(known)
    unknown = [name for name in model_names if name not in set(known)]
    if unknown:
        raise DataError(
            f"unknown model {unknown[0]!r}; the file has: {', '.join(known)}",
            file=ofile,
            where="column model",
        )
    outcomes = outcomes[outcomes["model"].astype(str).isin(model_names)]
    scores = check_score(outcomes["correct"], "correct", ofile)
    chars = (
        check_numeric(
            outcomes["output_chars"],
            "output_chars",
            ofile,
            lo=0.0,
            allow_null=True,
            what="a character count >= 0 (or null)",
        )
        if "output_chars" in outcomes.columns
        else np.full(len(outcomes), np.nan)
    )

    q_index = pd.Index(queries["question_id"])
    q_codes = q_index.get_indexer(pd.Index(outcomes["question_id"]))
    if (q_codes < 0).any():
        pos = int(np.argmax(q_codes < 0))
        raise DataError(
            f"question_id {outcomes['question_id'].iloc[pos]!r} is not in queries.parquet",
            file=ofile,
            where=row_where(int(outcomes.index[pos]), "question_id"),
        )
    m_codes = pd.Index(model_names).get_indexer(pd.Index(outcomes["model"].astype(str)))
    dup_pair = pd.DataFrame({"q": q_codes, "m": m_codes}).duplicated().to_numpy()
    if dup_pair.any():
        pos = int(np.argmax(dup_pair))
        raise DataError(
            "duplicate (question_id, model) row",
            file=ofile,
            where=row_where(int(outcomes.index[pos]), "model"),
        )
    n, m = len(queries), len(model_names)
    quality, present = pivot(q_codes, m_codes, scores, n, m)
    out_tokens, _ = pivot(q_codes, m_codes, tokens_from_chars(chars), n, m)

    keep = apply_missing_policy(present, missing, list(queries["question_id"]), model_names, ofile)
    task_names, task = encode_tasks(list(queries["category"].to_numpy()[keep]))
    # Fill before subsampling, so a query's estimated lengths do not depend on which others were drawn.
    filled = fill_output_tokens(out_tokens[keep], task)
    pick = np.arange(len(keep))
    if max_queries is not None and max_queries < len(keep):
        pick = stratified_sample(task, int(max_queries), rng or stream(seed, "datasets.subsample"))
    keep = keep[pick]
    prompts = tuple(str(p) for p in queries["prompt"].to_numpy()[keep])
    return QuerySet(
        model_names=model_names,
        task_names=task_names,
        task=task[pick],
        prompt_tokens=estimate_tokens(prompts),
        quality=quality[keep],
        output_tokens=filled[pick],
        query_ids=queries["question_id"].to_numpy()[keep],
        prompts=prompts,
    )
