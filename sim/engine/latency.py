"""Latency profile of one model on one GPU type (at a given tensor-parallel degree).

The engine needs three quantities:

* prefill time of a group of newly admitted requests, growing with their prompt tokens:
  ``prefill_base_s + prefill_per_token_s * P + prefill_per_token2_s * P**2`` with P = Σ prompt tokens.
  Known inconsistency: this is how ``reserve`` prefills a group, and how the Splitwise and
  LLM-Inference-Bench fits read batched prefill rows (``(Σ P)²``); ``paged`` charges the quadratic term
  per sequence (:meth:`LatencyProfile.step_time`), which the H200 iteration table shows is the physical
  form (8 prompts × 1,024 tokens: ``(Σ P)²`` +12.7 % over the measured step, per sequence −2.1 %). Making
  it per sequence everywhere moves built-in profiles that are scaled by parameter count (docs/scheduler.md);
* duration of one decode iteration with ``n`` running sequences holding ``ctx`` context tokens in all:
  ``decode_base_s + decode_per_seq_s * n + decode_per_ctx_token_s * ctx``;
* duration of one *mixed* step (chunked prefill: prompt chunks and decodes in one forward pass),
  :meth:`LatencyProfile.step_time`, which reduces exactly to the two forms above for pure steps.

The decode form is linear in ``n`` and ``ctx`` on purpose: the engine advances whole runs of iterations
in closed form (sum of an arithmetic series), which is what keeps a run's cost proportional to the
number of requests rather than tokens.

Mixed steps (C prompt-chunk tokens with attention work A, n decodes holding X context tokens)::

    mixed = max(mixed_base_s + mixed_per_seq_s·n,  mixed_compute_base_s + mixed_per_token_s·(C + n))
            + mixed_attn_s·A + mixed_per_ctx_token_s·X
    step  = max(mixed, iteration_time(n, X), prefill part(C, A) + decode_per_ctx_token_s·X)

Why this form: the linear layers read every weight once per step whatever the batch (the memory-bound
floor, which is what a decode step mostly is) and do 2·params FLOPs per row (the compute-bound cost, which
is what a prefill chunk mostly is); a step takes the larger of the two — a roofline — so decodes "ride
along" on a compute-bound chunk almost for free, while a small chunk added to many decodes costs little
more than the decodes. Attention is per sequence and does not share weight reads, so it adds. The outer
``max`` with the pure decode and pure prefill times makes a mixed step never cheaper than either of its
parts alone, which keeps ``step_time`` monotone across the pure/mixed boundary whatever the mixed
coefficients are (a measured mixed step can be marginally faster than its prefill alone — CUDA-graph
noise — but a simulator must not reward adding work).

Default mixed coefficients (each ``None`` field), derived from the pure ones so that every profile —
built-in, scaled or user-given — gets a sensible mixed form without new input:
``mixed_base_s = decode_base_s`` and ``mixed_per_seq_s = decode_per_seq_s`` (the decode step is the
weight-read-bound branch), ``mixed_compute_base_s = prefill_base_s`` and ``mixed_per_token_s =
prefill_per_token_s`` (a prefill chunk is the arithmetic branch, and a decode row costs the arithmetic of
one more token), ``mixed_attn_s = 2·prefill_per_token2_s`` (since ``prefill_per_token2_s·P² =
2·prefill_per_token2_s·(P²/2)``, the attention work of a whole prompt) and ``mixed_per_ctx_token_s =
decode_per_ctx_token_s``. With these defaults the outer ``max`` never binds (the roofline already
dominates both pure parts). Accuracy on the mixed rows of the H200 mixed-step table
(``../shared/data/gpu``; mean absolute error, max in brackets, for Llama-3-8B / Qwen2.5-32B), which
depends on where the pure decode coefficients come from:

* prefill from the mixed table's pure-chunk rows, decode from the H200 *iteration* table (a decode fit
  over batch 1-256 and context 256-8,192, the reference numbers): the plain sum of a prefill and a decode
  step 19.6 / 25.5 % (74 / 92 %), these defaults 6.5 / 7.0 % (15 / 23 %), fitted mixed coefficients
  (:func:`sim.profiles.fit.fit_mixed`) 3.6 / 3.4 %;
* ``llmsim calibrate`` on the mixed table alone (decode from its 3 pure-decode rows, all at 2,048 context
  tokens per sequence, so ``decode_per_ctx_token_s`` is not identifiable and fits to 0): the defaults
  14.4 / 7.0 %, fitted mixed coefficients 3.6 / 2.5 %;
* ``builtin: h200-torch`` (prefill and decode from the iteration table, mixed fitted): 3.6 / 2.4 %.

Per-step overhead: ``step_overhead_s`` is CPU time a serving engine spends once per step (scheduling,
input preparation, sampling bookkeeping, kernel launches the GPU waits on) whatever the step holds. It is
added exactly once to :meth:`~LatencyProfile.prefill_time`, :meth:`~LatencyProfile.iteration_time` and
:meth:`~LatencyProfile.step_time` — never inside the ``max`` branches, so the pure-step identities hold with
it. Why a separate term rather than part of the bases: it is not GPU work, so it must not be scaled with
params, TP degree or GPU speed when a profile is derived from another (:mod:`sim.profiles.hardware`), and a
pure-kernel measurement (CUDA-graph replays, as in the H200 table) has none of it — omitting it makes a
simulator under-predict TTFT of short prompts (one serving-simulator study: by 17-56 %).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

MIXED_TERMS = (
    "mixed_base_s",
    "mixed_per_seq_s",
    "mixed_compute_base_s",
    "mixed_per_token_s",
    "mixed_attn_s",
    "mixed_per_ctx_token_s",
)


@dataclass(frozen=True)
class LatencyProfile:
    prefill_base_s: float = 0.0
    prefill_per_token_s: float = 0.0
    prefill_per_token2_s: float = 0.0
    decode_base_s: float = 0.0
    decode_per_seq_s: float = 0.0
    decode_per_ctx_token_s: float = 0.0
    # Mixed-step (chunked prefill) coefficients; None = derived from the pure ones (module docstring).
    mixed_base_s: float | None = None
    mixed_per_seq_s: float | None = None
    mixed_compute_base_s: float | None = None
    mixed_per_token_s: float | None = None
    mixed_attn_s: float | None = None
    mixed_per_ctx_token_s: float | None = None
    # CPU time per engine step, added once to every step (module docstring); not scaled with the GPU.
    step_overhead_s: float = 0.0
    # The six mixed coefficients actually used, resolved once (step_time runs once per engine step).
    _mixed: tuple[float, float, float, float, float, float] = field(
        init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        if not math.isfinite(self.step_overhead_s) or self.step_overhead_s < 0:
            raise ValueError(f"step_overhead_s must be a finite number >= 0, got {self.step_overhead_s!r}")
        resolved = []
        for name, default in zip(MIXED_TERMS, self.derived_mixed_coefficients(), strict=True):
            value = getattr(self, name)
            if value is None:
                resolved.append(float(default))
                continue
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
            resolved.append(float(value))
        object.__setattr__(self, "_mixed", tuple(resolved))

    def derived_mixed_coefficients(self) -> tuple[float, float, float, float, float, float]:
        """The mixed-step defaults derived from the pure coefficients, in :data:`MIXED_TERMS` order."""
        return (
            self.decode_base_s,
            self.decode_per_seq_s,
            self.prefill_base_s,
            self.prefill_per_token_s,
            2.0 * self.prefill_per_token2_s,
            self.decode_per_ctx_token_s,
        )

    def mixed_coefficients(self) -> dict[str, float]:
        """The mixed-step coefficients in use (given or derived), by field name."""
        return dict(zip(MIXED_TERMS, self._mixed, strict=True))

    def prefill_time(self, prompt_tokens: int) -> float:
        p = float(prompt_tokens)
        return (
            self.prefill_base_s
            + self.prefill_per_token_s * p
            + self.prefill_per_token2_s * p * p
            + self.step_overhead_s
        )

    def iteration_time(self, n: int, ctx: int) -> float:
        return (
            self.decode_base_s
            + self.decode_per_seq_s * n
            + self.decode_per_ctx_token_s * ctx
            + self.step_overhead_s
        )

    def step_time(self, prefill_tokens: int, prefill_attn: float, n_decode: int, decode_ctx: int) -> float:
        """Duration of one engine step: ``prefill_tokens`` prompt tokens in chunks with attention work
        ``prefill_attn = Σ_chunks c·(q + c/2)`` (c chunk tokens, q tokens of that sequence already in KV),
        plus ``n_decode`` decodes holding ``decode_ctx`` context tokens in all.

        Exact for pure steps: ``step_time(0, 0, n, ctx) == iteration_time(n, ctx)`` and
        ``step_time(P, P²/2, 0, 0) == prefill_time(P)`` (to rounding), which the engine's closed forms rely
        on; non-decreasing in every argument over non-empty steps (``prefill_tokens + n_decode > 0``).
        ``step_overhead_s`` is in every step exactly once.
        """
        if prefill_tokens <= 0:
            return self.iteration_time(n_decode, decode_ctx)
        return self._gpu_step_time(prefill_tokens, prefill_attn, n_decode, decode_ctx) + self.step_overhead_s

    def _gpu_step_time(self, prefill_tokens: int, prefill_attn: float, n_decode: int, decode_ctx: int) -> float:
        """:meth:`step_time` of a step with a prompt chunk, without the per-step overhead."""
        prefill = (
            self.prefill_base_s
            + self.prefill_per_token_s * prefill_tokens
            + 2.0 * self.prefill_per_token2_s * prefill_attn
            + self.decode_per_ctx_token_s * decode_ctx
        )
        if n_decode <= 0:
            return prefill
        w0, w1, b0, b1, q, c = self._mixed
        mixed = (
            max(w0 + w1 * n_decode, b0 + b1 * (prefill_tokens + n_decode)) + q * prefill_attn + c * decode_ctx
        )
        decode = self.decode_base_s + self.decode_per_seq_s * n_decode + self.decode_per_ctx_token_s * decode_ctx
        return max(mixed, decode, prefill)
