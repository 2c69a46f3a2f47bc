"""Which scheduler an instance runs, and its knobs (one per deployment).

``reserve`` (:class:`sim.engine.instance.Instance`) reserves a request's full eventual KV at admission
and prefills whole prompts in a step of their own; it never preempts. ``paged``
(:class:`sim.engine.paged.PagedInstance`) follows vLLM v1: KV in blocks, a token budget per step shared
by decodes and prefill chunks, preemption by recompute when blocks run out, optional prefix caching.
"""

from __future__ import annotations

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
        """Blocks a new admission must leave free (rounded down, as vLLM's block manager)."""
        return int(self.watermark * self.blocks(kv_capacity_tokens))

    def fits(self, kv_capacity_tokens: int, prompt_tokens: int, output_tokens: int) -> bool:
        """Whether a request can ever complete on an instance of this size, alone.

        ``reserve``: its full reservation ``prompt + output`` fits. ``paged``: its full KV (``prompt +
        output - 1`` tokens: the last token's KV is never written) fits the blocks, and -- since a
        request preempted before its last token restarts with ``prompt + generated`` tokens to prefill --
        the first chunk of that longest restart leaves the admission watermark free; without chunked
        prefill that whole restart prompt must also fit one step's budget (vLLM requires
        ``max_num_batched_tokens >= max_model_len`` then).
        """
        if self.kind == "reserve":
            return prompt_tokens + output_tokens <= kv_capacity_tokens
        longest = prompt_tokens + output_tokens - 1
        bs = self.block_size
        blocks = self.blocks(kv_capacity_tokens)
        if -(-longest // bs) > blocks:
            return False
        if not self.chunked_prefill and longest > self.max_num_batched_tokens:
            return False
        first = min(longest, self.max_num_batched_tokens)
        return -(-first // bs) <= blocks - self.watermark_blocks(kv_capacity_tokens)


RESERVE = SchedulerConfig(kind="reserve")
PAGED = SchedulerConfig()
