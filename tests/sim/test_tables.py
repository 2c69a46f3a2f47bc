"""Result tables kept as columns and written by pyarrow without pandas (sim.tables, issue 14).

The reference is what the run folder held before: ``pandas.DataFrame(columns).to_parquet(index=False)``.
Both files are read back (by pyarrow: types, nulls, values; by pandas: the frame a report gets) and
must agree. (That a run imports no pandas is checked with the other start-up rules, tests/test_startup.py.)
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sim.config import load_scenario
from sim.results import TABLES
from sim.runner import simulate
from sim.tables import frame, write_parquet

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "scenarios" / "quickstart.yaml"

NUMERIC = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint32, np.float32, np.float64, np.bool_]
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=6)


def _same_files(cols: dict[str, np.ndarray], tmp: Path) -> None:
    old, new = tmp / "old.parquet", tmp / "new.parquet"
    pd.DataFrame(cols).to_parquet(old, index=False)
    write_parquet(cols, new)
    a, b = pq.read_table(old), pq.read_table(new)
    assert a.schema.remove_metadata().equals(b.schema.remove_metadata()), (a.schema, b.schema)
    assert a.equals(b)
    assert [c.null_count for c in a.columns] == [c.null_count for c in b.columns]
    pd.testing.assert_frame_equal(pd.read_parquet(old), pd.read_parquet(new))


@st.composite
def tables(draw: st.DrawFn) -> dict[str, np.ndarray]:
    n = draw(st.integers(0, 12))
    cols: dict[str, np.ndarray] = {}
    for k in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(["numeric", "object", "unicode"]))
        if kind == "numeric":
            dtype = np.dtype(draw(st.sampled_from(NUMERIC)))
            cols[f"c{k}"] = draw(hnp.arrays(dtype, n, elements=hnp.from_dtype(dtype, allow_infinity=True)))
        else:
            words = draw(st.lists(TEXT, min_size=n, max_size=n))
            cols[f"c{k}"] = np.array(words, dtype=object) if kind == "object" else np.array(words, dtype=str)
    return cols


@settings(max_examples=150, deadline=None)
@given(cols=tables())
def test_written_as_pandas_wrote_it(cols: dict[str, np.ndarray], tmp_path_factory: pytest.TempPathFactory) -> None:
    _same_files(cols, tmp_path_factory.mktemp("t"))


@settings(max_examples=60, deadline=None)
@given(cols=tables())
def test_row_groups_hold_the_same_table(cols: dict[str, np.ndarray], tmp_path_factory: pytest.TempPathFactory) -> None:
    """Written in row groups of ROW_GROUP_ROWS rows (4 here; 131,072 in a run): the same table read back."""
    from sim import tables as tables_mod

    tmp = tmp_path_factory.mktemp("g")
    old = tables_mod.ROW_GROUP_ROWS
    tables_mod.ROW_GROUP_ROWS = 4
    try:
        _same_files(cols, tmp)
    finally:
        tables_mod.ROW_GROUP_ROWS = old
    rows = len(next(iter(cols.values())))
    assert pq.ParquetFile(tmp / "new.parquet").metadata.num_row_groups == max(1, -(-rows // 4))


def test_views_nan_and_empty_text(tmp_path: Path) -> None:
    base = {"f": np.array([1.0, np.nan, -0.0, np.inf]), "h": np.array([np.nan] * 4, dtype=np.float32),
            "s": np.array(["", "é", "a b", "🙂"], dtype=object), "i": np.arange(4, dtype=np.int64),
            "ascii": np.array(["model-a", "", "x", "model-a"], dtype=object),
            "nul": np.array(["a\x00b", "ab\x00", "\x00", ""], dtype=object),  # NUL inside and at the end
            "end": np.array(["ab\x00", "x", "", "y\x00"], dtype=object)}  # at the end only
    for cut in (slice(None), slice(None, None, 2), slice(3, None), slice(0, 0)):
        _same_files({k: v[cut] for k, v in base.items()}, tmp_path)
        _same_files({k: v[cut].astype(str) for k, v in base.items() if v.dtype == object}, tmp_path)


def test_long_tailed_text_goes_a_value_at_a_time(tmp_path: Path) -> None:
    """One long value among short ones would make numpy's fixed-width array huge: the per-value path."""
    col = np.array(["ok"] * 999 + ["x" * 3000], dtype=object)
    _same_files({"violations": col, "i": np.arange(1000)}, tmp_path)


def test_text_type_follows_the_installed_pandas(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.metadata

    import pyarrow as pa

    from sim import tables

    for version, expected in (("2.3.3", pa.string()), ("3.1.1", pa.large_string()), ("unknown", pa.large_string())):
        tables._pandas_major.cache_clear()
        monkeypatch.setattr(importlib.metadata, "version", lambda _name, v=version: v)
        assert tables._text_type() == expected
        array = tables._arrow(np.array(["a", "bc"], dtype=object))
        assert array.type == expected and array.to_pylist() == ["a", "bc"]
    tables._pandas_major.cache_clear()


@pytest.mark.parametrize("bad", [np.array(["a", None], dtype=object), np.array([1, 2], dtype=object)])
def test_text_columns_hold_text_only(bad: np.ndarray, tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="text column"):
        write_parquet({"x": bad}, tmp_path / "x.parquet")


@pytest.mark.parametrize("sets", [
    {},
    {"router": {"window_s": 2.0}},
    {"outputs": {"latency_estimates": True}},
    {"events": [{"kind": "node_failure", "at_s": 20.0, "deployment": 0, "instances": [0], "recover_at_s": 60.0}]},
])
def test_every_table_of_a_run(sets: dict, tmp_path: Path) -> None:  # type: ignore[type-arg]
    sc = load_scenario(QUICKSTART)
    d = sc.model_dump()
    d["num_queries"] = 400
    for key, value in sets.items():
        d[key] = {**d[key], **value} if isinstance(value, dict) else value
    res = simulate(type(sc).model_validate(d))
    for name in TABLES:
        cols = res.columns(name)
        _same_files(cols, tmp_path)
        pd.testing.assert_frame_equal(res.frame(name), frame(cols))
    assert (res.requests["status"] == "completed").sum() == res.summary["queries"]["completed"]
    size = len(pickle.dumps(res))  # every frame built above: each table still travels once, as columns
    back = pickle.loads(pickle.dumps(res))  # (a Dask worker's result)
    for name in TABLES:
        pd.testing.assert_frame_equal(back.frame(name), res.frame(name))
    fresh = simulate(type(sc).model_validate(d))
    assert len(pickle.dumps(fresh)) == pytest.approx(size, rel=0.05)
    for name in TABLES:  # the recorded arrays behind the columns cannot be written through them
        for col in res.columns(name).values():
            with pytest.raises(ValueError, match="read-only"):
                col[:1] = col[:1]


@settings(max_examples=100, deadline=None)
@given(ids=st.one_of(hnp.arrays(st.sampled_from([np.int64, np.int32, np.uint64, np.uint8]), st.integers(0, 20)),
                     st.lists(TEXT, max_size=8).map(lambda v: np.array(v, dtype=object))))
def test_query_ids_as_text(ids: np.ndarray) -> None:
    """requests.parquet's query_id: integer ids in a column as wide as the longest, the same text."""
    from sim.metrics.recorder import _id_text

    text = _id_text(ids)
    assert text.tolist() == ids.astype(str).tolist()
    if ids.dtype.kind in "iu" and ids.size:
        assert text.dtype.itemsize // 4 == max(len(str(v)) for v in ids.tolist())
