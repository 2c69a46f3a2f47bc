"""dcrouter loader: directory vs file, split marking, task heuristic, bad JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sim.datasets import load_dataset, load_dcrouter, load_dcrouter_splits, split_labels
from sim.datasets.dcrouter import dcrouter_task
from sim.errors import DataError

from .fixtures import DCROUTER, needs, write_dcrouter


def test_directory_loads_both_splits_and_marks_them(tmp_path):
    qs = load_dcrouter(write_dcrouter(tmp_path / "dc"), output_tokens=99)
    assert qs.n == 6 and qs.model_names == ("m1", "m2")
    assert list(qs.query_ids) == ["train/0", "train/1", "train/2", "train/3", "test/0", "test/1"]
    assert list(split_labels(qs)) == ["train"] * 4 + ["test"] * 2
    np.testing.assert_array_equal(qs.quality[5], [0.0, 1.0])  # key order of later items does not matter
    assert set(qs.output_tokens.ravel()) == {99}
    tasks = [qs.task_names[t] for t in qs.task]
    assert tasks == ["code", "logic_puzzle", "qa", "math", "word_list", "code"]
    train, test = load_dcrouter_splits(tmp_path / "dc")
    assert (train.n, test.n) == (4, 2)


def test_single_file_and_single_task(tmp_path):
    write_dcrouter(tmp_path / "dc")
    qs = load_dataset("dcrouter", tmp_path / "dc" / "test.json", task="single")
    assert qs.n == 2 and qs.task_names == ("dcrouter",)
    assert list(split_labels(qs)) == ["test", "test"]


def test_task_heuristic_examples():
    assert dcrouter_task("Q: There are 5 houses in a row, numbered 1 on the left") == "logic_puzzle"
    assert dcrouter_task("\n\ndef f(x):\n    '''doc'''") == "code"
    assert dcrouter_task("Janet has 3 ducks and 16 eggs. How many eggs are left?") == "math"
    assert dcrouter_task("when did the war end") == "qa"
    assert dcrouter_task("A passage. " * 120) == "reading"


def _write(tmp_path, items):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(items))
    return path


@pytest.mark.parametrize(
    ("items", "where", "what"),
    [
        ([{"question": "q", "scores": {"a": 1.2}}], "item 1, scores.a", "[0, 1]"),
        (
            [{"question": "q", "scores": {"a": 1}}, {"question": "r", "scores": {"a": "yes"}}],
            "item 2, scores.a",
            "'yes'",
        ),
        ([{"question": "q", "scores": {"a": None}}], "item 1, scores.a", "None"),
        ([{"question": "q"}], "item 1, scores", "missing key 'scores'"),
        (
            [{"question": "q", "scores": {"a": 1}}, {"question": "r", "scores": {"b": 1}}],
            "item 2, scores",
            "'a'",
        ),
        ({"question": "q"}, "bad.json", "expected a JSON list"),
    ],
)
def test_bad_items(tmp_path, items, where, what):
    with pytest.raises(DataError) as err:
        load_dcrouter(_write(tmp_path, items))
    msg = str(err.value)
    assert "bad.json" in msg and where in msg and what in msg


def test_invalid_json_and_empty_directory(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('[{"question": "q",')
    with pytest.raises(DataError, match=r"broken.json: line 1, column \d+: invalid JSON"):
        load_dcrouter(path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="neither train.json nor test.json"):
        load_dcrouter(tmp_path / "empty")


@needs(DCROUTER)
def test_real_files():
    train, test = load_dcrouter_splits(DCROUTER)
    assert (train.n, test.n) == (5608, 500) and train.m == 9
    assert "llama-3.3-nemotron-super-49b-v1" in train.model_names
    assert set(train.task_names) == {"code", "logic_puzzle", "math", "qa", "reading", "word_list"}
    assert 0.3 < train.quality.mean() < 0.6
