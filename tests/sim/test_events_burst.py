"""Rate-change events (docs/events.md) against queueing theory and against the arrival processes.

A x2 burst on the M/M/4 of ``scenarios/mmc_validation.yaml`` run at half its rate (rho = 0.4 outside
the window, 0.8 inside): the arrival rate inside the window doubles, and the mean wait inside is Erlang C
at 2*lambda while outside it is Erlang C at lambda (the window is thousands of mean service times long,
so each side is in steady state apart from a short transient, which is left out)."""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np
import pytest
import yaml

from sim.config import parse_scenario
from sim.runner import RunResult, prepare_key, run
from sim.workload import arrivals as arr
from tests.sim.conftest import SCENARIOS, small_scenario
from tests.sim.test_queueing_theory import erlang_c_wait

LAM, START, END, HORIZON = 1.6, 3000.0, 13000.0, 21000.0


def mmc(events: list[dict[str, Any]]) -> dict[str, Any]:
    data = yaml.safe_load((SCENARIOS / "mmc_validation.yaml").read_text())
    data.update(num_queries=None, duration_s=HORIZON, warmup_s=0.0, events=events)
    data["workload"]["arrivals"]["rate"] = LAM
    data["outputs"] = {"sample_interval_s": 5.0}
    return data


@cache
def burst_run() -> RunResult:
    data = mmc([{"kind": "rate_change", "start_s": START, "end_s": END, "multiplier": 2.0}])
    return run(parse_scenario(yaml.safe_dump(data), file="burst.yaml"))


def test_burst_doubles_the_arrival_rate_inside_the_window_only() -> None:
    t = burst_run().requests.arrival_s.to_numpy()
    inside = ((t >= START) & (t < END)).sum() / (END - START)
    outside = ((t < START) | (t >= END)).sum() / (HORIZON - (END - START))
    # Poisson counts: ~32,000 and ~17,600 arrivals, relative standard errors 0.6 % and 0.8 %
    assert abs(inside - 2 * LAM) / (2 * LAM) < 0.03
    assert abs(outside - LAM) / LAM < 0.03


def test_burst_wait_matches_erlang_c_inside_and_outside() -> None:
    req = burst_run().requests
    wait = (req.start_s - req.decision_s).to_numpy()
    t = req.arrival_s.to_numpy()
    relax = 300.0  # several relaxation times of the M/M/4 at rho 0.8 (1/(c*mu - lam) ~ 1.25 s)
    inside = wait[(t >= START + relax) & (t < END)].mean()
    outside = wait[((t >= relax) & (t < START)) | (t >= END + relax)].mean()
    hi, lo = erlang_c_wait(2 * LAM, 1.0, 4), erlang_c_wait(LAM, 1.0, 4)
    assert hi > 10 * lo  # the direction and size queueing theory predicts: ~20x more waiting
    # Tolerances: the mmc test gets 5 % from 200,000 queries at rho 0.8; ~30,000 here give ~13 %
    # (correlated waits); at rho 0.4 waits are rare (P(wait) ~ 7 %), so ~15,000 queries give ~15 %.
    assert abs(inside - hi) / hi < 0.15, (inside, hi)
    assert abs(outside - lo) / lo < 0.25, (outside, lo)


def test_poisson_window_is_exact_time_change() -> None:
    """Before the window the arrivals are those of the run without it; the composed profile's Λ and
    Λ⁻¹ are inverse, with a diurnal base too."""
    rng_a, rng_b = np.random.default_rng(1), np.random.default_rng(1)
    plain = arr.poisson(2.0, rng_a, duration_s=100.0)
    prof = arr.WindowedProfile(None, ((40.0, 60.0, 3.0),))
    burst = arr.modulated(2.0, prof, rng_b, duration_s=100.0)
    early = plain.times[plain.times < 40.0]
    assert np.allclose(burst.times[: len(early)], early, rtol=0, atol=1e-9)
    base = arr.DiurnalProfile(amplitude=0.5, period_s=50.0)
    for p in (prof, arr.WindowedProfile(base, ((10.0, 30.0, 0.25), (20.0, 70.0, 4.0)))):
        t = np.linspace(0.0, 120.0, 977)
        assert np.allclose(p.inverse(p.cumulative(t)), t, atol=1e-7)
        # Λ' = the multiplier, away from the cuts
        mid = np.array([5.0, 15.0, 25.0, 45.0, 90.0])
        h = 1e-5
        assert np.allclose((p.cumulative(mid + h) - p.cumulative(mid - h)) / (2 * h), p.multiplier(mid), rtol=1e-5)


def test_overlapping_windows_multiply() -> None:
    starts, g = arr.window_steps(((10.0, 30.0, 2.0), (20.0, 40.0, 3.0)))
    assert starts.tolist() == [0.0, 10.0, 20.0, 30.0, 40.0]
    assert g.tolist() == [1.0, 2.0, 6.0, 3.0, 1.0]


def test_batch_arrivals_come_m_times_as_often_in_the_window() -> None:
    prof = arr.WindowedProfile(None, ((20.0, 40.0, 2.0),))
    out = arr.rescale_batches(5, 2.0, prof, duration_s=60.0)
    starts = out.times[np.r_[True, np.diff(out.group) != 0]]
    gaps = np.diff(starts)
    assert np.allclose(gaps[starts[:-1] < 18.0], 2.0) and np.allclose(gaps[(starts[:-1] >= 20) & (starts[:-1] < 38)], 1.0)
    assert np.bincount(out.group).tolist() == [5] * len(starts)
    assert len(starts) == 10 + 20 + 10


def test_trace_thinning_and_top_up_follow_the_multiplier() -> None:
    n = 40_000
    t = np.sort(np.random.default_rng(3).uniform(0.0, 400.0, n))
    trace = arr.Arrivals(times=t, group=np.arange(n), prompt_tokens=np.arange(n), output_tokens=np.arange(n) + 1)
    out = arr.rescale_trace(trace, ((100.0, 200.0, 0.5), (250.0, 350.0, 2.5)), np.random.default_rng(0))
    rate = lambda a, b: ((out.times >= a) & (out.times < b)).sum() / ((t >= a) & (t < b)).sum()  # noqa: E731
    assert abs(rate(0, 100) - 1.0) < 1e-12 and abs(rate(200, 250) - 1.0) < 1e-12
    assert abs(rate(100, 200) - 0.5) < 0.03 and abs(rate(250, 350) - 2.5) < 0.05
    # every arrival keeps a row of the trace (its own tokens), copies inside the window they came from
    assert np.array_equal(out.output_tokens, out.prompt_tokens + 1)
    src = out.prompt_tokens
    assert np.all((t[src] < 250.0) == (out.times < 250.0))
    assert np.all(np.diff(out.times) >= 0)


def test_rate_change_is_in_the_prepare_key_and_other_events_are_not() -> None:
    base = small_scenario()
    key = lambda d: prepare_key(parse_scenario(yaml.safe_dump(d), file="t.yaml"))  # noqa: E731
    k0 = key(base)
    assert key({**base, "events": []}) == k0
    assert key({**base, "events": [{"kind": "price_change", "at_s": 5.0, "model": "big", "multiplier": 2.0}]}) == k0
    assert key({**base, "events": [{"kind": "rate_change", "start_s": 5.0, "end_s": 9.0, "multiplier": 2.0}]}) != k0


@pytest.mark.parametrize("arrivals", [
    {"type": "gamma", "rate": 4.0, "cv": 2.0},
    {"type": "poisson", "rate": 4.0, "modulation": {"type": "piecewise", "steps": [[0, 1.0], [30, 0.5]]}},
    {"type": "batch", "batch_size": 4, "interval_s": 1.0},
])
def test_bursts_run_and_account_for_every_request(arrivals: dict[str, Any]) -> None:
    data = small_scenario(num_queries=None, duration_s=300.0,
                          workload={"arrivals": arrivals, "pool": {"type": "synthetic"}},
                          events=[{"kind": "rate_change", "start_s": 100.0, "end_s": 200.0, "multiplier": 2.0}])
    res = run(parse_scenario(yaml.safe_dump(data), file="t.yaml"))
    t = res.requests.arrival_s.to_numpy()
    # ~400 arrivals in the 100 s before, ~800 inside (gamma cv 2: count sd ~ 2 sqrt(n), so > 4 sd margin)
    inside, before = ((t >= 100) & (t < 200)).sum(), (t < 100).sum()
    assert inside > 1.5 * before
    q = res.summary["queries"]
    assert q["completed"] + q["rejected"] + q["lost"] == q["arrived"] and q["lost"] == 0


def test_trace_burst_in_a_run_respects_num_queries(write_scenario, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A replayed Azure trace (one request a second) with a x3 window: the window holds ~3x the trace's
    requests, each served with its own trace tokens, and num_queries caps the rescaled trace."""
    rows = [f"2023-11-16 18:{m:02d}:{s:02d}.000,{100 + k},{10 + k % 7}"
            for k, (m, s) in enumerate(divmod(i, 60) for i in range(600))]
    (tmp_path / "t.csv").write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n" + "\n".join(rows) + "\n")
    data = small_scenario(num_queries=None, workload={
        "arrivals": {"type": "trace", "path": "t.csv"}, "pool": {"type": "synthetic"}},
        events=[{"kind": "rate_change", "start_s": 100.0, "end_s": 300.0, "multiplier": 3.0}])
    from sim.config import load_scenario
    from sim.workload.build import build_workload

    sc = load_scenario(write_scenario(data))
    wl = build_workload(sc, tmp_path)
    t = wl.times
    inside = ((t >= 100) & (t < 300)).sum()
    assert ((t < 100).sum(), (t >= 300).sum()) == (100, 300)  # untouched outside the window
    assert abs(inside - 600) < 4 * (400 ** 0.5)  # 200 kept + Poisson(2) copies each (sd 20)
    assert set(wl.prompt_tokens.tolist()) <= set(range(100, 700))
    capped = load_scenario(write_scenario({**data, "num_queries": 250}, name="capped.yaml"))
    assert len(build_workload(capped, tmp_path).times) == 250
