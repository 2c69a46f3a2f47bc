"""Turn a scenario's workload section into arrays: arrival times, arrival groups and the queries.

The order of construction is fixed and each step draws from its own seeded stream (``arrivals``,
``pool``, ``order``, ``lengths``, ``split``, ``sample``), so changing the policy or the predictor never
changes the workload: every policy is compared on identical arrivals, queries and outcomes.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np

from sim import rng as rngs
from sim.config.checks import is_mooncake_trace, resolve_path
from sim.config.schema import (
    BatchArrivals,
    DatasetPool,
    DiurnalModulation,
    GammaArrivals,
    PoissonArrivals,
    RateChange,
    Scenario,
    SyntheticPool,
    TraceArrivals,
)
from sim.errors import DataError, ScenarioError, warn_input
from sim.workload import arrivals as arr_mod
from sim.workload import synthetic
from sim.workload.arrivals import Arrivals
from sim.workload.ordering import order_queries
from sim.workload.prefix import PrefixHashes
from sim.workload.queryset import QuerySet


@dataclass(frozen=True)
class Workload:
    """N arrivals, each matched with one query (row i of ``queries`` arrives at ``times[i]``)."""

    times: np.ndarray  # (N,)
    # indices where a new arrival group begins; None when every arrival is a group of its own (then it
    # would be 0 .. N-1: 8 bytes a query for nothing, issue 14)
    group_starts: np.ndarray | None
    queries: QuerySet  # N rows, in arrival order
    prompt_tokens: np.ndarray  # (N,) as served (pool's or trace's)
    output_tokens: np.ndarray  # (N, m) as served
    cost: np.ndarray  # (N, m) realised USD cost of serving query i on model j
    train: QuerySet | None  # queries the predictor may learn from (disjoint from ``queries``)
    token_source: str  # "pool" or "trace"
    # Prefix-block hashes of each arrival's prompt (N rows, arrival order), or None. Only a trace that
    # carries them and whose token counts are served (use_trace_tokens) has them: hashes describe the
    # trace's prompt, so with a pool's prompt lengths they would describe a prompt never sent. The same
    # rule holds for any future option that rescales prompt tokens: it must drop the hashes (a scaled
    # prompt's blocks are not the trace's blocks). Scaling outputs (verbosity) keeps them: they cover
    # the prompt only.
    prefix: PrefixHashes | None = None


def price(prompt: np.ndarray, output: np.ndarray, price_in: np.ndarray, price_out: np.ndarray) -> np.ndarray:
    """USD cost (N, m) of prompts (N,) and outputs (N, m) at per-million-token prices (m,)."""
    return (prompt[:, None] * price_in[None, :] + output * price_out[None, :]) / 1e6


def rate_windows(sc: Scenario) -> tuple[arr_mod.Window, ...]:
    """The scenario's rate_change events as (start_s, end_s, multiplier) windows, in event order."""
    return tuple((e.start_s, e.end_s, e.multiplier) for e in sc.events if isinstance(e, RateChange))


def build_arrivals(sc: Scenario) -> Arrivals:
    """The scenario's arrivals (rate_change windows applied)."""
    return _build_arrivals(sc)[0]


def _build_arrivals(sc: Scenario) -> tuple[Arrivals, int]:
    """The arrivals, and how many there are without the rate_change windows: the queries are drawn
    for that many (see :func:`build_workload`), so a burst or lull leaves the draws of the run without
    it unchanged."""
    a = sc.workload.arrivals
    rng = rngs.stream(sc.seed, "arrivals")
    # The generators take one stop rule; with both set, generate by count and cut at the duration, so
    # arrivals stop at whichever limit comes first.
    count = sc.num_queries
    duration = None if count is not None else sc.duration_s
    windows = rate_windows(sc)
    if isinstance(a, (PoissonArrivals, GammaArrivals)):
        cv = a.cv if isinstance(a, GammaArrivals) else 1.0
        base: arr_mod.Profile | None = None
        if a.modulation is not None:
            m = a.modulation
            base = (
                arr_mod.DiurnalProfile(amplitude=m.amplitude, period_s=m.period_s, phase=m.phase)
                if isinstance(m, DiurnalModulation)
                else arr_mod.piecewise(m.steps)
            )
        # rate changes compose with any modulation as one more time change
        profile = arr_mod.WindowedProfile(base, windows) if windows else base
        if profile is not None:
            out = arr_mod.modulated(a.rate, profile, rng, cv=cv, duration_s=duration, num_queries=count)
        elif isinstance(a, GammaArrivals):
            out = arr_mod.gamma(a.rate, a.cv, rng, duration_s=duration, num_queries=count)
        else:
            out = arr_mod.poisson(a.rate, rng, duration_s=duration, num_queries=count)
    elif isinstance(a, BatchArrivals) and windows:
        out = arr_mod.rescale_batches(a.batch_size, a.interval_s, arr_mod.WindowedProfile(None, windows),
                                      duration_s=duration, num_queries=count)
    elif isinstance(a, BatchArrivals):
        out = arr_mod.batch(a.batch_size, a.interval_s, rng, duration_s=duration, num_queries=count)
    else:
        assert isinstance(a, TraceArrivals)
        from sim.workload.traces import load_azure_csv, load_mooncake_jsonl, replay  # start-up: traces only

        path = Path(a.path)
        fmt = a.format
        if fmt == "auto":
            fmt = "mooncake" if ".jsonl" in path.name else "azure"
        # From the trace's start with no rate changes (which thin or copy rows), a run by count needs
        # exactly its first num_queries rows: the rest of the file is not read.
        max_rows = sc.num_queries if a.start_s == 0 and not windows else None
        trace = (load_mooncake_jsonl(path, block_tokens=a.prefix_block_tokens) if fmt == "mooncake"
                 else load_azure_csv(path, max_rows=max_rows))
        out = replay(
            trace,
            time_scale=a.time_scale,
            start_s=a.start_s,
            duration_s=None if sc.duration_s is None else sc.duration_s * a.time_scale,
            max_queries=sc.num_queries,
        )
        if out.n == 0:
            raise DataError("the trace has no arrivals in the requested window", file=path)
        if windows:
            base_n = _cut(sc, out).n
            out = arr_mod.rescale_trace(out, windows, rngs.stream(sc.seed, "events.rate"))
            if sc.num_queries is not None and out.n > sc.num_queries:  # copies count towards the limit
                out = _first(out, sc.num_queries)
            return _cut(sc, out), base_n
    out = _cut(sc, out)
    if windows and not isinstance(a, TraceArrivals):
        without = sc.model_copy(update={"events": [e for e in sc.events if not isinstance(e, RateChange)]})
        return out, _build_arrivals(without)[0].n
    return out, out.n


def _cut(sc: Scenario, out: Arrivals) -> Arrivals:
    """Arrivals generated by count, cut at ``duration_s`` when both are set (whichever comes first)."""
    if sc.duration_s is None or sc.num_queries is None:
        return out
    keep = out.times < sc.duration_s
    if keep.all():
        return out
    return Arrivals(
        times=out.times[keep],
        group=out.group[keep],
        prompt_tokens=None if out.prompt_tokens is None else out.prompt_tokens[keep],
        output_tokens=None if out.output_tokens is None else out.output_tokens[keep],
        prefix=None if out.prefix is None else out.prefix.take(keep),
    )


def _first(a: Arrivals, n: int) -> Arrivals:
    """The first ``n`` arrivals."""
    return Arrivals(
        times=a.times[:n],
        group=a.group[:n],
        prompt_tokens=None if a.prompt_tokens is None else a.prompt_tokens[:n],
        output_tokens=None if a.output_tokens is None else a.output_tokens[:n],
        prefix=None if a.prefix is None else a.prefix.slice(0, n),
    )


def _synthetic(sc: Scenario, pool: SyntheticPool, n: int, stream: str) -> QuerySet:
    rng = rngs.stream(sc.seed, stream)
    tasks = None
    if pool.tasks is not None:
        tasks = [
            synthetic.TaskSpec(
                name=t.name,
                weight=t.weight,
                difficulty_a=t.difficulty_a,
                difficulty_b=t.difficulty_b,
                prompt=synthetic.TokenDist(t.prompt_median, t.prompt_sigma, 1, pool.max_prompt_tokens),
                output=synthetic.TokenDist(t.output_median, t.output_sigma, 1, pool.max_output_tokens),
            )
            for t in pool.tasks
        ]
    models = [synthetic.ModelSpec(name=m.name, strength=float(m.strength or 0.0), verbosity=m.verbosity)
              for m in sc.models]
    qs = synthetic.synthetic_pool(n, tasks, models, rng, slope=pool.slope)
    if pool.tasks is not None and any(t.length_dist == "geometric" for t in pool.tasks):
        qs = _geometric_lengths(sc, pool, qs, rngs.stream(sc.seed, stream + ".lengths"))
    return qs


def _geometric_lengths(sc: Scenario, pool: SyntheticPool, qs: QuerySet, rng: np.random.Generator) -> QuerySet:
    """Redraw lengths of 'geometric' tasks: memoryless token counts (mean = the task's median field)."""
    assert pool.tasks is not None
    prompt = qs.prompt_tokens.copy()
    output = qs.output_tokens.copy()
    verbosity = np.array([m.verbosity for m in sc.models])
    for k, t in enumerate(pool.tasks):
        if t.length_dist != "geometric":
            continue
        rows = np.nonzero(qs.task == k)[0]
        prompt[rows] = np.minimum(rng.geometric(1.0 / t.prompt_median, rows.size), pool.max_prompt_tokens)
        base = rng.geometric(1.0 / t.output_median, rows.size)
        output[rows] = np.clip(np.rint(base[:, None] * verbosity[None, :]), 1, pool.max_output_tokens)
    return replace(qs, prompt_tokens=prompt.astype(np.int64), output_tokens=output.astype(np.int64))


def _append(a: QuerySet, b: QuerySet) -> QuerySet:
    """``a``'s queries, then ``b``'s (same models and tasks; ``b``'s synthetic ids moved past ``a``'s)."""
    changes: dict[str, object] = {}
    for f in fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if f.name in ("model_names", "task_names", "data_report") or x is None:
            continue
        if f.name == "prompts":
            changes[f.name] = tuple(x) + tuple(y)
        elif f.name == "query_ids" and np.issubdtype(np.asarray(x).dtype, np.integer):
            changes[f.name] = np.concatenate([x, np.asarray(y) + len(x)])
        else:
            changes[f.name] = np.concatenate([x, y])
    return replace(a, **changes)  # type: ignore[arg-type]


def _dataset(sc: Scenario, pool: DatasetPool, n: int, extra: int = 0) -> tuple[QuerySet, QuerySet]:
    from sim.datasets.pool import load_pool

    # Loading, model selection, the split (seeded or the dataset's own files), the test-part size checks
    # and the row options (on_duplicate, on_missing_score) live in one place, shared with validate.
    train, test = load_pool(pool, [m.dataset_model or m.name for m in sc.models], sc.seed, n,
                            ["dataset_model" if m.dataset_model else "name" for m in sc.models])
    rng = rngs.stream(sc.seed, "sample")
    if pool.tasks:
        unknown = [t for t in pool.tasks if t not in test.task_names]
        if unknown:
            raise ScenarioError(
                f"task {unknown[0]!r} is not in the dataset; tasks: {', '.join(test.task_names)}",
                where="workload.pool.tasks",
            )
        w = np.array([pool.tasks.get(name, 0.0) for name in test.task_names])
        per_row = w[test.task]
        counts = np.bincount(test.task, minlength=len(test.task_names)).astype(float)
        p = per_row / np.where(counts[test.task] > 0, counts[test.task], 1.0)
        idx = rng.choice(test.n, size=n, replace=True, p=p / p.sum())
        more = rngs.stream(sc.seed, "sample.events").choice(test.n, size=extra, replace=True, p=p / p.sum())
    else:
        idx = rng.choice(test.n, size=n, replace=n > test.n)
        more = rngs.stream(sc.seed, "sample.events").choice(test.n, size=extra, replace=True)
    # ``extra`` queries (a burst's additional arrivals) come after the ``n`` of the run without it, from
    # their own stream, so those ``n`` are the same draws
    sampled = test.subset(np.concatenate([idx, more]).astype(np.int64))
    # Names in the simulation are the scenario's model names.
    sim_names = tuple(m.name for m in sc.models)
    return replace(sampled, model_names=sim_names), replace(train, model_names=sim_names)


def build_workload(sc: Scenario, base_dir: Path | None = None) -> Workload:
    """Arrivals, then queries, then their order, then the tokens and costs actually served."""
    arrivals, n0 = _build_arrivals(sc)
    n = arrivals.n
    # Queries are drawn for the n0 arrivals of the run without rate_change windows; a burst's extra
    # arrivals get extra queries from their own stream after those, a lull uses the first n. So the
    # queries up to the first window are those of the run without it (a paired what-if compares like
    # with like).
    extra = max(n - n0, 0)
    pool = sc.workload.pool
    train: QuerySet | None
    if isinstance(pool, SyntheticPool):
        queries = _synthetic(sc, pool, n0, "pool")
        train = _synthetic(sc, pool, max(2000, min(n0, 20000)), "train_pool")
        more = _synthetic(sc, pool, extra, "pool.events") if extra else None
    else:
        if base_dir is not None:
            resolved = [str(resolve_path(item, base_dir)) for item in pool.paths]
            pool = pool.model_copy(update={"path": resolved[0] if isinstance(pool.path, str) else resolved})
        queries, train = _dataset(sc, pool, n0, extra)
        more = None
    if more is not None:
        queries = _append(queries, more)

    price_in = np.array([m.price_in_per_mtok for m in sc.models])
    price_out = np.array([m.price_out_per_mtok for m in sc.models])
    order = sc.workload.order
    # What serving each pool query costs (recorded by the dataset, else priced from its tokens); the
    # by_cost ordering sorts on the same numbers that are billed.
    pool_cost = (
        queries.cost_usd
        if queries.cost_usd is not None
        else price(queries.prompt_tokens, queries.output_tokens, price_in, price_out)
    )
    perm = order_queries(
        queries.subset(np.arange(n0)) if queries.n > n0 else queries,
        order.mode,
        rngs.stream(sc.seed, "order"),
        strong_model=order.strong_model,
        cost=pool_cost[:n0],
        descending=order.descending,
    )
    perm = np.concatenate([perm, np.arange(n0, queries.n)]).astype(np.int64)[:n]  # extra draws keep their order
    queries = queries.subset(perm)

    a = sc.workload.arrivals
    verbosity = np.array([m.verbosity for m in sc.models])
    if isinstance(a, TraceArrivals) and a.use_trace_tokens:
        assert arrivals.prompt_tokens is not None and arrivals.output_tokens is not None
        prompt = arrivals.prompt_tokens.astype(np.int64)
        output = np.maximum(1, np.rint(arrivals.output_tokens[:, None] * verbosity[None, :])).astype(np.int64)
        token_source = "trace"
        cost = price(prompt, output, price_in, price_out)
        prefix = arrivals.prefix  # row i is arrival i's, as the prompt counts are (queries are reordered)
        if prefix is None:
            _warn_no_hashes(sc)
    else:
        prompt, output, token_source = queries.prompt_tokens, queries.output_tokens, "pool"
        cost = pool_cost[perm]
        prefix = None
    starts = np.flatnonzero(np.r_[True, np.diff(arrivals.group) != 0]) if n else np.zeros(0, np.int64)
    return Workload(
        times=arrivals.times,
        group_starts=None if len(starts) == n else starts.astype(np.int64),
        queries=queries,
        prompt_tokens=np.asarray(prompt, dtype=np.int64),
        output_tokens=np.asarray(output, dtype=np.int64),
        cost=np.asarray(cost, dtype=np.float64),
        train=train,
        token_source=token_source,
        prefix=prefix,
    )


def _warn_no_hashes(sc: Scenario) -> None:
    """A prefix cache on a Mooncake trace whose rows carry no ``hash_ids``: valid, but the cache never hits
    (the load-time check can only see that the trace format could carry them)."""
    a = sc.workload.arrivals
    if not is_mooncake_trace(a):  # other traces are warned about when the scenario is checked
        return
    assert isinstance(a, TraceArrivals)
    for i, d in enumerate(sc.deployments):
        if d.prefix_cache:
            warn_input(f"set, but no row of the trace {a.path} has hash_ids, so nothing can hit the cache",
                       where=f"deployments[{i}].prefix_cache")
