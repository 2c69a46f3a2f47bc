"""Predictors on the shared real datasets: retrieval must beat per-task means on held-out queries."""

from __future__ import annotations

import numpy as np
import pytest

from sim.datasets import load_dcrouter_splits, load_mmlu_pro, train_test_split
from sim.predictors import make_predictor, predictor_scores
from sim.rng import stream

from ..datasets.fixtures import DCROUTER, MMLU_PRO, needs

# Ten models spanning the accuracy range (0.18 … 0.70), so per-model differences matter.
MODELS = [
    "Llama-2-7b-hf",
    "Llama-2-70b-hf",
    "Meta-Llama-3-8B",
    "Meta-Llama-3_1-70B-Instruct",
    "Mistral-7B-v0.1",
    "Mixtral-8x7B-Instruct-v0.1",
    "Qwen1.5-72B-Chat",
    "Yi-34B",
    "gemma-7b",
    "gemini-1.5-pro-002",
]


@pytest.fixture(scope="module")
def mmlu_4k():
    if not MMLU_PRO.exists():
        pytest.skip(f"shared data not present: {MMLU_PRO.resolve()}")
    return load_mmlu_pro(MMLU_PRO, models=MODELS, max_queries=4000, seed=0)


def _fit_predict(name, train, test, **params):
    predictor = make_predictor(name, stream(0, "predictor"), **params)
    predictor.fit(train)
    return predictor, predictor.predict(test)


@needs(MMLU_PRO)
@pytest.mark.parametrize(("split_seed", "embedding"), [(0, "tfidf"), (1, "tfidf"), (0, "hashed")])
def test_knn_beats_task_mean_on_mmlu_pro(mmlu_4k, split_seed, embedding):
    # 4,000 questions × 10 models, 3,000 / 1,000 task-stratified split: 10,000 held-out pairs.
    train, test = train_test_split(mmlu_4k, 0.25, stream(split_seed, "split"))
    _, base = _fit_predict("task_mean", train, test)
    knn, pred = _fit_predict("knn", train, test, embedding=embedding)
    s_base, s_knn = predictor_scores(base, test), predictor_scores(pred, test)
    # measured: task_mean 0.2088 / 0.2094; knn tfidf 0.2069 / 0.2064; knn hashed 0.2052 (seed 0)
    assert s_knn["brier"] < s_base["brier"] - 0.001
    assert s_knn["auc"] > s_base["auc"]
    assert knn.fitted_prior_weight >= 8  # text says little beyond topic here: strong shrinkage chosen


@needs(DCROUTER)
def test_knn_beats_task_mean_on_dcrouter_published_split():
    train, test = load_dcrouter_splits(DCROUTER)
    _, base = _fit_predict("task_mean", train, test)
    _, pred = _fit_predict("knn", train, test)
    # measured: task_mean 0.184, knn 0.155
    assert predictor_scores(pred, test)["brier"] < predictor_scores(base, test)["brier"] - 0.01


@needs(MMLU_PRO)
def test_same_seed_same_predictions(mmlu_4k):
    qs = mmlu_4k.subset(np.arange(1500))
    runs = []
    for _ in range(2):
        train, test = train_test_split(qs, 0.2, stream(3, "split"))
        for name in ("knn", "noisy_oracle"):
            _, pred = _fit_predict(name, train, test)
            runs.append(pred)
    for a, b in zip(runs[:2], runs[2:], strict=True):
        np.testing.assert_array_equal(a.quality, b.quality)
        np.testing.assert_array_equal(a.quality_std, b.quality_std)
        np.testing.assert_array_equal(a.output_tokens, b.output_tokens)
