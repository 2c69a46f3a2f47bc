"""MMLU-Pro loader on a fixture and on the shared files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sim.datasets import load_dataset, load_mmlu_pro
from sim.errors import DataError
from sim.rng import stream

from .fixtures import MMLU_PRO, needs, write_mmlu_pro


def test_fixture_loads(tmp_path):
    qs = load_mmlu_pro(write_mmlu_pro(tmp_path / "mp"))
    assert qs.model_names == ("api", "m1", "m2") and qs.n == 6
    assert qs.task_names == ("law", "math") and list(qs.task) == [1, 0, 1, 0, 1, 0]
    assert qs.quality[0].tolist() == [1.0, 0.0, 1.0]  # question 10: (10 + j) even
    assert qs.output_tokens[0, 1] == 23  # ceil((40 * 2 + 10) / 4)
    assert qs.prompt_tokens[0] == int(np.ceil(len("question 0 ") / 4))
    # the API model has no output text: it gets the median of all models in the query's category
    math_rows = qs.task == 1
    expected = np.median(qs.output_tokens[math_rows][:, 1:])
    assert np.all(qs.output_tokens[math_rows, 0] == round(expected))


def test_missing_pairs_drop_query_by_default_or_error(tmp_path):
    root = write_mmlu_pro(tmp_path / "mp", drop_pair=True)
    assert 12 not in load_mmlu_pro(root).query_ids
    assert 12 in load_mmlu_pro(root, models=["api", "m2"]).query_ids
    with pytest.raises(DataError, match=r"query 12, model m1"):
        load_mmlu_pro(root, missing="error")


def test_model_subset_and_unknown_model(tmp_path):
    root = write_mmlu_pro(tmp_path / "mp")
    assert load_mmlu_pro(root, models=["m2", "api"]).model_names == ("m2", "api")
    with pytest.raises(DataError, match=r"outcomes.parquet.*unknown model 'gpt-9'.*api, m1, m2"):
        load_mmlu_pro(root, models=["gpt-9"])


def test_subsample_is_stratified_and_seeded(tmp_path):
    root = write_mmlu_pro(tmp_path / "mp")
    a = load_mmlu_pro(root, max_queries=4, seed=1)
    b = load_mmlu_pro(root, max_queries=4, rng=stream(1, "datasets.subsample"))
    assert a.n == 4 and np.bincount(a.task).tolist() == [2, 2]
    np.testing.assert_array_equal(a.query_ids, b.query_ids)


def test_bad_correct_column(tmp_path):
    root = write_mmlu_pro(tmp_path / "mp")
    outcomes = pd.read_parquet(root / "outcomes.parquet")
    outcomes["correct"] = outcomes["correct"].astype(float)
    outcomes.loc[7, "correct"] = 2.0
    outcomes.to_parquet(root / "outcomes.parquet")
    with pytest.raises(DataError) as err:
        load_mmlu_pro(root)
    msg = str(err.value)
    assert "outcomes.parquet" in msg and "row 8, column correct" in msg and "[0, 1]" in msg


def test_missing_column_and_missing_directory(tmp_path):
    root = write_mmlu_pro(tmp_path / "mp")
    pd.read_parquet(root / "queries.parquet").drop(columns=["category"]).to_parquet(root / "queries.parquet")
    with pytest.raises(DataError, match=r"queries.parquet: column category: missing column 'category'"):
        load_mmlu_pro(root)
    with pytest.raises(DataError, match="expected a directory"):
        load_mmlu_pro(tmp_path / "absent")


@needs(MMLU_PRO)
def test_real_files():
    qs = load_dataset("mmlu_pro", MMLU_PRO)
    assert qs.m == 29 and len(qs.task_names) == 14
    assert qs.n == 10326  # queries answered by all 29 models (DeepSeek-Coder-V2 lacks 1,681)
    assert qs.prompts is not None and np.all(qs.output_tokens >= 1)
    acc = dict(zip(qs.model_names, qs.quality.mean(axis=0), strict=True))
    assert acc["Llama-2-7b-hf"] < 0.25 < 0.65 < acc["gemini-1.5-pro-002"]
    few = load_mmlu_pro(MMLU_PRO, models=["Llama-2-7b-hf", "gemini-1.5-pro-002"])
    assert few.n > 12000  # without DeepSeek-Coder-V2 few questions are dropped
