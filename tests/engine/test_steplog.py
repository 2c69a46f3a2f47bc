"""StepLog against the brute-force expansion of its token-weighted sample (numpy's inverted_cdf)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.engine import steplog
from sim.engine.steplog import StepLog, StepLogs, step_log_of

Entry = tuple[float, float, int, int]


def expand(entries: list[Entry], gaps: list[float]) -> np.ndarray:
    """The sample StepLog describes, built token by token: each step duration n times, each gap once."""
    parts = [np.repeat(a + s * np.arange(k, dtype=np.float64), n) for a, s, k, n in entries]
    return np.concatenate([*parts, np.asarray(gaps, dtype=np.float64)])


def build(entries: list[Entry], gaps: list[float]) -> StepLog:
    log = StepLog()
    for e in entries:
        log.add_steps(*e)
    for g in gaps:
        log.add_gap(g)
    return log


# Durations mix "engine-like" values with float edge cases: zero, subnormals, a base that swamps the
# slope (a + s*j rounds to a for many j: long runs of ties), and values shared across entries (ties).
durations = st.one_of(
    st.floats(min_value=0.0, max_value=1e3, allow_nan=False, allow_infinity=False, allow_subnormal=True),
    st.sampled_from([0.0, 5e-324, 1e-300, 0.02, 0.025, 0.5, 1e9, 2.0**53]),
)
slopes = st.one_of(
    st.just(0.0),
    st.floats(min_value=0.0, max_value=10.0, allow_nan=False, allow_infinity=False, allow_subnormal=True),
    st.sampled_from([5e-324, 1e-17, 1e-6, 0.005, 0.25]),
)
entries_st = st.lists(st.tuples(durations, slopes, st.integers(1, 40), st.integers(0, 5)), max_size=12)
gaps_st = st.lists(durations, max_size=6)
qs_st = st.lists(st.one_of(st.floats(0.0, 1.0), st.sampled_from([0.0, 0.5, 0.95, 0.99, 1.0])),
                 min_size=1, max_size=6)


@settings(max_examples=400, deadline=None)
@given(entries_st, gaps_st, qs_st)
def test_quantiles_equal_numpy_on_the_expanded_sample(entries: list[Entry], gaps: list[float],
                                                      qs: list[float]) -> None:
    log = build(entries, gaps)
    sample = expand(entries, gaps)
    got = log.quantiles(qs)
    if sample.size == 0:
        assert all(math.isnan(v) for v in got) and len(got) == len(qs)
        return
    expected = np.quantile(sample, qs, method="inverted_cdf")
    np.testing.assert_array_equal(np.asarray(got), expected)


@settings(max_examples=200, deadline=None)
@given(entries_st, gaps_st)
def test_aggregates_match_the_expansion(entries: list[Entry], gaps: list[float]) -> None:
    log = build(entries, gaps)
    sample = expand(entries, gaps)
    assert log.tokens == sample.size
    assert log.steps == sum(k for _, _, k, _ in entries)
    step_ends = [a + s * (k - 1) for a, s, k, _ in entries]  # the longest step of each run, n = 0 included
    if step_ends:
        assert log.max_step == max(step_ends)
    else:
        assert math.isnan(log.max_step)
    if sample.size:
        assert log.mean() == pytest.approx(float(sample.mean()), rel=1e-9, abs=1e-300)
    else:
        assert math.isnan(log.mean())


@settings(max_examples=100, deadline=None)
@given(entries_st, gaps_st, entries_st, gaps_st)
def test_merge_is_the_union(e1: list[Entry], g1: list[float], e2: list[Entry], g2: list[float]) -> None:
    qs = [0.0, 0.5, 0.95, 0.99, 1.0]
    union = build(e1 + e2, g1 + g2)
    merged = StepLog.merged([build(e1, g1), build(e2, g2)])
    np.testing.assert_array_equal(merged.quantiles(qs), union.quantiles(qs))
    assert (merged.tokens, merged.steps) == (union.tokens, union.steps)
    left = build(e1, g1)
    left.merge(build(e2, g2))
    np.testing.assert_array_equal(left.quantiles(qs), union.quantiles(qs))


def test_a_run_too_long_to_expand_has_its_order_statistics_in_closed_form() -> None:
    """10^12 tokens: quantile q of durations a + s·j (j < k, n each) is the duration at
    j = ceil(q·k·n)/n − 1 rounded up, computed here by hand, never by expanding."""
    a, s, k, n = 0.02, 1e-9, 10**9, 1000
    log = StepLog()
    log.add_steps(a, s, k, n)
    for q in (0.0, 0.25, 0.5, 0.99, 1.0):
        rank = max(1, math.ceil(q * k * n))  # 1-based order statistic (q·N is an integer here)
        j = (rank - 1) // n
        assert log.quantiles([q]) == [a + s * j]
    assert log.tokens == k * n and log.steps == k and log.max_step == a + s * (k - 1)


def test_steps_without_tokens_count_for_max_step_but_not_the_distribution() -> None:
    log = StepLog()
    log.add_steps(3.0, 0.0, 2, 0)  # e.g. a prefill-only stretch: long steps, nobody waiting on a token
    log.add_steps(0.01, 0.001, 5, 4)
    assert log.steps == 7 and log.max_step == 3.0 and log.tokens == 20
    assert log.quantiles([1.0]) == [0.01 + 0.001 * 4]


def test_gaps_alone_and_negative_zero() -> None:
    log = StepLog()
    for g in (0.3, -0.0, 0.1):
        log.add_gap(g)
    assert log.quantiles([0.0, 0.5, 1.0]) == [0.0, 0.1, 0.3]
    assert log.steps == 0 and math.isnan(log.max_step) and log.tokens == 3


def test_empty_log_gives_nan() -> None:
    log = StepLog()
    log.add_steps(0.5, 0.1, 3, 0)
    out = log.quantiles([0.5, 0.99])
    assert len(out) == 2 and all(math.isnan(v) for v in out)
    assert StepLog().quantiles([]) == []


@pytest.mark.parametrize("args", [(-1.0, 0.0, 1, 1), (0.1, -1e-9, 1, 1), (math.nan, 0.0, 1, 1),
                                  (math.inf, 0.0, 1, 1), (0.1, 0.0, -1, 1), (0.1, 0.0, 1, -1)])
def test_invalid_steps_are_refused(args: Entry) -> None:
    with pytest.raises(ValueError, match="invalid steps"):
        StepLog().add_steps(*args)


@pytest.mark.parametrize("gap", [-0.5, math.nan, math.inf])
def test_invalid_gaps_are_refused(gap: float) -> None:
    with pytest.raises(ValueError, match="invalid gap"):
        StepLog().add_gap(gap)


def test_quantile_outside_unit_interval_is_refused() -> None:
    log = StepLog()
    log.add_gap(1.0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        log.quantiles([1.5])


parts_st = st.lists(st.tuples(entries_st, gaps_st), min_size=1, max_size=5)


@settings(max_examples=200, deadline=None)
@given(parts_st, qs_st)
def test_union_in_place_equals_the_merged_copy(parts: list[tuple[list[Entry], list[float]]],
                                                qs: list[float]) -> None:
    """StepLogs reads several logs in place; every aggregate equals StepLog.merged's, bit for bit (the
    mean too: the summary's JSON is byte-identical), also nested (a model's union of deployments' unions)."""
    logs = [build(e, g) for e, g in parts]
    merged = StepLog.merged(logs)
    nested = StepLogs([StepLogs(logs[:1]), *logs[1:]])
    for union in (StepLogs(logs), nested):
        assert union.parts == tuple(logs)
        assert (union.tokens, union.steps) == (merged.tokens, merged.steps)
        np.testing.assert_array_equal(union.quantiles(qs), merged.quantiles(qs))
        np.testing.assert_array_equal([union.mean(), union.max_step], [merged.mean(), merged.max_step])


def test_union_counts_in_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs are counted CHUNK at a time; tiny chunks (many slices, ragged last one) give the same answer."""
    rng = np.random.default_rng(3)
    logs = []
    for _ in range(3):
        log = StepLog()
        for a, s, k, n in zip(rng.uniform(0.01, 0.05, 300), rng.uniform(0, 1e-4, 300), rng.integers(1, 50, 300),
                              rng.integers(0, 9, 300), strict=True):
            log.add_steps(float(a), float(s), int(k), int(n))
        log.add_gap(0.2, 3)
        logs.append(log)
    qs = [0.0, 0.31, 0.5, 0.95, 0.99, 1.0]
    expected = StepLogs(logs).quantiles(qs)
    monkeypatch.setattr(steplog, "CHUNK", 7)
    assert StepLogs(logs).quantiles(qs) == expected == StepLog.merged(logs).quantiles(qs)
    sample = np.concatenate([expand([(log._alpha[i], log._slope[i], log._k[i], log._n[i])
                                     for i in range(len(log._k))], [0.2] * 3) for log in logs])
    np.testing.assert_array_equal(expected, np.quantile(sample, qs, method="inverted_cdf"))


def test_step_log_of_reads_instances_in_place() -> None:
    class Inst:
        def __init__(self, log: StepLog | None) -> None:
            self.step_log = log

    a, b = build([(0.1, 0.01, 3, 2)], [0.5]), build([(0.2, 0.0, 2, 1)], [])
    union = step_log_of([Inst(a), Inst(None), Inst(b)])
    assert union is not None and union.parts == (a, b)
    assert step_log_of([Inst(None)]) is None


def test_counts_outgrowing_32_bits_switch_to_64() -> None:
    """Counts are stored in 32 bits until one does not fit; then that array widens, merges of both
    widths work, and every aggregate is the one of the same runs stored at 64 bits throughout."""
    big_k, big_n = 2**31 + 5, 2**31 - 1 + 2
    small = build([(0.02, 1e-6, 10, 3)], [0.5])
    wide = build([(0.02, 1e-6, 10, 3), (0.01, 0.0, big_k, 2), (0.03, 1e-9, 4, big_n)], [0.5])
    assert (small._k.typecode, small._n.typecode) == ("i", "i")
    assert (wide._k.typecode, wide._n.typecode) == ("q", "q")
    assert wide.steps == 10 + big_k + 4 and wide.tokens == 30 + 2 * big_k + 4 * big_n + 1
    merged = StepLog.merged([small, wide])
    assert merged.steps == small.steps + wide.steps and merged.tokens == small.tokens + wide.tokens
    qs = [0.0, 0.3, 0.5, 0.99, 1.0]
    assert merged.quantiles(qs) == StepLogs([small, wide]).quantiles(qs)
    # in closed form: 2·big_k tokens at 0.01 (most of the sample), 30 near 0.02, 4·big_n at 0.03 + 1e-9·j
    # (j < 4, big_n each), one gap at 0.5
    assert wide.quantiles([0.0, 0.3, 0.99, 1.0]) == [0.01, 0.01, 0.03 + 1e-9 * 3, 0.5]


def test_products_of_32_bit_counts_do_not_overflow() -> None:
    """k and n each fit in 32 bits but k·n does not: token weights, and the counts of sloped runs folded
    below the bisection's bracket, are taken in int64."""
    k, n = 2**20, 5000
    log = build([(0.005, 1e-12, k, n), (0.01, 0.0, k, n), (0.02, 1e-9, k, n)], [])
    assert (log._k.typecode, log._n.typecode) == ("i", "i") and log.tokens == 3 * k * n
    j = (3 * k * n * 3 // 4 - 2 * k * n) // n - 1  # the 0.75 quantile's index in the last run (exact rank)
    assert log.quantiles([0.5, 0.75, 1.0]) == [0.01, 0.02 + 1e-9 * j, 0.02 + 1e-9 * (k - 1)]
