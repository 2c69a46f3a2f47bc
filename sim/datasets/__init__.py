"""Loaders for real routing datasets; every one returns the canonical :class:`QuerySet`.

``load_dataset(kind, path, **opts)`` dispatches on ``kind``:

- ``long_table``: the canonical long table (CSV/Parquet), :mod:`sim.datasets.long_table`;
- ``mmlu_pro``: the MMLU-Pro queries/outcomes directory, :mod:`sim.datasets.mmlu_pro`;
- ``dcrouter``: LLMRouter's dcrouter JSON, :mod:`sim.datasets.dcrouter`;
- ``routerbench``: RouterBench's wide format (CSV/Parquet, trusted pickle; a file, a list or a folder,
  with train/test files), :mod:`sim.datasets.routerbench`.

A scenario's pool (loader options, model selection, the train/test split and its size checks) is
loaded by :func:`sim.datasets.pool.load_pool`.

Bad files raise one :class:`~sim.errors.DataError` naming the file, the column (or JSON item) and the
first bad row; rows are 1-based data rows, header not counted. Token counts a source lacks are estimated
by :func:`estimate_tokens` (≈ 4 characters per token).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sim.datasets.dcrouter import load_dcrouter, load_dcrouter_splits, split_labels
from sim.datasets.long_table import load_long_table
from sim.datasets.mmlu_pro import load_mmlu_pro
from sim.datasets.routerbench import load_routerbench
from sim.datasets.split import stratified_sample, train_test_split
from sim.datasets.tokens import estimate_tokens
from sim.workload.queryset import QuerySet

LOADERS: dict[str, Callable[..., QuerySet]] = {
    "long_table": load_long_table,
    "mmlu_pro": load_mmlu_pro,
    "dcrouter": load_dcrouter,
    "routerbench": load_routerbench,
}


def load_dataset(kind: str, path: str | Path, **opts: Any) -> QuerySet:
    """Load ``path`` with the loader of ``kind`` (ValueError listing the kinds if unknown)."""
    try:
        loader = LOADERS[kind]
    except KeyError:
        raise ValueError(
            f"unknown dataset kind {kind!r}; valid kinds: {', '.join(sorted(LOADERS))}"
        ) from None
    return loader(path, **opts)


__all__ = [
    "LOADERS",
    "estimate_tokens",
    "load_dataset",
    "load_dcrouter",
    "load_dcrouter_splits",
    "load_long_table",
    "load_mmlu_pro",
    "load_routerbench",
    "split_labels",
    "stratified_sample",
    "train_test_split",
]
