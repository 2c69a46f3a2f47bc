"""RouterBench-derived data as published: folders, train/test files, parquet, duplicate ids, NaN scores,
list-wrapped texts (issue 8). The fixtures imitate the published wide format, written by the tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sim.config.schema import DatasetPool
from sim.datasets import load_dataset, load_routerbench
from sim.datasets.pool import load_pool
from sim.datasets.routerbench import split_of
from sim.datasets.tokens import estimate_tokens, unwrap_list_literal
from sim.errors import DataError, InputWarning, ScenarioError

MODELS = ("gpt-4", "claude-v2", "mistral-7b")


def wide(n: int, start: int = 0, tasks: tuple[str, ...] = ("arc", "winogrande", "mbpp")) -> pd.DataFrame:
    """n prompts × 3 models in RouterBench's wide format, list-wrapped like the published files."""
    rows = []
    for i in range(start, start + n):
        task = tasks[i % len(tasks)]
        row: dict[str, object] = {
            "sample_id": f"{task}.{i}",
            "prompt": repr([f"Question number {i}: pick the right option."]),
            "eval_name": task,
            "oracle_model_to_route_to": MODELS[i % 3],
        }
        for j, model in enumerate(MODELS):
            row[model] = float((i + j) % 2)
            row[model + "|model_response"] = repr(["A"])
            row[model + "|total_cost"] = (j + 1) * 1e-4 * (1 + i % 5)
        rows.append(row)
    return pd.DataFrame(rows)


def pool(path, **kw) -> DatasetPool:  # type: ignore[no-untyped-def]
    return DatasetPool(type="dataset", kind="routerbench", path=str(path), **kw)


# --------------------------------------------------------------------------- list wrappers
def test_unwrap_list_literal():
    assert unwrap_list_literal("['A']") == "A"
    assert unwrap_list_literal("['turn one', 'turn two']") == "turn one\nturn two"
    for kept in ("[1, 2]", "[draft] text", "plain", "['unterminated", "[__import__('os')]"):
        assert unwrap_list_literal(kept) == kept


def test_wrapped_response_is_one_token_and_prompt_unwrapped(tmp_path):
    path = tmp_path / "rb.csv"
    wide(3).to_csv(path, index=False)
    qs = load_routerbench(path)
    assert (qs.output_tokens == 1).all()  # "['A']" used to count 2 tokens
    assert qs.prompts is not None and qs.prompts[0] == "Question number 0: pick the right option."
    np.testing.assert_array_equal(qs.prompt_tokens, estimate_tokens(qs.prompts))


# --------------------------------------------------------------------------- files, folders, parquet
def test_parquet_and_folder_and_list(tmp_path):
    folder = tmp_path / "rb"
    folder.mkdir()
    wide(6).to_parquet(folder / "arc_train.parquet")
    wide(4, start=6).to_csv(folder / "arc_test.csv", index=False)
    (folder / "README.md").write_text("not data")
    qs = load_dataset("routerbench", folder)
    assert qs.n == 10 and qs.model_names == MODELS
    # name order: arc_test.csv before arc_train.parquet
    assert list(qs.split) == ["test"] * 4 + ["train"] * 6
    listed = load_routerbench([folder / "arc_train.parquet", folder / "arc_test.csv"])
    assert list(listed.split) == ["train"] * 6 + ["test"] * 4
    assert qs.data_report == {"rows_dropped_duplicate": 0, "rows_dropped_missing_score": 0}


def test_split_names_are_words():
    from pathlib import Path

    assert split_of(Path("routerbench_test.parquet")) == "test"
    assert split_of(Path("train-00000-of-00001.parquet")) == "train"
    assert split_of(Path("latest.csv")) == "" and split_of(Path("contest.csv")) == ""


def test_empty_folder_and_mismatched_models(tmp_path):
    with pytest.raises(DataError, match="no data file"):
        load_routerbench(tmp_path)
    wide(3).to_csv(tmp_path / "a_train.csv", index=False)
    wide(3, start=3).drop(columns=["mistral-7b", "mistral-7b|total_cost", "mistral-7b|model_response"]).to_csv(
        tmp_path / "b_test.csv", index=False
    )
    with pytest.raises(DataError) as err:
        load_routerbench(tmp_path)
    assert "b_test.csv" in str(err.value) and "mistral-7b" in str(err.value)


# --------------------------------------------------------------------------- duplicates
def test_duplicate_ids_name_both_places(tmp_path):
    df = pd.concat([wide(5), wide(5).iloc[[2]]], ignore_index=True)
    path = tmp_path / "dup.csv"
    df.to_csv(path, index=False)
    with pytest.raises(DataError) as err:
        load_routerbench(path)
    msg = str(err.value)
    assert "dup.csv" in msg and "row 6, column sample_id" in msg and "first at row 3" in msg
    assert "on_duplicate" in msg


def test_duplicate_across_files_first(tmp_path):
    wide(5).to_csv(tmp_path / "x_test.csv", index=False)
    wide(5, start=3).to_csv(tmp_path / "x_train.csv", index=False)  # ids 3, 4 repeat the test file's
    with pytest.raises(DataError) as err:
        load_routerbench(tmp_path)
    assert "x_train.csv" in str(err.value) and "x_test.csv" in str(err.value)
    qs = load_routerbench(tmp_path, on_duplicate="first")
    assert qs.n == 8 and qs.data_report["rows_dropped_duplicate"] == 2  # type: ignore[index]
    assert list(qs.split).count("test") == 5  # the first (test) rows were kept


# --------------------------------------------------------------------------- NaN scores
def test_nan_scores_error_or_drop(tmp_path):
    df = wide(6)
    df.loc[1, "claude-v2"] = np.nan
    df.loc[4, "gpt-4"] = np.nan
    path = tmp_path / "nan.csv"
    df.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"row 2, column claude-v2.*|nan.csv"):
        load_routerbench(path)
    qs = load_routerbench(path, on_missing_score="drop")
    assert qs.n == 4 and qs.data_report["rows_dropped_missing_score"] == 2  # type: ignore[index]
    assert list(qs.query_ids) == ["arc.0", "mbpp.2", "arc.3", "mbpp.5"]


def test_errors_name_the_row_of_the_right_file(tmp_path):
    wide(4).to_csv(tmp_path / "p_test.csv", index=False)
    bad = wide(4, start=4)
    bad.loc[2, "gpt-4|total_cost"] = -1.0
    bad.to_csv(tmp_path / "p_train.csv", index=False)
    with pytest.raises(DataError) as err:
        load_routerbench(tmp_path)
    assert "p_train.csv" in str(err.value) and "row 3, column gpt-4|total_cost" in str(err.value)


def test_bad_option_values():
    with pytest.raises(ValueError, match="on_duplicate"):
        load_routerbench("x.csv", on_duplicate="last")
    with pytest.raises(ValueError, match="on_missing_score"):
        load_routerbench("x.csv", on_missing_score="zero")


# --------------------------------------------------------------------------- the pool: splits and sizes
def test_pool_files_split(tmp_path):
    wide(30).to_csv(tmp_path / "arc_train.csv", index=False)
    wide(20, start=30).to_csv(tmp_path / "arc_test.csv", index=False)
    train, test = load_pool(pool(tmp_path, split="files"), list(MODELS), seed=1, n_arrivals=40)
    assert train.n == 30 and test.n == 20
    assert all(int(q.split(".")[1]) >= 30 for q in test.query_ids)
    assert test.data_report == {"rows_dropped_duplicate": 0, "rows_dropped_missing_score": 0}


def test_pool_files_split_needs_named_files(tmp_path):
    wide(30).to_csv(tmp_path / "arc.csv", index=False)
    with pytest.raises(DataError, match="neither train nor test"):
        load_pool(pool(tmp_path, split="files"), list(MODELS), seed=1, n_arrivals=5)
    (tmp_path / "arc.csv").rename(tmp_path / "arc_train.csv")
    with pytest.raises(DataError, match="no test file"):
        load_pool(pool(tmp_path, split="files"), list(MODELS), seed=1, n_arrivals=5)


def test_pool_seeded_split_refuses_a_one_query_test_part(tmp_path):
    path = tmp_path / "rb.csv"
    wide(100).to_csv(path, index=False)
    with pytest.raises(ScenarioError) as err:
        load_pool(pool(path, test_fraction=1e-6), list(MODELS), seed=1, n_arrivals=50)
    assert "workload.pool.test_fraction" in str(err.value) and "1 of 100" in str(err.value)


def test_pool_warns_on_a_small_test_part(tmp_path):
    path = tmp_path / "rb.csv"
    wide(100).to_csv(path, index=False)
    with pytest.warns(InputWarning, match="test_fraction.*only 10 queries"):
        load_pool(pool(path, test_fraction=0.1), list(MODELS), seed=1, n_arrivals=30)
    with pytest.warns(InputWarning, match="3e\\+03 replays|3000 arrivals"):
        load_pool(pool(path, test_fraction=0.3), list(MODELS), seed=1, n_arrivals=3000 * 30)


def test_pool_no_warning_when_large_enough(tmp_path, recwarn):
    path = tmp_path / "rb.csv"
    wide(100).to_csv(path, index=False)
    load_pool(pool(path, test_fraction=0.3), list(MODELS), seed=1, n_arrivals=300)
    assert not [w for w in recwarn if issubclass(w.category, InputWarning)]


def test_pool_row_options_on_other_kinds(tmp_path):
    p = DatasetPool(type="dataset", kind="mmlu_pro", path=str(tmp_path), on_duplicate="first")
    with pytest.raises(ScenarioError, match="on_duplicate: first is not supported by the mmlu_pro"):
        load_pool(p, ["m"], seed=1, n_arrivals=5)
