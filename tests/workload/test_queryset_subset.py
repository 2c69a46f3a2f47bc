"""QuerySet.subset takes integer index arrays with np.take (issue 14); it must give exactly what plain
numpy indexing gives, for every field, whatever the index (order, repeats, negatives, empty, masks, slices)."""

from __future__ import annotations

from dataclasses import fields

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.rng import stream
from sim.workload.queryset import QuerySet
from sim.workload.synthetic import synthetic_pool

N = 40


def _pool() -> QuerySet:
    qs = synthetic_pool(N, None, None, stream(5, "pool"))
    # every optional field present, object and text ids included
    return QuerySet(
        model_names=qs.model_names, task_names=qs.task_names, task=qs.task, prompt_tokens=qs.prompt_tokens,
        quality=qs.quality, output_tokens=qs.output_tokens,
        query_ids=np.array([f"q{i}" for i in range(N)], dtype=object),
        prompts=tuple(f"prompt {i}" for i in range(N)), true_prob=qs.true_prob,
        cost_usd=qs.quality * 0.01, difficulty=qs.difficulty,
        split=np.array(["train", "test"] * (N // 2)), data_report={"rows_dropped_duplicate": 1},
    )


POOL = _pool()


def _reference(qs: QuerySet, idx: object) -> dict[str, object]:
    out: dict[str, object] = {}
    for f in fields(qs):
        v = getattr(qs, f.name)
        if f.name in ("model_names", "task_names", "data_report") or v is None:
            out[f.name] = v
        elif f.name == "prompts":
            out[f.name] = tuple(np.asarray(v, dtype=object)[idx].tolist())
        else:
            out[f.name] = np.asarray(v)[idx]
    return out


def _check(idx: object) -> None:
    got = POOL.subset(idx)  # type: ignore[arg-type]
    for name, want in _reference(POOL, idx).items():
        have = getattr(got, name)
        if isinstance(want, np.ndarray):
            assert isinstance(have, np.ndarray) and have.dtype == want.dtype and have.shape == want.shape, name
            assert np.array_equal(have, want, equal_nan=want.dtype.kind == "f"), name
        else:
            assert have == want, name


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(-N, N - 1), max_size=3 * N), st.sampled_from([np.int64, np.int32, np.uint16]))
def test_integer_indices_as_numpy_indexing(rows: list[int], dtype: type) -> None:
    if dtype is np.uint16:
        rows = [r % N for r in rows]
    _check(np.array(rows, dtype=dtype))


@pytest.mark.parametrize("idx", [slice(3, 30, 2), slice(None), np.arange(N) % 3 == 0, np.zeros(N, dtype=bool),
                                 np.arange(N)[::-1].copy()])
def test_slices_masks_and_reversal(idx: object) -> None:
    _check(idx)


def test_out_of_range_is_refused_as_before() -> None:
    with pytest.raises(IndexError):
        POOL.subset(np.array([0, N]))
