"""RouterBench loader: wide CSV, trusted-only pickles, and bad files."""

from __future__ import annotations

import numpy as np
import pytest

from sim.datasets import load_dataset, load_routerbench
from sim.errors import DataError

from .fixtures import routerbench_frame


def test_csv_fixture(tmp_path):
    path = tmp_path / "rb.csv"
    routerbench_frame().to_csv(path, index=False)
    qs = load_dataset("routerbench", path)
    assert qs.model_names == ("gpt-4", "llama")  # oracle_model_to_route_to is not a model
    assert list(qs.query_ids) == ["mmlu.0", "gsm8k.0", "mmlu.1"]
    assert qs.task_names == ("gsm8k", "mmlu") and list(qs.task) == [1, 0, 1]
    np.testing.assert_array_equal(qs.quality, [[1, 0], [1, 1], [0, 1]])
    assert qs.cost_usd is not None and qs.cost_usd[2, 1] == pytest.approx(3e-4)
    assert qs.output_tokens[1].tolist() == [21, 5]  # ceil(81/4), ceil(20/4)
    # the missing gpt-4 response on an mmlu prompt: gpt-4's median on mmlu (1 token)
    assert qs.output_tokens[2, 0] == 1
    assert qs.prompts is not None and qs.prompts[0] == "What is 2+2?"  # list wrapper unwrapped


def test_pickle_needs_trust(tmp_path):
    path = tmp_path / "rb.pkl"
    routerbench_frame().to_pickle(path)
    with pytest.raises(DataError) as err:
        load_routerbench(path)
    msg = str(err.value)
    assert "rb.pkl" in msg and "unpickling runs code" in msg and "trusted" in msg
    qs = load_routerbench(path, trusted=True)
    assert qs.n == 3 and qs.m == 2


def test_unreadable_pickle(tmp_path):
    path = tmp_path / "broken.pkl"
    path.write_bytes(b"\x80\x04 definitely not a pickle")
    with pytest.raises(DataError, match=r"broken.pkl: unreadable pickle"):
        load_routerbench(path, trusted=True)


def test_pickle_of_something_else(tmp_path):
    import pickle

    path = tmp_path / "list.pkl"
    path.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(DataError, match=r"list.pkl: the pickle holds a list"):
        load_routerbench(path, trusted=True)


def _bad_csv(tmp_path, mutate):
    df = mutate(routerbench_frame())
    path = tmp_path / "bad.csv"
    df.to_csv(path, index=False)
    with pytest.raises(DataError) as err:
        load_routerbench(path)
    return str(err.value)


def test_missing_score_column(tmp_path):
    msg = _bad_csv(tmp_path, lambda df: df.drop(columns=["llama"]))
    assert "bad.csv" in msg and "column llama" in msg and "'llama|total_cost'" in msg


def test_missing_base_column(tmp_path):
    msg = _bad_csv(tmp_path, lambda df: df.drop(columns=["eval_name"]))
    assert "bad.csv" in msg and "missing column 'eval_name'" in msg


def test_no_models(tmp_path):
    msg = _bad_csv(tmp_path, lambda df: df.drop(columns=["gpt-4|total_cost", "llama|total_cost"]))
    assert "bad.csv" in msg and "no model columns" in msg


def _set(column, row, value):
    def mutate(df):
        df[column] = df[column].astype(object)
        df.loc[row - 1, column] = value
        return df

    return mutate


def test_non_numeric_score(tmp_path):
    msg = _bad_csv(tmp_path, _set("gpt-4", 2, "right"))
    assert "bad.csv" in msg and "row 2, column gpt-4" in msg and "non-numeric" in msg


def test_score_above_one(tmp_path):
    msg = _bad_csv(tmp_path, _set("llama", 3, 2.0))
    assert "row 3, column llama" in msg and "[0, 1]" in msg


def test_nan_cost(tmp_path):
    msg = _bad_csv(tmp_path, _set("llama|total_cost", 1, None))
    assert "row 1, column llama|total_cost" in msg and "NaN" in msg


def test_unsupported_suffix(tmp_path):
    path = tmp_path / "rb.json"
    path.write_text("[]")
    with pytest.raises(DataError, match="rb.json: unsupported file type"):
        load_routerbench(path)
