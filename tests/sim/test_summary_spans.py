"""The summary's latencies computed where used (Spans, masked subtractions) against the (N,) arrays."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from sim.metrics.recorder import STATUS_DONE, STATUS_IN_FLIGHT, STATUS_REJECTED, tpot
from sim.metrics.slo import Spans, estimator_section, slo_section
from sim.metrics.summary import dist


def records(n: int = 2000, seed: int = 4) -> SimpleNamespace:
    rng = np.random.default_rng(seed)
    arrival = np.sort(rng.random(n) * 100)
    decision = arrival + rng.random(n) * 0.3
    start = decision + rng.random(n)
    first = start + rng.random(n) * 0.5
    finish = first + rng.random(n) * 4
    status = rng.choice([STATUS_DONE, STATUS_DONE, STATUS_REJECTED, STATUS_IN_FLIGHT], n).astype(np.int8)
    unfinished = status != STATUS_DONE
    first[unfinished], finish[unfinished] = np.nan, np.nan
    pred = (finish - decision + rng.normal(0, 0.2, n)).astype(np.float32)
    pred[rng.random(n) < 0.3] = np.nan
    return SimpleNamespace(arrival=arrival, decision=decision, start=start, first_token=first, finish=finish,
                           status=status, output_tokens=rng.integers(1, 300, n).astype(np.int32),
                           pred_e2e=pred, pred_ttft=(pred / 4).astype(np.float32))


def test_spans_equal_the_full_arrays() -> None:
    rec = records()
    scope = rec.arrival >= 10.0
    full = {"ttft": rec.first_token - rec.arrival, "e2e": rec.finish - rec.arrival}
    spans = Spans(rec, {"ttft": ("arrival", "first_token"), "e2e": ("arrival", "finish")})
    for name, values in full.items():
        np.testing.assert_array_equal(spans[name], values)
        assert dist(spans.over(name, scope)) == dist(values[scope])
    targets = {"ttft": 0.8, "e2e": 3.0}
    assert slo_section(rec, scope, spans, targets, 100.0) == slo_section(rec, scope, full, targets, 100.0)
    since = {"ttft": rec.first_token - rec.decision, "e2e": rec.finish - rec.decision}
    lazy = Spans(rec, {"ttft": ("decision", "first_token"), "e2e": ("decision", "finish")})
    got = estimator_section(rec, scope, lazy)
    assert got["n"] > 0 and got["e2e_mape"] is not None
    # the straightforward estimator: the float32 predictions widened whole, then the pairs taken
    ref: dict[str, float | int | None] = {}
    for m in ("e2e", "ttft"):
        predicted = np.asarray(getattr(rec, f"pred_{m}"), dtype=np.float64)
        pairs = scope & (rec.status == STATUS_DONE) & np.isfinite(predicted) & np.isfinite(since[m])
        err = predicted[pairs] - since[m][pairs]
        ref[f"{m}_bias_s"] = float(err.mean())
        ref[f"{m}_mape"] = float(np.mean(np.abs(err) / since[m][pairs]))
        if m == "e2e":
            ref["n"] = int(pairs.sum())
    assert got == ref


def test_masked_tpot_is_the_full_tpot_masked() -> None:
    rec = records()
    mask = rec.status == STATUS_DONE
    whole = tpot(rec.first_token, rec.finish, rec.output_tokens)[mask]
    np.testing.assert_array_equal(tpot(rec.first_token[mask], rec.finish[mask], rec.output_tokens[mask]), whole)


def test_dist_on_scratch_equals_dist_on_a_copy() -> None:
    """With scratch=True the percentiles partition the caller's temporary in place (no copy); the
    numbers are the copying path's, and without it the input is left as it was."""
    rng = np.random.default_rng(9)
    for x in (rng.random(10_001) * 5, np.where(rng.random(5000) < 0.1, np.nan, rng.random(5000)), np.array([np.nan])):
        kept = x.copy()
        want = dist(x)
        np.testing.assert_array_equal(x, kept)
        assert dist(x.copy(), scratch=True) == want
