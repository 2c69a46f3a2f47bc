"""Sustainable rate of one instance: the highest arrival rate at which it still meets the latency SLO.

Capacity planning (issue 13, item 2) needs, per candidate deployment, how many queries per second one
instance can take while the p95 TTFT / end-to-end latency stays within the SLO. It depends on the
latency profile, the scheduler, ``max_seqs``, the KV capacity and the token mix, which is why it is
*measured by simulation* and not read off a formula:

1. **Analytic bracket.** The saturation throughput of a full batch, μ = B / (B·prefill(P̄) + Ō·T(B))
   with B = min(max_seqs, KV tokens / (P̄ + Ō)) concurrent sequences and T(B) the decode step at that
   batch, brackets the search: no instance sustains more than about μ.
2. **Simulated bisection.** One instance is simulated (:func:`sim.runner.simulate`, the same engine every
   run uses) on a Poisson trace of the token mix written once at unit rate and replayed at rate r through
   ``time_scale`` — common random numbers, so p95(r) is (nearly) monotone and the bisection is stable.
   The answer is the largest r whose p95 meets every SLO target; 0 when even a nearly idle instance
   misses it (the SLO is below the model's own service time).

Without an SLO the target is the knee of the latency curve: p95 end-to-end at most twice its value on a
nearly idle instance (:data:`KNEE`), a common "before the queue dominates" operating point.

Results are cached per (deployment, token mix, SLO, run settings), in memory and in a JSON file the
caller names (``rates.json`` in a plan folder), so a resumed plan re-simulates nothing.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sim import __version__
from sim import rng as rngs
from sim.config.checks import kv_capacity_tokens, profile_for
from sim.config.load import parse_scenario
from sim.config.schema import Deployment, GPUType, ModelSpec
from sim.errors import InputError
from sim.runner import simulate

KNEE = 2.0
"""Without an SLO: the rate at which p95 end-to-end reaches this multiple of its nearly-idle value."""
IDLE_FRACTION = 0.02
"""The "nearly idle" probe runs at this fraction of the analytic saturation rate."""
BISECTION_STEPS = 8
"""Steps of the rate bisection: the answer is within bracket / 2**8 (< 0.5 % of saturation) below the
true threshold of the simulated curve."""
WARMUP_FRACTION = 0.1
"""Share of a probe's arrivals left out of its p95 (the empty-instance start)."""

METRICS = ("ttft", "e2e")


@dataclass(frozen=True)
class Slo:
    """p95 latency targets in seconds; ``None`` = not constrained. Both ``None``: the knee rule."""

    ttft_p95: float | None = None
    e2e_p95: float | None = None

    @property
    def empty(self) -> bool:
        return self.ttft_p95 is None and self.e2e_p95 is None

    def targets(self) -> dict[str, float]:
        return {m: v for m, v in (("ttft", self.ttft_p95), ("e2e", self.e2e_p95)) if v is not None}

    def label(self) -> str:
        parts = [f"{m}_p95={v:g}s" for m, v in self.targets().items()]
        return ",".join(parts) if parts else f"knee (p95 e2e <= {KNEE:g}x idle)"


@dataclass(frozen=True)
class TokenMix:
    """A sample of (prompt, output) token pairs: what one model's queries look like."""

    prompt: np.ndarray
    output: np.ndarray

    @property
    def digest(self) -> str:
        h = hashlib.sha256(np.asarray(self.prompt, dtype=np.int64).tobytes())
        h.update(np.asarray(self.output, dtype=np.int64).tobytes())
        return h.hexdigest()[:16]

    @classmethod
    def sample(cls, prompt: np.ndarray, output: np.ndarray, n: int, seed: int, name: str) -> TokenMix:
        """``n`` pairs drawn with replacement from the workload's (the stream is named per model)."""
        rng = rngs.stream(seed, f"plan.mix.{name}")
        idx = rng.integers(0, len(prompt), size=n)
        return cls(np.maximum(np.asarray(prompt)[idx], 1).astype(np.int64),
                   np.maximum(np.asarray(output)[idx], 1).astype(np.int64))


@dataclass
class RateResult:
    """The sustainable rate (queries/s per instance) and how it was found."""

    rate: float
    saturation_estimate: float
    idle_p95: dict[str, float]
    p95_at_rate: dict[str, float]
    targets: dict[str, float]
    probes: list[tuple[float, dict[str, float]]] = field(default_factory=list)
    cached: bool = False

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("cached")
        return d


def _seconds_map(x: Any) -> bool:
    return isinstance(x, dict) and all(isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool)
                                       and v >= 0 for k, v in x.items())


def _from_cache(entry: Any) -> RateResult | None:
    """A cached result, or None when the entry is missing or not what :meth:`RateResult.to_json` wrote
    (a hand-edited or damaged ``rates.json`` is recomputed, never trusted): every field present, the
    rate finite, >= 0 and no more than the search can reach (64 × the saturation estimate)."""
    if not isinstance(entry, dict) or set(entry) != {f for f in RateResult.__dataclass_fields__ if f != "cached"}:
        return None
    rate, mu = entry["rate"], entry["saturation_estimate"]
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (rate, mu))
    if not numbers or not (math.isfinite(rate) and math.isfinite(mu) and 0 <= rate <= 64 * mu and mu > 0):
        return None
    if not all(_seconds_map(entry[k]) for k in ("idle_p95", "p95_at_rate", "targets")):
        return None
    probes = entry["probes"]
    if not isinstance(probes, list) or not all(isinstance(p, list | tuple) and len(p) == 2 and _seconds_map(p[1])
                                               for p in probes):
        return None
    return RateResult(**{**entry, "cached": True, "probes": [tuple(p) for p in probes]})


def read_cache(path: Path) -> dict[str, Any]:
    """The rates a cache file holds; an unreadable or malformed file is an empty cache (its rates are
    probed again, never trusted; single entries are checked by :func:`_from_cache` as they are used)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_cache(path: Path, cache: dict[str, Any]) -> None:
    """Write the cache through a temporary sibling (a reader never sees half a file)."""
    from sim.experiments.folder import write_atomic

    write_atomic(path, lambda p: p.write_text(json.dumps(cache, indent=1, sort_keys=True) + "\n", encoding="utf-8"))


def saturation_estimate(model: ModelSpec, gpu: GPUType, dep: Deployment, mix: TokenMix) -> float:
    """Analytic queries/s of one instance running full batches (the bisection's upper bracket)."""
    prof = profile_for(model, dep)
    p_mean, o_mean = float(np.mean(mix.prompt)), float(np.mean(mix.output))
    kv = max(kv_capacity_tokens(model, gpu, dep), 1)
    batch = max(1.0, min(float(dep.max_seqs), kv / (p_mean + o_mean)))
    ctx = int(batch * (p_mean + o_mean / 2))
    step = prof.iteration_time(int(round(batch)), ctx)
    per_request = prof.prefill_time(int(round(p_mean))) + o_mean * step / batch
    return 1.0 / max(per_request, 1e-9)


class RateFinder:
    """Finds and caches sustainable rates; one per plan (``cache_file`` persists them across runs)."""

    def __init__(self, workdir: Path, *, seed: int, n_requests: int = 1200,
                 cache_file: Path | None = None, cache: dict[str, Any] | None = None,
                 on_probe: Callable[[], None] | None = None) -> None:
        """``cache``: a dict of earlier results to use and extend in place (a plan keeps it and writes it
        to its folder itself); else ``cache_file`` is read at start and rewritten after each new rate."""
        self.workdir = workdir
        self.seed = seed
        self.n_requests = n_requests
        self.cache_file = cache_file
        self.on_probe = on_probe
        self.simulations = 0
        self._cache: dict[str, Any] = cache if cache is not None else (
            read_cache(cache_file) if cache_file is not None else {})

    # -- public ------------------------------------------------------------------------------------
    def rate(self, model: ModelSpec, gpu: GPUType, dep: Deployment, mix: TokenMix, slo: Slo) -> RateResult:
        key = self._key(model, gpu, dep, mix, slo)
        hit = _from_cache(self._cache.get(key))
        if hit is not None:
            return hit
        res = self._find(model, gpu, dep, mix, slo)
        self._cache[key] = res.to_json()
        if self.cache_file is not None:
            write_cache(self.cache_file, self._cache)
        return res

    # -- search --------------------------------------------------------------------------------------
    def _find(self, model: ModelSpec, gpu: GPUType, dep: Deployment, mix: TokenMix, slo: Slo) -> RateResult:
        mu = saturation_estimate(model, gpu, dep, mix)
        trace = self._trace(mix)
        probes: list[tuple[float, dict[str, float]]] = []

        def probe(rate: float) -> dict[str, float]:
            p95 = self._p95(model, gpu, dep, trace, rate)
            probes.append((rate, p95))
            return p95

        idle_rate = IDLE_FRACTION * mu
        idle = probe(idle_rate)
        targets = slo.targets() or {"e2e": KNEE * idle["e2e"]}
        meets = lambda p95: all(p95[m] <= t for m, t in targets.items())  # noqa: E731
        if not meets(idle):
            return RateResult(0.0, mu, idle, idle, targets, probes)
        lo, lo_p95, hi = idle_rate, idle, 1.5 * mu
        hi_p95 = probe(hi)
        while meets(hi_p95) and hi < 64 * mu:  # the estimate was pessimistic: widen the bracket
            lo, lo_p95, hi = hi, hi_p95, 2 * hi
            hi_p95 = probe(hi)
        for _ in range(BISECTION_STEPS):
            mid = 0.5 * (lo + hi)
            p95 = probe(mid)
            if meets(p95):
                lo, lo_p95 = mid, p95
            else:
                hi = mid
        return RateResult(lo, mu, idle, lo_p95, targets, probes)

    def _p95(self, model: ModelSpec, gpu: GPUType, dep: Deployment, trace: Path, rate: float) -> dict[str, float]:
        """p95 TTFT and end-to-end of one instance fed the mix at ``rate`` queries/s."""
        sc = parse_scenario(json.dumps(_scenario(model, gpu, dep, trace, rate, self.seed, self.n_requests)),
                            file="<sustainable-rate probe>")
        res = simulate(sc)
        self.simulations += 1
        if self.on_probe:
            self.on_probe()
        lat = res.summary["latency_s"]
        out = {m: lat[m]["p95"] for m in METRICS}
        return {m: (math.inf if v is None or not math.isfinite(v) else float(v)) for m, v in out.items()}

    def _trace(self, mix: TokenMix) -> Path:
        """The mix as an Azure-format trace of Poisson arrivals at 1 query/s (scaled by ``time_scale``)."""
        path = self.workdir / f"mix-{mix.digest}-{self.n_requests}-s{self.seed}.csv"
        if path.exists():
            return path
        rng = rngs.stream(self.seed, "plan.rate.arrivals")
        n = self.n_requests
        gaps = rng.exponential(1.0, size=n)
        ns = np.cumsum(gaps * 1e9).astype(np.int64)
        stamps = np.datetime64("2024-01-01T00:00:00", "ns") + ns.astype("timedelta64[ns]")
        idx = np.arange(n) % len(mix.prompt)
        lines = [f"{str(t).replace('T', ' ')[:27]},{mix.prompt[i]},{mix.output[i]}" for t, i in zip(stamps, idx,
                                                                                                 strict=True)]
        self.workdir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n" + "\n".join(lines) + "\n", encoding="utf-8")
        tmp.replace(path)
        return path

    def _key(self, model: ModelSpec, gpu: GPUType, dep: Deployment, mix: TokenMix, slo: Slo) -> str:
        m = model.model_dump(mode="json", include={"params_b", "bytes_per_param", "kv_bytes_per_token", "latency"})
        d = dep.model_dump(mode="json", exclude={"instances", "model"})
        g = gpu.model_dump(mode="json", include={"name", "memory_gib"})
        text = json.dumps({"model": m, "dep": d, "gpu": g, "mix": mix.digest, "slo": asdict(slo),
                           "n": self.n_requests, "seed": self.seed, "v": __version__}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:20]


def _scenario(model: ModelSpec, gpu: GPUType, dep: Deployment, trace: Path, rate: float, seed: int,
              n: int) -> dict[str, Any]:
    """A one-instance scenario replaying the mix at ``rate``: only what the engine needs of the model."""
    m = model.model_dump(mode="json", include={"name", "params_b", "bytes_per_param", "kv_bytes_per_token",
                                                 "latency"})
    m.update(price_in_per_mtok=0.0, price_out_per_mtok=0.0, strength=0.5)
    m["latency"] = {k: v for k, v in m["latency"].items() if k.split("@tp")[0] == gpu.name}
    d = dep.model_dump(mode="json")
    d.update(instances=1, max_queue=None)
    return {
        "name": "sustainable-rate",
        "seed": seed,
        "warmup_s": WARMUP_FRACTION * n / rate,
        "gpus": [{"name": gpu.name, "memory_gib": gpu.memory_gib, "count": dep.tp}],
        "models": [m],
        "deployments": [d],
        "workload": {"arrivals": {"type": "trace", "path": str(trace), "format": "azure",
                                  "use_trace_tokens": True, "time_scale": rate},
                     "pool": {"type": "synthetic"}},
        "router": {"policy": "cheapest", "capacity": "unlimited"},
        "outputs": {"requests": False, "batches": False},
    }


def check_slo_text(text: str) -> Slo:
    """Parse ``--slo e2e_p95=30s,ttft_p95=2s`` (seconds; ``ms`` accepted); InputError naming the item."""
    values: dict[str, float] = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or key not in ("ttft_p95", "e2e_p95"):
            raise InputError(f"expected ttft_p95=SECONDS or e2e_p95=SECONDS, got {item!r}", where="--slo")
        raw = raw.strip()
        scale = 1e-3 if raw.endswith("ms") else 1.0
        number = raw.removesuffix("ms").removesuffix("s")
        try:
            value = float(number) * scale
        except ValueError:
            raise InputError(f"{key}: {raw!r} is not a number of seconds (e.g. 2s, 500ms)", where="--slo") from None
        if not math.isfinite(value) or value <= 0 or value > 86_400:
            raise InputError(f"{key}: {raw!r} must be within (0, 86400] seconds", where="--slo")
        if key in values:
            raise InputError(f"{key} is given twice", where="--slo")
        values[key] = value
    if not values:
        raise InputError("expected ttft_p95=SECONDS and/or e2e_p95=SECONDS", where="--slo")
    return Slo(ttft_p95=values.get("ttft_p95"), e2e_p95=values.get("e2e_p95"))
