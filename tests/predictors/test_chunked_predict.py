"""The noisy oracle and the predicted cost, computed in row slices, against their whole-array formulas."""

from __future__ import annotations

import numpy as np
import pytest

from sim.predictors import noisy_oracle
from sim.predictors.noisy_oracle import NoisyOracle
from sim.workload.queryset import QuerySet


def queryset(n: int, m: int, seed: int) -> QuerySet:
    rng = np.random.default_rng(seed)
    return QuerySet(model_names=tuple(f"m{j}" for j in range(m)), task_names=("t",),
                    task=np.zeros(n, dtype=np.int64), prompt_tokens=rng.integers(1, 900, n),
                    quality=(rng.random((n, m)) < 0.5).astype(np.float64),
                    output_tokens=rng.integers(0, 500, (n, m)), query_ids=np.arange(n),
                    true_prob=rng.random((n, m)))


def whole(qs: QuerySet, rng: np.random.Generator, noise: float, token_noise: float) -> tuple[np.ndarray, np.ndarray]:
    """The oracle as one (n, m) draw for quality then one for tokens (how it was first written)."""
    assert qs.true_prob is not None
    quality = np.clip(qs.true_prob + rng.normal(0.0, noise, size=qs.true_prob.shape), 0.0, 1.0)
    tokens = qs.output_tokens.astype(np.float64)
    if token_noise > 0:
        tokens = tokens * np.exp(rng.normal(0.0, token_noise, size=tokens.shape))
    return quality, np.maximum(tokens, 1.0)


@pytest.mark.parametrize(("n", "m", "rows"), [(1000, 4, 24), (1000, 3, 5), (7, 5, 1 << 16), (0, 2, 8), (33, 1, 2)])
@pytest.mark.parametrize(("noise", "token_noise"), [(0.1, 0.0), (0.3, 0.4), (0.0, 0.0)])
def test_sliced_draws_are_the_whole_draws(monkeypatch: pytest.MonkeyPatch, n: int, m: int, rows: int,
                                          noise: float, token_noise: float) -> None:
    qs = queryset(n, m, seed=n + m)
    monkeypatch.setattr(noisy_oracle, "PAIRS_AT_ONCE", rows)
    got = NoisyOracle(np.random.default_rng(11), noise=noise, token_noise=token_noise)
    pred = got.predict(qs)
    ref = np.random.default_rng(11)
    quality, tokens = whole(qs, ref, noise, token_noise)
    np.testing.assert_array_equal(pred.quality, quality)
    np.testing.assert_array_equal(pred.output_tokens, tokens)
    assert got.rng.random() == ref.random()  # the generator is left where the whole draws leave it


def test_priced_in_slices_is_price(monkeypatch: pytest.MonkeyPatch) -> None:
    from sim import predict
    from sim.workload.build import price

    rng = np.random.default_rng(2)
    prompt, output = rng.integers(1, 5000, 1001), rng.random((1001, 3)) * 800
    pin, pout = np.array([0.05, 3.0, np.nan]), np.array([0.08, 15.0, 0.3])
    monkeypatch.setattr(predict, "ROWS_AT_ONCE", 64)
    np.testing.assert_array_equal(predict.priced(prompt, output, pin, pout), price(prompt, output, pin, pout))


def test_exact_counts_are_shared_read_only() -> None:
    """No token noise and counts >= 1: the prediction is a read-only view of the counts (no float copy),
    equal to the float formula; a 0 count (raised to 1) or token noise gives floats."""
    qs = queryset(500, 3, seed=1)
    qs.output_tokens[0, 0] = 0
    counts = np.maximum(qs.output_tokens, 1)
    exact = QuerySet(**{**qs.__dict__, "output_tokens": counts})
    pred = NoisyOracle(np.random.default_rng(0), noise=0.1).predict(exact)
    _, tokens = whole(exact, np.random.default_rng(0), 0.1, 0.0)
    np.testing.assert_array_equal(pred.output_tokens, tokens)
    assert np.shares_memory(pred.output_tokens, counts) and not pred.output_tokens.flags.writeable
    assert counts.flags.writeable  # the query set's own array is untouched
    assert NoisyOracle(np.random.default_rng(0)).predict(qs).output_tokens.dtype == np.float64  # has zeros
    noisy = NoisyOracle(np.random.default_rng(0), token_noise=0.2).predict(exact)
    assert noisy.output_tokens.dtype == np.float64
