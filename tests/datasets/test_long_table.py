"""Long-table loader: pivot, optional columns, and one clear DataError per kind of bad file."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sim.datasets import load_dataset, load_long_table
from sim.errors import DataError

from .fixtures import long_rows


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_pivots_to_queries_by_models(tmp_path, suffix):
    path = tmp_path / f"table{suffix}"
    df = long_rows()
    df.to_csv(path, index=False) if suffix == ".csv" else df.to_parquet(path)
    qs = load_dataset("long_table", path)
    assert qs.model_names == ("big", "small")
    assert list(qs.query_ids) == ["q1", "q2", "q3"]
    assert qs.task_names == ("a", "b") and list(qs.task) == [0, 1, 0]
    np.testing.assert_array_equal(qs.quality, [[1.0, 0.0], [0.5, 1.0], [1.0, 1.0]])
    assert list(qs.prompt_tokens) == [6, 3, 11]  # largest input_tokens of the query's rows
    assert qs.cost_usd is not None and qs.cost_usd[1, 0] == pytest.approx(0.02)
    # q2/big has no output_tokens: filled with big's median on task b (none) → big's overall median (11)
    assert qs.output_tokens[1, 0] == 11 and qs.output_tokens[0, 1] == 20
    assert qs.prompts is not None and qs.prompts[1] == "name a color"


def test_minimal_columns_use_documented_defaults(tmp_path):
    path = tmp_path / "t.csv"
    long_rows()[["query_id", "task", "model", "score"]].to_csv(path, index=False)
    qs = load_long_table(path, default_prompt_tokens=100, default_output_tokens=7)
    assert qs.prompts is None and qs.cost_usd is None
    assert set(qs.prompt_tokens) == {100} and set(qs.output_tokens.ravel()) == {7}


def test_prompt_tokens_estimated_from_prompt_when_no_counts(tmp_path):
    path = tmp_path / "t.csv"
    long_rows().drop(columns=["input_tokens"]).to_csv(path, index=False)
    qs = load_long_table(path)
    assert list(qs.prompt_tokens) == [5, 3, 11]  # ceil(20/4), ceil(12/4), ceil(41/4)


def test_missing_pair_is_an_error_naming_it_or_dropped(tmp_path):
    path = tmp_path / "t.csv"
    long_rows().drop(index=3).to_csv(path, index=False)
    with pytest.raises(DataError) as err:
        load_long_table(path)
    msg = str(err.value)
    assert "t.csv" in msg and "'q2'" in msg and "'small'" in msg and "drop_query" in msg
    qs = load_long_table(path, missing="drop_query")
    assert list(qs.query_ids) == ["q1", "q3"]


def _bad(tmp_path, column, row, value):
    df = long_rows()
    df[column] = df[column].astype(object)
    df.loc[row - 1, column] = value
    path = tmp_path / "bad.csv"
    df.to_csv(path, index=False)
    with pytest.raises(DataError) as err:
        load_long_table(path)
    return str(err.value)


def test_non_numeric_score(tmp_path):
    msg = _bad(tmp_path, "score", 4, "high")
    assert "bad.csv" in msg and "row 4, column score" in msg and "non-numeric" in msg and "'high'" in msg
    assert "[0, 1]" in msg and "1-based" in msg


def test_score_above_one(tmp_path):
    msg = _bad(tmp_path, "score", 2, 1.5)
    assert "bad.csv" in msg and "row 2, column score" in msg and "1.5" in msg and "[0, 1]" in msg


def test_nan_score(tmp_path):
    msg = _bad(tmp_path, "score", 5, None)
    assert "row 5, column score" in msg and "NaN" in msg


def test_bad_optional_column(tmp_path):
    msg = _bad(tmp_path, "cost_usd", 3, -1.0)
    assert "row 3, column cost_usd" in msg and ">= 0" in msg


def test_missing_column(tmp_path):
    path = tmp_path / "nocol.parquet"
    long_rows().drop(columns=["score"]).to_parquet(path)
    with pytest.raises(DataError) as err:
        load_long_table(path)
    msg = str(err.value)
    assert "nocol.parquet" in msg and "column score" in msg and "missing column 'score'" in msg


def test_duplicate_and_inconsistent_rows(tmp_path):
    path = tmp_path / "dup.csv"
    pd.concat([long_rows(), long_rows().iloc[[2]]]).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"row 7, column model.*duplicate"):
        load_long_table(path)
    df = long_rows()
    df.loc[1, "task"] = "b"
    df.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"row 2, column task"):
        load_long_table(path)


def test_unreadable_and_unsupported_files(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_long_table(tmp_path / "nope.csv")
    (tmp_path / "t.xlsx").write_text("x")
    with pytest.raises(DataError, match="unsupported"):
        load_long_table(tmp_path / "t.xlsx")
    (tmp_path / "t.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match="t.parquet: cannot read"):
        load_long_table(tmp_path / "t.parquet")


def test_unknown_kind_lists_valid_ones():
    with pytest.raises(ValueError, match="dcrouter, long_table, mmlu_pro, routerbench"):
        load_dataset("csv", "x.csv")


def test_query_ids_stay_text_and_empty_tables_are_errors(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Review finding: ids '01' and '1' collided (read as numbers); a header-only file loaded as n = 0."""
    from sim.datasets import load_long_table
    from sim.errors import DataError

    f = tmp_path / "ids.csv"
    f.write_text("query_id,task,model,score\n01,qa,a,1\n1,qa,a,0\n007,qa,a,1\n")
    qs = load_long_table(f)
    assert sorted(map(str, qs.query_ids)) == ["007", "01", "1"]
    empty = tmp_path / "empty.csv"
    empty.write_text("query_id,task,model,score\n")
    with pytest.raises(DataError, match="no rows"):
        load_long_table(empty)
