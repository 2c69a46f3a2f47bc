"""Which scheduler an instance runs, and its knobs (one per deployment).

``reserve`` (:class:`sim.engine.instance.Instance`) reserves a request's full eventual KV at admission
and prefills whole prompts in a step of their own; it never preempts. ``paged``
(:class:`sim.engine.paged.PagedInstance`) follows vLLM v1: KV in blocks, a token budget per step shared
by decodes and prefill chunks, preemption by recompute when blocks run out, optional prefix caching.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

SchedulerKind = Literal["reserve", "paged"]


@dataclass(frozen=True)
class SchedulerConfig:
    """Scheduler knobs of one deployment (validated by the scenario schema).

    Attributes:
        kind: ``"reserve"`` or ``"paged"``.
        block_size: KV tokens per block (paged).
        max_num_batched_tokens: token budget of one step: decodes (one token each) plus prefill chunks.
        chunked_prefill: split prompts into chunks that fill the step's leftover budget; ``False`` admits
            a waiting prompt only if all of it fits the leftover budget.
        prefix_cache: share the KV of cached leading prompt blocks (``Request.prefix`` hashes).
        watermark: fraction of the blocks a *new* admission must leave free (vLLM's 0.01).
        prefix_block_tokens: prompt tokens covered by one prefix hash (Mooncake: 512).
    """

    kind: SchedulerKind = "paged"
    block_size: int = 16
    max_num_batched_tokens: int = 8192
    chunked_prefill: bool = True
    prefix_cache: bool = False
    watermark: float = 0.01
    prefix_block_tokens: int = 512

    def blocks(self, kv_capacity_tokens: int) -> int:
        """KV blocks of an instance with ``kv_capacity_tokens`` tokens of KV memory."""
        return kv_capacity_tokens // self.block_size

    def watermark_blocks(self, kv_capacity_tokens: int) -> int:
        return math.ceil(self.watermark * self.blocks(kv_capacity_tokens))

    def fits(self, kv_capacity_tokens: int, prompt_tokens: int, output_tokens: int) -> bool:
        """Whether a request can ever complete on an instance of this size, alone.

        ``reserve``: its full reservation ``prompt + output`` fits. ``paged``: the blocks of its full
        context plus the admission watermark fit (so a request restarted after preemption, whose prompt
        is then ``prompt + generated``, can always be admitted again once alone), and without chunked
        prefill its whole context fits one step's budget.
        """
        total = prompt_tokens + output_tokens
        if self.kind == "reserve":
            return total <= kv_capacity_tokens
        need = -(-total // self.block_size)
        if need > self.blocks(kv_capacity_tokens) - self.watermark_blocks(kv_capacity_tokens):
            return False
        return self.chunked_prefill or total <= self.max_num_batched_tokens


RESERVE = SchedulerConfig(kind="reserve")
PAGED = SchedulerConfig()
