"""Latency profile of one model on one GPU type (at a given tensor-parallel degree).

The engine needs two quantities:

* prefill time of a group of newly admitted requests, growing with their prompt tokens:
  ``prefill_base_s + prefill_per_token_s * P + prefill_per_token2_s * P**2`` with P = Σ prompt tokens;
* duration of one decode iteration with ``n`` running sequences holding ``ctx`` context tokens in all:
  ``decode_base_s + decode_per_seq_s * n + decode_per_ctx_token_s * ctx``.

The decode form is linear in ``n`` and ``ctx`` on purpose: the engine advances whole runs of iterations
in closed form (sum of an arithmetic series), which is what keeps a run's cost proportional to the
number of requests rather than tokens.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LatencyProfile:
    prefill_base_s: float = 0.0
    prefill_per_token_s: float = 0.0
    prefill_per_token2_s: float = 0.0
    decode_base_s: float = 0.0
    decode_per_seq_s: float = 0.0
    decode_per_ctx_token_s: float = 0.0

    def prefill_time(self, prompt_tokens: int) -> float:
        p = float(prompt_tokens)
        return self.prefill_base_s + self.prefill_per_token_s * p + self.prefill_per_token2_s * p * p

    def iteration_time(self, n: int, ctx: int) -> float:
        return self.decode_base_s + self.decode_per_seq_s * n + self.decode_per_ctx_token_s * ctx
