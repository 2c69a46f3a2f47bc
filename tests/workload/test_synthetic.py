"""Synthetic pool: the drawn pool matches its specification within sampling error.

Tolerances are Z = 4 standard errors of each statistic: Bernoulli means sqrt(Σp(1−p))/n, proportions
sqrt(p(1−p)/n), sample means sd/√n, and sample medians of a lognormal sqrt(π/2)·σ/√n in log space
(the asymptotic sd of a sample median is 1 / (2 f(median) √n), which is that for the normal of the logs).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

from sim.rng import stream
from sim.workload.queryset import QuerySet
from sim.workload.synthetic import (
    ModelSpec,
    TaskSpec,
    TokenDist,
    default_models,
    default_tasks,
    synthetic_pool,
)

Z = 4.0
N = 40_000


@pytest.fixture(scope="module")
def pool() -> QuerySet:
    return synthetic_pool(N, default_tasks(), default_models(), stream(99, "pool"))


def _median_tolerance(sigma: float, n: int, median: float) -> float:
    """Allowed |log(sample median) − log(median)|: Z standard errors plus integer rounding."""
    return Z * math.sqrt(math.pi / 2) * sigma / math.sqrt(n) + math.log1p(0.5 / median)


def test_shapes_and_types(pool: QuerySet) -> None:
    assert pool.true_prob is not None and pool.difficulty is not None
    assert pool.n == N and pool.m == 4
    assert pool.task_names == tuple(t.name for t in default_tasks())
    assert pool.model_names == tuple(m.name for m in default_models())
    assert pool.quality.shape == pool.true_prob.shape == pool.output_tokens.shape == (N, 4)
    assert set(np.unique(pool.quality)) <= {0.0, 1.0}
    assert pool.prompt_tokens.dtype == np.int64 and pool.output_tokens.dtype == np.int64
    assert pool.difficulty is not None and np.all((pool.difficulty >= 0) & (pool.difficulty <= 1))
    assert np.array_equal(pool.query_ids, np.arange(N))


def test_default_ladder_spans_045_to_085_and_is_monotone(pool: QuerySet) -> None:
    acc = pool.quality.mean(axis=0)
    assert np.all(np.diff(acc) > 0)
    assert 0.40 <= acc[0] <= 0.50 and 0.80 <= acc[-1] <= 0.90


def test_accuracy_is_monotone_in_strength() -> None:
    strengths = [0.2, 0.35, 0.5, 0.65, 0.8]
    models = [ModelSpec(f"m{k}", s) for k, s in enumerate(strengths)]
    qs = synthetic_pool(N, default_tasks(), models, stream(5, "pool"))
    acc = qs.quality.mean(axis=0)
    se = np.sqrt(acc * (1 - acc) / N)
    assert np.all(np.diff(acc) > Z * (se[1:] + se[:-1]))


def test_true_prob_is_the_logistic_of_strength_minus_difficulty() -> None:
    tasks = [TaskSpec("a", 1, 2, 2, TokenDist(50, 0.5), TokenDist(20, 0.5), logit_offset=0.7)]
    models = [ModelSpec("x", 0.3), ModelSpec("y", 0.6, task_bonus=(("a", 0.1),))]
    qs = synthetic_pool(1_000, tasks, models, stream(1, "pool"), slope=6.0)
    assert qs.difficulty is not None and qs.true_prob is not None
    s = np.array([0.3, 0.7])
    expected = 1 / (1 + np.exp(-(6.0 * (s[None, :] - qs.difficulty[:, None]) + 0.7)))
    assert np.allclose(qs.true_prob, expected, rtol=0, atol=1e-12)


def test_outcomes_are_bernoulli_of_true_prob(pool: QuerySet) -> None:
    assert pool.true_prob is not None
    p, q = pool.true_prob, pool.quality
    for j in range(pool.m):
        assert abs(q[:, j].mean() - p[:, j].mean()) <= Z * math.sqrt(np.sum(p[:, j] * (1 - p[:, j]))) / N
    bins = np.minimum((p.ravel() * 10).astype(int), 9)  # calibration per decile of p
    for b in range(10):
        pb, qb = p.ravel()[bins == b], q.ravel()[bins == b]
        if len(pb) >= 100:
            assert abs(qb.mean() - pb.mean()) <= Z * math.sqrt(np.sum(pb * (1 - pb))) / len(pb)


def test_task_mix_and_difficulty_follow_the_specs(pool: QuerySet) -> None:
    tasks = default_tasks()
    weights = np.array([t.weight for t in tasks]) / sum(t.weight for t in tasks)
    share = np.bincount(pool.task, minlength=len(tasks)) / N
    assert pool.difficulty is not None
    assert np.all(np.abs(share - weights) <= Z * np.sqrt(weights * (1 - weights) / N))
    for k, t in enumerate(tasks):
        d = pool.difficulty[pool.task == k]
        a, b = t.difficulty_a, t.difficulty_b
        sd = math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))
        assert abs(d.mean() - a / (a + b)) <= Z * sd / math.sqrt(len(d))


def test_token_medians_match_the_configured_medians(pool: QuerySet) -> None:
    noise = 0.3  # synthetic_pool's default output_noise_sigma
    for k, t in enumerate(default_tasks()):
        rows = pool.task == k
        nk = int(rows.sum())
        prompt_med = np.median(pool.prompt_tokens[rows])
        tol = _median_tolerance(t.prompt.sigma, nk, t.prompt.median)
        assert abs(math.log(prompt_med / t.prompt.median)) <= tol, t.name
        sigma_out = math.hypot(t.output.sigma, noise)
        for j, m in enumerate(default_models()):
            target = t.output.median * m.verbosity
            out_med = np.median(pool.output_tokens[rows, j])
            assert abs(math.log(out_med / target)) <= _median_tolerance(sigma_out, nk, target), (
                t.name,
                m.name,
            )


def test_lengths_are_clipped_to_their_bounds(pool: QuerySet) -> None:
    for k, t in enumerate(default_tasks()):
        rows = pool.task == k
        assert (
            pool.prompt_tokens[rows].min() >= t.prompt.min and pool.prompt_tokens[rows].max() <= t.prompt.max
        )
        assert (
            pool.output_tokens[rows].min() >= t.output.min and pool.output_tokens[rows].max() <= t.output.max
        )
    assert pool.output_tokens.min() >= 1


def test_verbosity_scales_output_lengths() -> None:
    tasks = [TaskSpec("a", 1, 2, 2, TokenDist(100, 0.2), TokenDist(100, 0.2))]
    models = [ModelSpec("terse", 0.5, 0.5), ModelSpec("wordy", 0.5, 2.0)]
    qs = synthetic_pool(5_000, tasks, models, stream(3, "pool"), output_noise_sigma=0.0)
    ratio = qs.output_tokens[:, 1] / qs.output_tokens[:, 0]
    assert np.allclose(ratio, 4.0, rtol=0.03)  # up to integer rounding of ~50-token outputs


def test_same_seed_same_pool_and_dicts_equal_dataclasses() -> None:
    a = synthetic_pool(500, None, None, stream(11, "pool"))
    b = synthetic_pool(500, default_tasks(), default_models(), stream(11, "pool"))
    task_dicts = [
        {
            "name": t.name,
            "weight": t.weight,
            "difficulty_a": t.difficulty_a,
            "difficulty_b": t.difficulty_b,
            "prompt": vars(t.prompt),
            "output": vars(t.output),
        }
        for t in default_tasks()
    ]
    model_dicts = [
        {"name": m.name, "strength": m.strength, "verbosity": m.verbosity, "task_bonus": dict(m.task_bonus)}
        for m in default_models()
    ]
    c = synthetic_pool(500, task_dicts, model_dicts, stream(11, "pool"))
    other = synthetic_pool(500, None, None, stream(12, "pool"))
    for x in (b, c):
        for field in ("task", "prompt_tokens", "output_tokens", "quality", "true_prob", "difficulty"):
            assert np.array_equal(getattr(a, field), getattr(x, field)), field
    assert not np.array_equal(np.asarray(a.difficulty), np.asarray(other.difficulty))


def test_empty_pool() -> None:
    qs = synthetic_pool(0, None, None, stream(1, "pool"))
    assert qs.n == 0 and qs.quality.shape == (0, 4)


@pytest.mark.parametrize(
    "call",
    [
        lambda: TokenDist(0, 1.0),
        lambda: TokenDist(10, 1.0, min=5, max=4),
        lambda: TaskSpec("a", 1, 0.0, 1, TokenDist(1, 1), TokenDist(1, 1)),
        lambda: TaskSpec("a", -1, 1, 1, TokenDist(1, 1), TokenDist(1, 1)),
        lambda: ModelSpec("m", 0.5, verbosity=0.0),
        lambda: synthetic_pool(-1, None, None, stream(1, "p")),
        lambda: synthetic_pool(10, None, [ModelSpec("m", 0.5), ModelSpec("m", 0.6)], stream(1, "p")),
        lambda: synthetic_pool(10, None, [ModelSpec("m", 0.5, task_bonus=(("nope", 0.1),))], stream(1, "p")),
        lambda: synthetic_pool(10, [], None, stream(1, "p")),
        lambda: synthetic_pool(10, None, None, stream(1, "p"), slope=0.0),
    ],
)
def test_invalid_specs_raise_value_error(call: Callable[[], object]) -> None:
    with pytest.raises(ValueError):
        call()
