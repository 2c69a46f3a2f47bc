"""Predictor interface, registry, and each predictor on small synthetic QuerySets."""

from __future__ import annotations

import numpy as np
import pytest

from sim.predictors import KNN, Prediction, Predictor, TaskMean, make_predictor, predictor_scores
from sim.rng import stream
from sim.workload.queryset import QuerySet

TOPICS = {
    "fruit": "apples bananas oranges pears grapes melons cherries plums",
    "space": "rockets orbits planets comets galaxies nebulae satellites moons",
}


def topic_queryset(n: int = 200, seed: int = 0, prompts: bool = True) -> QuerySet:
    """One task; model 'fruity' is right on fruit prompts, 'spacey' on space prompts (with 10 % flips)."""
    rng = np.random.default_rng(seed)
    topic = rng.integers(0, 2, n)
    words = {k: v.split() for k, v in TOPICS.items()}
    texts = []
    for t in topic:
        vocab = words["fruit" if t == 0 else "space"]
        texts.append(" ".join(rng.choice(vocab, size=6)) + f" filler{rng.integers(1000)}")
    truth = np.column_stack([topic == 0, topic == 1]).astype(float)
    flip = rng.random(truth.shape) < 0.1
    quality = np.where(flip, 1.0 - truth, truth)
    return QuerySet(
        model_names=("fruity", "spacey"),
        task_names=("mixed",),
        task=np.zeros(n, dtype=np.int64),
        prompt_tokens=np.full(n, 10, dtype=np.int64),
        quality=quality,
        output_tokens=np.where(topic[:, None] == 0, [[50, 80]], [[70, 90]]).astype(np.int64),
        query_ids=np.arange(n),
        prompts=tuple(texts) if prompts else None,
        true_prob=np.clip(truth, 0.1, 0.9),
    )


def test_prediction_validates():
    ok = np.full((2, 3), 0.5)
    Prediction(ok, ok, ok + 1)
    with pytest.raises(ValueError, match="same"):
        Prediction(ok, ok[:, :2], ok)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        Prediction(ok + 1, ok, ok)
    with pytest.raises(ValueError, match=">= 0"):
        Prediction(ok, -ok, ok)
    with pytest.raises(ValueError, match="> 0"):
        Prediction(ok, ok, ok * 0)


def test_registry():
    for name in ("noisy_oracle", "task_mean", "knn"):
        assert isinstance(make_predictor(name, stream(0, "predictor")), Predictor)
    with pytest.raises(ValueError, match="knn, noisy_oracle, task_mean"):
        make_predictor("gpt_judge", stream(0, "predictor"))
    assert make_predictor("knn", stream(0, "p"), k=4, embedding="hashed").k == 4


def test_noisy_oracle():
    qs = topic_queryset()
    exact = make_predictor("noisy_oracle", stream(0, "p"), noise=0.0).predict(qs)
    np.testing.assert_array_equal(exact.quality, qs.true_prob)  # true_prob preferred over quality
    np.testing.assert_array_equal(exact.output_tokens, qs.output_tokens)
    a = make_predictor("noisy_oracle", stream(1, "p"), noise=0.2, token_noise=0.3).predict(qs)
    b = make_predictor("noisy_oracle", stream(1, "p"), noise=0.2, token_noise=0.3).predict(qs)
    c = make_predictor("noisy_oracle", stream(2, "p"), noise=0.2, token_noise=0.3).predict(qs)
    np.testing.assert_array_equal(a.quality, b.quality)
    np.testing.assert_array_equal(a.output_tokens, b.output_tokens)
    assert not np.array_equal(a.quality, c.quality)
    assert np.all(a.quality_std == 0.2) and 0 <= a.quality.min() and a.quality.max() <= 1
    assert np.all(a.output_tokens >= 1) and not np.array_equal(a.output_tokens, qs.output_tokens)


def test_task_mean_values_and_fallback():
    train = topic_queryset(n=100)
    p = TaskMean()
    p.fit(train)
    test = topic_queryset(n=10, seed=1)
    pred = p.predict(test)
    mean = train.quality.mean(axis=0)
    np.testing.assert_allclose(pred.quality, np.broadcast_to(mean, (10, 2)))
    np.testing.assert_allclose(pred.quality_std[0], np.sqrt(mean * (1 - mean) / 100))
    np.testing.assert_allclose(pred.output_tokens[0], train.output_tokens.mean(axis=0))
    # a task unknown to training falls back to the overall mean, matched by name not index
    from dataclasses import replace

    renamed = replace(test, task_names=("never-seen",))
    np.testing.assert_allclose(p.predict(renamed).quality, pred.quality)


def test_model_mismatch_and_unfitted():
    qs = topic_queryset(n=20)
    with pytest.raises(RuntimeError, match="before fit"):
        TaskMean().predict(qs)
    p = TaskMean()
    p.fit(qs)
    with pytest.raises(ValueError, match="select_models"):
        p.predict(qs.select_models(["spacey", "fruity"]))


@pytest.mark.parametrize("embedding", ["tfidf", "hashed"])
def test_knn_learns_what_task_mean_cannot(embedding):
    train, test = topic_queryset(n=300, seed=0), topic_queryset(n=100, seed=1)
    knn, base = KNN(k=8, embedding=embedding), TaskMean()
    knn.fit(train)
    base.fit(train)
    pk, pb = knn.predict(test), base.predict(test)
    sk, sb = predictor_scores(pk, test), predictor_scores(pb, test)
    assert sk["brier"] < 0.5 * sb["brier"] and sk["auc"] > 0.85
    assert np.all(pk.quality_std > 0)  # shrinkage keeps unanimous neighbourhoods uncertain
    fruit = np.array(["apples" in p or "pears" in p or "grapes" in p for p in test.prompts or ()])
    assert np.all(pk.output_tokens[fruit, 0] < 60)  # neighbours' lengths, not the global mean


def test_knn_exact_neighbour_and_chunking():
    qs = topic_queryset(n=60)
    one = KNN(k=1, prior_weight=0.0)
    one.fit(qs)
    np.testing.assert_array_equal(one.predict(qs).quality, qs.quality)  # each prompt finds itself
    a, b = KNN(k=5, chunk=7), KNN(k=5, chunk=512)
    a.fit(qs)
    b.fit(qs)
    pa, pb = a.predict(qs), b.predict(qs)
    np.testing.assert_array_equal(pa.quality, pb.quality)
    np.testing.assert_array_equal(pa.quality_std, pb.quality_std)


def test_knn_needs_prompts():
    with pytest.raises(ValueError, match="no prompt texts"):
        KNN().fit(topic_queryset(prompts=False))


def test_knn_non_binary_scores_use_spread():
    qs = topic_queryset(n=80)
    from dataclasses import replace

    graded = replace(qs, quality=np.full_like(qs.quality, 0.5))
    p = KNN(k=4)
    p.fit(graded)
    pred = p.predict(graded)
    np.testing.assert_allclose(pred.quality, 0.5)
    np.testing.assert_allclose(pred.quality_std, 0.0, atol=1e-12)  # identical scores: no spread
