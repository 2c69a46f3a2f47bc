"""Small files in each supported format, written into tmp_path by the tests, and the shared-data paths."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
MMLU_PRO = SHARED / "routing" / "mmlu_pro"
DCROUTER = SHARED / "routing" / "dcrouter"


def needs(path: Path):  # type: ignore[no-untyped-def]
    """Mark a test as reading ../shared/data (``shared_data`` marker) and skip it when ``path`` is absent."""

    def wrap(test):  # type: ignore[no-untyped-def]
        skip = pytest.mark.skipif(not path.exists(), reason=f"shared data not present: {path.resolve()}")
        return pytest.mark.shared_data(skip(test))

    return wrap


def long_rows() -> pd.DataFrame:
    """3 queries × 2 models, tasks a/b, with all optional columns."""
    return pd.DataFrame(
        {
            "query_id": ["q1", "q1", "q2", "q2", "q3", "q3"],
            "task": ["a", "a", "b", "b", "a", "a"],
            "model": ["big", "small"] * 3,
            "score": [1.0, 0.0, 0.5, 1.0, 1.0, 1.0],
            "prompt": ["what is two plus two"] * 2 + ["name a color"] * 2 + ["x" * 41] * 2,
            "input_tokens": [5, 6, 3, 3, 11, 11],
            "output_tokens": [10, 20, None, 40, 12, 22],
            "cost_usd": [0.01, 0.001, 0.02, 0.002, 0.03, 0.003],
        }
    )


def write_mmlu_pro(root: Path, *, drop_pair: bool = False) -> Path:
    """queries.parquet + outcomes.parquet: 6 questions in 2 categories × 3 models (one API model)."""
    root.mkdir(parents=True, exist_ok=True)
    queries = pd.DataFrame(
        {
            "question_id": [10, 11, 12, 13, 14, 15],
            "category": ["math", "law", "math", "law", "math", "law"],
            "source": ["s"] * 6,
            "prompt": [f"question {i} " + "y" * (4 * i) for i in range(6)],
            "answer": ["A"] * 6,
        }
    )
    rows = []
    for qid in queries["question_id"]:
        for j, model in enumerate(["api", "m1", "m2"]):
            rows.append(
                {
                    "question_id": qid,
                    "model": model,
                    "pred": "A",
                    "correct": int((qid + j) % 2 == 0),
                    "output_chars": None if model == "api" else 40 * (j + 1) + qid,
                }
            )
    outcomes = pd.DataFrame(rows)
    outcomes["output_chars"] = outcomes["output_chars"].astype("Int64")
    if drop_pair:
        outcomes = outcomes[~((outcomes["question_id"] == 12) & (outcomes["model"] == "m1"))]
    queries.to_parquet(root / "queries.parquet")
    outcomes.to_parquet(root / "outcomes.parquet")
    return root


def write_dcrouter(root: Path) -> Path:
    """train.json (4 items) and test.json (2 items) over 2 models."""
    root.mkdir(parents=True, exist_ok=True)
    train = [
        {"question": "def add(a, b):\n    return a + b", "scores": {"m1": 1.0, "m2": 0.0}},
        {"question": "Q: There are 3 houses in a row, numbered 1 to 3.", "scores": {"m1": 0.0, "m2": 0.5}},
        {"question": "who wrote hamlet", "scores": {"m1": 1.0, "m2": 1.0}},
        {"question": "What is $1 + 1$?", "scores": {"m1": 0.25, "m2": 1.0}},
    ]
    test = [
        {"question": "apple, pear, plum, fig, kiwi, lime, date", "scores": {"m1": 0.0, "m2": 1.0}},
        {"question": "Write a python function to add two numbers.", "scores": {"m2": 1.0, "m1": 0.0}},
    ]
    (root / "train.json").write_text(json.dumps(train))
    (root / "test.json").write_text(json.dumps(test))
    return root


def routerbench_frame() -> pd.DataFrame:
    """RouterBench wide format: 3 prompts × 2 models plus the ignored oracle column."""
    return pd.DataFrame(
        {
            "sample_id": ["mmlu.0", "gsm8k.0", "mmlu.1"],
            "prompt": ["['What is 2+2?']", "['Tom has 3 apples...']", "['Capital of France?']"],
            "eval_name": ["mmlu", "gsm8k", "mmlu"],
            "oracle_model_to_route_to": ["gpt-4", "llama", "llama"],
            "gpt-4": [1.0, 1.0, 0.0],
            "gpt-4|model_response": ["4", "x" * 81, None],
            "gpt-4|total_cost": [3e-3, 4e-3, 5e-3],
            "llama": [0.0, 1.0, 1.0],
            "llama|model_response": ["five", "y" * 20, "Paris"],
            "llama|total_cost": [1e-4, 2e-4, 3e-4],
        }
    )
