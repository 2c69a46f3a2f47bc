"""Per-token latency and scheduler metrics of the summary: TPOT, TBT, preemptions, prefix-cache hits.

TPOT is per request, from its timestamps, so it exists under every scheduler. TBT (time between
tokens) is token-weighted: the distribution over every generated token after the first of the gap
since the previous token of its request. No run stores per-token times; each paged instance keeps a
:class:`~sim.engine.steplog.StepLog` (runs of step durations weighted by the tokens they produced), and
the quantiles here are exact quantiles of that expanded sample (numpy's ``inverted_cdf``: a TBT
percentile is a gap some token really saw). Instances without a step log (the ``reserve`` scheduler)
give TBT ``None``; so do preemption counters when no deployment is paged, and hit rates when no
deployment caches prefixes: "not applicable" rather than a zero that reads like a measurement.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from sim.engine.steplog import StepLog, StepLogs

TBT_QUANTILES = (50, 95, 99)


class TbtCache:
    """What one summary's TBT sections share while its step logs are alive and unchanged: each union's
    statistics, by its parts in order (a one-model cluster's model is the whole cluster), and each part's
    sorted sample (a part is in its model's union and in the cluster's). The exact quantiles are the
    summary's costliest part (~1 s at a million requests); this way no union and no part's sample is
    computed twice."""

    __slots__ = ("stats", "samples")

    def __init__(self) -> None:
        self.stats: dict[tuple[int, ...], dict[str, float | None]] = {}
        self.samples: dict[int, Any] = {}


def tbt_stats(logs: Sequence[StepLog | StepLogs | None], cache: TbtCache | None = None) -> dict[str, float | None]:
    """Mean, p50/p95/p99 and the longest step of the union of the logs (all None without any log, the
    statistics None when the logs hold no token). The union is read in place (:class:`StepLogs`), with
    the results of merging the logs into one; ``cache``: see :class:`TbtCache`."""
    present = [log for log in logs if log is not None]
    keys = ["mean", *(f"p{p}" for p in TBT_QUANTILES), "max_step"]
    if not present:
        return dict.fromkeys(keys)
    union = StepLogs(present)
    key = tuple(id(part) for part in union.parts)
    if cache is not None and key in cache.stats:
        return dict(cache.stats[key])
    quantiles = union.quantiles([p / 100 for p in TBT_QUANTILES], None if cache is None else cache.samples)
    values = [union.mean(), *quantiles, union.max_step]
    stats = {k: (float(v) if np.isfinite(v) else None) for k, v in zip(keys, values, strict=True)}
    if cache is not None:
        cache.stats[key] = dict(stats)
    return stats


def scheduler_stats(
    rec: Any, mine: np.ndarray, prompt_tokens: np.ndarray | None, *, paged: bool, cache_scope: np.ndarray | None
) -> dict[str, Any]:
    """Preemptions and recomputed tokens of the requests ``mine``, prefix-cache hit rates of those in
    ``cache_scope`` (the requests of models with a prefix-caching deployment; None: no cache anywhere).

    The counters are recorded when a request finishes, so they cover admitted (``start`` recorded)
    requests; a request still running at a cut-off is not in them. Token hit rate: prompt tokens
    served from the cache at first admission over the prompt tokens (re-admissions after preemption
    also hit their own blocks, but are not counted, as in vLLM's prefix-cache stats); None without
    ``prompt_tokens``. Request hit rate: the share of admitted requests that had
    any cached token.
    """
    admitted = mine & np.isfinite(rec.start)
    hit_tokens = hit_requests = None
    cached_in = admitted if cache_scope is None else admitted & cache_scope
    if cache_scope is not None and cached_in.any():
        cached = rec.cached_tokens[cached_in].astype(np.int64)
        hit_requests = float((cached > 0).mean())
        if prompt_tokens is not None:
            served = int(np.asarray(prompt_tokens, dtype=np.int64)[cached_in].sum())
            hit_tokens = float(cached.sum() / served) if served else None
    return {
        "preemptions": int(rec.preemptions[admitted].sum(dtype=np.int64)) if paged else None,
        "recomputed_tokens": int(rec.recomputed_tokens[admitted].sum(dtype=np.int64)) if paged else None,
        "prefix_cache_hit_rate_tokens": hit_tokens,
        "prefix_cache_hit_rate_requests": hit_requests,
    }
