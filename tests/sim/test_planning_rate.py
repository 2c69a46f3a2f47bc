"""Sustainable rate of one instance (:mod:`sim.planning.rate`), checked against queueing theory and an
exact reference: with ``max_seqs: 1`` and the ``reserve`` scheduler an instance is a FIFO single-server
queue, so each probe's p95 must equal the Lindley recursion's on the same arrivals and service times,
and the rate must be near the M/M/1 closed form (service ≈ exponential: geometric outputs of mean 100
at 10 ms a token)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sim.config.load import parse_scenario
from sim.config.schema import Scenario
from sim.errors import InputError
from sim.planning.rate import (
    BISECTION_STEPS,
    KNEE,
    WARMUP_FRACTION,
    RateFinder,
    Slo,
    TokenMix,
    check_slo_text,
    saturation_estimate,
)

STEP_S = 0.01
N = 3000


def single_server(max_seqs: int = 1) -> Scenario:
    return parse_scenario(json.dumps({
        "name": "mm1", "seed": 3, "num_queries": 10,
        "gpus": [{"name": "G", "memory_gib": 80, "count": 1}],
        "models": [{"name": "m", "params_b": 1, "kv_bytes_per_token": 1024, "strength": 0.5,
                    "price_in_per_mtok": 0, "price_out_per_mtok": 0,
                    "latency": {"G": {"prefill_per_token_s": 1e-6, "decode_base_s": STEP_S}}}],
        "deployments": [{"model": "m", "gpu": "G", "max_seqs": max_seqs, "scheduler": "reserve"}],
        "workload": {"arrivals": {"type": "poisson", "rate": 1.0}, "pool": {"type": "synthetic"}},
        "router": {"policy": "cheapest"}}), file="<test>")


def geometric_mix(n: int = N, seed: int = 0) -> TokenMix:
    rng = np.random.default_rng(seed)
    return TokenMix(np.ones(n, dtype=np.int64), rng.geometric(1 / 100, n).astype(np.int64))


def lindley_p95(trace: Path, rate: float, n: int) -> dict[str, float]:
    """p95 sojourn and TTFT of a FIFO single server on the trace at ``rate`` (the warm-up left out, as
    the probe does): service = prefill (1 token) + (output − 1) decode steps; first token after prefill."""
    df = pd.read_csv(trace)
    stamps = pd.to_datetime(df["TIMESTAMP"])
    t = (stamps - stamps.iloc[0]).dt.total_seconds().to_numpy() / rate
    prefill = 1e-6
    svc = prefill + (df["GeneratedTokens"].to_numpy() - 1) * STEP_S
    start = np.empty_like(t)
    free = 0.0
    for i in range(len(t)):
        start[i] = max(t[i], free)
        free = start[i] + svc[i]
    keep = t >= WARMUP_FRACTION * n / rate
    e2e = start + svc - t
    ttft = start + prefill - t
    return {"e2e": float(np.quantile(e2e[keep], 0.95)), "ttft": float(np.quantile(ttft[keep], 0.95))}


@pytest.fixture(scope="module")
def mm1() -> Scenario:
    return single_server()


@pytest.mark.parametrize("slo", [Slo(e2e_p95=7.5), Slo(ttft_p95=5.0)])
def test_every_probe_matches_the_lindley_recursion(mm1: Scenario, slo: Slo, tmp_path: Path) -> None:
    finder = RateFinder(tmp_path, seed=1, n_requests=N)
    mix = geometric_mix()
    res = finder.rate(mm1.models[0], mm1.gpus[0], mm1.deployments[0], mix, slo)
    trace = next(tmp_path.glob("mix-*.csv"))
    for rate, p95 in res.probes:
        ref = lindley_p95(trace, rate, N)
        assert p95["e2e"] == pytest.approx(ref["e2e"], rel=1e-6)
        assert p95["ttft"] == pytest.approx(ref["ttft"], rel=1e-6, abs=1e-6)
    # the answer meets the SLO and a probe just above it (within the bisection's resolution) does not
    (metric, target), = slo.targets().items()
    assert res.p95_at_rate[metric] <= target
    failing = [r for r, p in res.probes if p[metric] > target]
    assert failing and min(failing) > res.rate
    assert min(failing) - res.rate <= 1.5 * res.saturation_estimate / 2 ** BISECTION_STEPS + 1e-12


def mm1_rate(mu: float, slo: Slo) -> float:
    """M/M/1: p95 sojourn ln 20 / (μ − λ); p95 wait t with ρ e^{−(μ−λ)t} = 0.05."""
    if slo.e2e_p95 is not None:
        return mu - math.log(20) / slo.e2e_p95
    from scipy.optimize import brentq

    assert slo.ttft_p95 is not None
    t = slo.ttft_p95
    return float(brentq(lambda lam: (lam / mu) * math.exp(-(mu - lam) * t) - 0.05, 1e-9, mu * (1 - 1e-12)))


@pytest.mark.parametrize("slo", [Slo(e2e_p95=7.5), Slo(e2e_p95=12.0), Slo(ttft_p95=5.0), Slo(ttft_p95=10.0)])
def test_rate_is_near_the_mm1_closed_form(mm1: Scenario, slo: Slo, tmp_path: Path) -> None:
    mix = geometric_mix()
    mu = 1.0 / (1e-6 + (mix.output.mean() - 1) * STEP_S)
    res = RateFinder(tmp_path, seed=1, n_requests=N).rate(mm1.models[0], mm1.gpus[0], mm1.deployments[0], mix, slo)
    # one sample path of 3,000 queries: its p95 is itself a noisy estimate, hence the tolerance
    assert res.rate == pytest.approx(mm1_rate(mu, slo), rel=0.15)


def test_tighter_slo_lower_rate_and_idle_miss_is_zero(mm1: Scenario, tmp_path: Path) -> None:
    finder = RateFinder(tmp_path, seed=1, n_requests=N)
    mix = geometric_mix()
    args = (mm1.models[0], mm1.gpus[0], mm1.deployments[0], mix)
    rates = [finder.rate(*args, Slo(e2e_p95=s)).rate for s in (20.0, 10.0, 6.0)]
    assert rates[0] > rates[1] > rates[2] > 0
    # the p95 of a geometric(1/100) service alone is ~3 s: an SLO of 1 s is missed even when idle
    idle_miss = finder.rate(*args, Slo(e2e_p95=1.0))
    assert idle_miss.rate == 0.0 and idle_miss.idle_p95["e2e"] > 1.0


def test_knee_rule_without_an_slo(mm1: Scenario, tmp_path: Path) -> None:
    res = RateFinder(tmp_path, seed=1, n_requests=N).rate(
        mm1.models[0], mm1.gpus[0], mm1.deployments[0], geometric_mix(), Slo())
    assert res.targets == {"e2e": pytest.approx(KNEE * res.idle_p95["e2e"])}
    assert res.p95_at_rate["e2e"] <= KNEE * res.idle_p95["e2e"]
    assert 0 < res.rate < res.saturation_estimate


def test_cached_in_memory_and_on_disk(mm1: Scenario, tmp_path: Path) -> None:
    cache = tmp_path / "rates.json"
    args = (mm1.models[0], mm1.gpus[0], mm1.deployments[0], geometric_mix(), Slo(e2e_p95=8.0))
    first = RateFinder(tmp_path, seed=1, n_requests=N, cache_file=cache)
    a = first.rate(*args)
    sims = first.simulations
    assert sims > 0 and not a.cached
    again = first.rate(*args)
    assert again.cached and first.simulations == sims and again.rate == a.rate
    second = RateFinder(tmp_path, seed=1, n_requests=N, cache_file=cache)
    b = second.rate(*args)
    assert b.cached and second.simulations == 0 and b.rate == a.rate
    # another token mix, SLO or deployment is another entry
    other = second.rate(mm1.models[0], mm1.gpus[0], mm1.deployments[0], geometric_mix(seed=5), Slo(e2e_p95=8.0))
    assert not other.cached and second.simulations > 0


def test_more_slots_sustain_more(tmp_path: Path) -> None:
    """With continuous batching (max_seqs 16, decode step independent of the batch here) an instance
    sustains far more than the single-server one, and the analytic bracket says so too."""
    one, many = single_server(1), single_server(16)
    mix = geometric_mix()
    finder = RateFinder(tmp_path, seed=1, n_requests=N)
    r1 = finder.rate(one.models[0], one.gpus[0], one.deployments[0], mix, Slo(e2e_p95=10.0))
    r16 = finder.rate(many.models[0], many.gpus[0], many.deployments[0], mix, Slo(e2e_p95=10.0))
    assert r16.rate > 5 * r1.rate
    assert saturation_estimate(many.models[0], many.gpus[0], many.deployments[0], mix) > \
        5 * saturation_estimate(one.models[0], one.gpus[0], one.deployments[0], mix)


@pytest.mark.parametrize(("text", "expected"), [
    ("e2e_p95=30s,ttft_p95=2s", Slo(ttft_p95=2.0, e2e_p95=30.0)),
    ("ttft_p95=500ms", Slo(ttft_p95=0.5)),
    ("e2e_p95=12", Slo(e2e_p95=12.0)),
])
def test_slo_text(text: str, expected: Slo) -> None:
    assert check_slo_text(text) == expected


@pytest.mark.parametrize("text", ["", "p99=3s", "e2e_p95=fast", "e2e_p95=-1s", "e2e_p95=1s,e2e_p95=2s",
                                  "ttft_p95=inf", "e2e_p95"])
def test_bad_slo_text(text: str) -> None:
    with pytest.raises(InputError) as exc:
        check_slo_text(text)
    assert exc.value.where == "--slo"
