"""A request as the engine sees it; the dispatcher creates it, the instance fills its timestamps."""

from __future__ import annotations

import math


class Request:
    """One query sent to one model instance.

    ``prompt_tokens`` and ``output_tokens`` (>= 1; the first output token comes out of prefill) are
    fixed at creation. The engine sets ``instance``, ``enqueue_time``, ``start_time`` (admission into the
    running batch, when prefill begins), ``first_token_time`` (end of prefill) and ``finish_time``.
    ``rid`` indexes the metrics' columnar arrays.

    Paged scheduler only (zero / NaN under ``reserve``): ``prefix`` -- hashes of the prompt's leading
    blocks of ``SchedulerConfig.prefix_block_tokens`` tokens (Mooncake ``hash_ids``), or ``None``;
    ``preemptions`` and ``recomputed_tokens`` (prompt + generated tokens prefilled again after
    preemptions); ``cached_tokens`` (prompt tokens served from the prefix cache at its first
    admission); ``max_gap`` (longest time between two consecutive output tokens; NaN with one token).
``retries`` counts restarts after node failures (:meth:`restart`).
    """

    __slots__ = (
        "rid",
        "prompt_tokens",
        "output_tokens",
        "instance",
        "enqueue_time",
        "start_time",
        "first_token_time",
        "finish_time",
        "_finish_at",
        "_generated",
        "_last_tok",
        "prefix",
        "preemptions",
        "recomputed_tokens",
        "cached_tokens",
        "max_gap",
        "retries",
    )

    def __init__(
        self, rid: int, prompt_tokens: int, output_tokens: int, prefix: tuple[int, ...] | None = None
    ) -> None:
        self.rid = rid
        self.prompt_tokens = int(prompt_tokens)
        out = int(output_tokens)
        self.output_tokens = out if out > 1 else 1
        self.instance = -1
        self.enqueue_time = math.nan
        self.start_time = math.nan
        self.first_token_time = math.nan
        self.finish_time = math.nan
        self._finish_at = 0  # engine-private bookkeeping
        self._generated = 0  # paged: tokens generated before a preemption
        self._last_tok = math.nan  # paged: time of the last token before a preemption
        self.prefix: tuple[int, ...] | None = prefix
        self.preemptions = 0
        self.recomputed_tokens = 0
        self.cached_tokens = 0
        self.max_gap = math.nan
        self.retries = 0  # restarts from scratch after a node failure (sim/engine/faults.py)

    def restart(self) -> None:
        """Forget a failed instance's progress: the request starts over as if new (its KV was on the
        failed node, so its prompt is prefilled again). Counters are kept; whoever re-queues it counts
        the retry in ``retries``."""
        self.instance = -1
        self.enqueue_time = self.start_time = self.first_token_time = self.finish_time = math.nan
        self._finish_at = 0
        self._generated = 0
        self._last_tok = math.nan
        self.max_gap = math.nan

    @property
    def kv_tokens(self) -> int:
        """KV-cache tokens reserved at admission: the full eventual context (no preemption modelled)."""
        return self.prompt_tokens + self.output_tokens

    def __repr__(self) -> str:
        return (
            f"Request(rid={self.rid}, prompt={self.prompt_tokens}, out={self.output_tokens}, "
            f"start={self.start_time}, first={self.first_token_time}, finish={self.finish_time})"
        )
