"""Fit :class:`~sim.engine.latency.LatencyProfile` coefficients to measurements.

Four kinds of measurement rows; the first three are linear in (some of) the six pure coefficients:

* **prefill** rows — P prompt tokens prefilled together take ``t = a + b·P + c·P²``
  (:func:`fit_prefill`);
* **decode** rows — one iteration with n sequences holding ctx context tokens in all takes
  ``t = d0 + ds·n + dc·ctx`` (:func:`fit_decode`);
* **mixed** rows — one chunked-prefill step of C prompt-chunk tokens (attention work A) and n decodes
  holding X context tokens, :meth:`LatencyProfile.step_time` (:func:`fit_mixed`; not linear, see below);
* **end-to-end** rows — n requests of L_in prompt and L_out output tokens, admitted together and run to
  completion, take ``prefill(n·L_in) + Σ_{k=1}^{L_out-1} iteration(n, n·(L_in + k))``
  (:func:`fit_end_to_end`).

Why the end-to-end sum is exact rather than an approximation: the first output token comes out of prefill
(the Splitwise table confirms ``e2e ≈ prompt_time + (token_size − 1)·token_time``, median ratio 1.0004), so
there are L_out − 1 decode iterations, and at the k-th of them each sequence holds L_in + k tokens. The
iteration time is linear in ctx, so the sum is
``(L_out − 1)·(d0 + ds·n) + dc·n·(L_out − 1)·(L_in + L_out/2)`` — i.e. L_out − 1 iterations at the *mean*
context L_in + L_out/2 per sequence ("prompt plus half the generated tokens"). The same identity lets a
measured *mean* per-iteration time (Splitwise's ``token_time``) be fit against the mean context
(:func:`mean_decode_context`).

Why end-to-end rows cannot give prefill: the prefill per-token term multiplies n·L_in and the decode
per-sequence term multiplies n·(L_out − 1); for the usual benchmark shape L_in = L_out these columns are
collinear, so least squares can only find their sum. :func:`fit_end_to_end` therefore takes the prefill
part as given (from a direct prefill measurement, scaled; see :mod:`sim.profiles.hardware`) and fits the
three decode coefficients to what remains; with no prefill given, the whole latency is attributed to
decode iterations and the report says so.

Fitting method: non-negative least squares (``scipy.optimize.nnls``) — every coefficient is a time cost
and must be ≥ 0 for the engine. Residuals are *relative* (each row divided by its measured time), because
the tables span three orders of magnitude (tens of ms to minutes) and an absolute fit would ignore every
short row; relative residuals also make the reported MAPE the quantity actually minimised (in the
least-squares sense). Columns are rescaled to unit maximum before solving so P² (≈1e9) and the constant
column (1) are equally well conditioned.

Mixed steps (:func:`fit_mixed`): the step time is a max of two linear branches plus attention terms, then
a max with the pure decode and prefill times (see :mod:`sim.engine.latency`), so it is fitted by bounded
nonlinear least squares (``scipy.optimize.least_squares``, relative residuals, coefficients ≥ 0) with the
pure coefficients held fixed: they come from the pure rows, where they are identifiable and exact, and the
mixed coefficients are what is left to explain. A max of linear branches has local minima (which rows
fall on which branch), so the fit starts from the derived defaults and from piecewise-linear starts
(rows assigned to a branch, each branch fitted by NNLS, repeated) and keeps the best.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import ArrayLike, NDArray

from sim.engine.latency import MIXED_TERMS, LatencyProfile

PREFILL_TERMS = ("prefill_base_s", "prefill_per_token_s", "prefill_per_token2_s")
DECODE_TERMS = ("decode_base_s", "decode_per_seq_s", "decode_per_ctx_token_s")

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class FitReport:
    """Result of one fit.

    ``coefficients`` maps LatencyProfile field names to fitted values (s, s/token, ...); ``r2`` is the
    coefficient of determination on the measured times (nan when they do not vary); ``mape_pct`` and
    ``max_ape_pct`` the mean and largest absolute percentage error of the fitted times; ``rows`` the number
    of rows used; ``notes`` anything a reader must know to trust the numbers (filters, assumptions).
    """

    kind: str
    coefficients: Mapping[str, float]
    r2: float
    mape_pct: float
    max_ape_pct: float
    rows: int
    notes: tuple[str, ...] = field(default=())
    p90_ape_pct: float = float("nan")
    reference: FitReport | None = None  # the same rows predicted by a simpler model, for comparison

    def with_notes(self, *notes: str) -> FitReport:
        return replace(self, notes=self.notes + tuple(notes))


def _vector(values: ArrayLike, name: str) -> FloatArray:
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite numbers")
    return arr


def _times(values: ArrayLike, name: str) -> FloatArray:
    arr = _vector(values, name)
    if arr.size == 0:
        raise ValueError("no rows to fit")
    if np.any(arr <= 0):
        raise ValueError(f"{name} must be positive (they are measured durations)")
    return arr


def _same_length(*arrays: FloatArray) -> None:
    if len({a.size for a in arrays}) != 1:
        raise ValueError("all columns of a fit must have the same number of rows")


def nnls_relative(design: FloatArray, target: FloatArray, measured: FloatArray) -> FloatArray:
    """Non-negative x minimising Σ ((design·x − target) / measured)².

    ``target`` is what the design columns must explain (the measured time minus any fixed part);
    ``measured`` the full measured time that sets each row's weight.
    """
    if design.ndim != 2 or design.shape[0] != target.size or target.size != measured.size:
        raise ValueError("design, target and measured sizes disagree")
    weighted = design / measured[:, None]
    scale = np.max(np.abs(weighted), axis=0)
    scale[scale == 0] = 1.0
    from scipy.optimize import nnls  # at use: keeps scipy.optimize out of start-up

    solution, _ = nnls(weighted / scale, target / measured, maxiter=50 * design.shape[1])
    return np.asarray(solution / scale, dtype=np.float64)


def bounded_relative(design: FloatArray, target: FloatArray, measured: FloatArray, upper: FloatArray) -> FloatArray:
    """Like :func:`nnls_relative` with each coefficient also bounded above by ``upper`` (``inf`` = free)."""
    if upper.size != design.shape[1] or np.any(upper < 0):
        raise ValueError("upper bounds must be one non-negative value per column")
    weighted = design / measured[:, None]
    scale = np.max(np.abs(weighted), axis=0)
    scale[scale == 0] = 1.0
    from scipy.optimize import lsq_linear  # at use: keeps scipy.optimize out of start-up

    res = lsq_linear(weighted / scale, target / measured, bounds=(0.0, upper * scale), method="bvls")
    return np.asarray(res.x / scale, dtype=np.float64)


def _report(
    kind: str, names: Sequence[str], coef: FloatArray, predicted: FloatArray, measured: FloatArray
) -> FitReport:
    resid = predicted - measured
    ss_tot = float(np.sum((measured - measured.mean()) ** 2))
    r2 = 1.0 - float(np.sum(resid**2)) / ss_tot if ss_tot > 0 else float("nan")
    ape = np.abs(resid) / measured * 100.0
    return FitReport(
        kind=kind,
        coefficients={n: float(c) for n, c in zip(names, coef, strict=True)},
        r2=r2,
        mape_pct=float(ape.mean()),
        max_ape_pct=float(ape.max()),
        rows=int(measured.size),
        p90_ape_pct=float(np.percentile(ape, 90)),
    )


def fit_prefill(prompt_tokens: ArrayLike, time_s: ArrayLike, attn: ArrayLike | None = None) -> FitReport:
    """Fit ``prefill_base_s + prefill_per_token_s·P + prefill_per_token2_s·P²`` to (P, seconds) rows.

    P is the total prompt tokens prefilled together (batch size × prompt length for a batch of equal
    prompts), which is how the engine calls :meth:`LatencyProfile.prefill_time`. For chunks that attend to
    already-cached tokens give ``attn`` (Σ c·(q + c/2) per row, see :func:`chunk_attention`): the quadratic
    column is then 2·attn, which equals P² for whole prompts — the form of
    :meth:`LatencyProfile.step_time` for a pure prefill step.
    """
    p = _vector(prompt_tokens, "prompt_tokens")
    t = _times(time_s, "time_s")
    a = p * p / 2.0 if attn is None else _vector(attn, "attn")
    _same_length(p, t, a)
    design = np.column_stack([np.ones_like(p), p, 2.0 * a])
    coef = nnls_relative(design, t, t)
    return _report("prefill", PREFILL_TERMS, coef, design @ coef, t)


def fit_decode(batch_size: ArrayLike, context_tokens: ArrayLike, time_s: ArrayLike) -> FitReport:
    """Fit ``decode_base_s + decode_per_seq_s·n + decode_per_ctx_token_s·ctx`` to per-iteration times.

    ``context_tokens`` is the batch's total context (all sequences); for a measured *mean* iteration time
    over a run use :func:`mean_decode_context`.
    """
    n = _vector(batch_size, "batch_size")
    ctx = _vector(context_tokens, "context_tokens")
    t = _times(time_s, "time_s")
    _same_length(n, ctx, t)
    design = np.column_stack([np.ones_like(n), n, ctx])
    coef = nnls_relative(design, t, t)
    return _report("decode", DECODE_TERMS, coef, design @ coef, t)


def mean_decode_context(
    batch_size: ArrayLike, prompt_tokens: ArrayLike, generated_tokens: ArrayLike
) -> FloatArray:
    """Mean total context over the decode iterations of n requests with equal prompts and outputs.

    At the k-th decode iteration (k = 1 … g − 1) each sequence holds prompt + k tokens; the mean over k is
    prompt + g/2. Because iteration time is linear in ctx, the mean iteration time of the run equals the
    iteration time at this mean context — so fitting mean times against it is exact, not approximate.
    """
    n = _vector(batch_size, "batch_size")
    p = _vector(prompt_tokens, "prompt_tokens")
    g = _vector(generated_tokens, "generated_tokens")
    return np.asarray(n * (p + g / 2.0), dtype=np.float64)


def fit_end_to_end(
    batch_size: ArrayLike,
    input_tokens: ArrayLike,
    output_tokens: ArrayLike,
    latency_s: ArrayLike,
    prefill: LatencyProfile | None = None,
    per_seq_max: float = math.inf,
) -> FitReport:
    """Fit the decode coefficients to end-to-end latencies of batches run to completion.

    Model (see the module docstring for why it is exact under the engine's linear iteration cost)::

        latency = prefill(n·L_in) + (L_out − 1)·(d0 + ds·n) + dc·n·(L_out − 1)·(L_in + L_out/2)

    ``prefill`` supplies the prefill part, which end-to-end rows cannot identify; None means zero, i.e. the
    prefill work is folded into the decode coefficients (noted in the report). R² and MAPE are on the
    end-to-end latency, the measured quantity. ``per_seq_max`` bounds ``decode_per_seq_s`` from above (the
    rule that keeps its extrapolation beyond the measured batch sizes physical; see
    :mod:`sim.profiles.build_builtin`). The prefill part's ``step_overhead_s`` counts once per step: once
    for the prefill and once per decode iteration.
    """
    n = _vector(batch_size, "batch_size")
    lin = _vector(input_tokens, "input_tokens")
    lout = _vector(output_tokens, "output_tokens")
    y = _times(latency_s, "latency_s")
    _same_length(n, lin, lout, y)
    if np.any(lout < 1):
        raise ValueError("output_tokens must be >= 1")
    pre = prefill if prefill is not None else LatencyProfile()
    total_prompt = n * lin
    iters = lout - 1.0
    fixed = (
        pre.prefill_base_s
        + pre.prefill_per_token_s * total_prompt
        + pre.prefill_per_token2_s * total_prompt**2
        + pre.step_overhead_s * (1.0 + iters)
    )
    design = np.column_stack([iters, iters * n, iters * n * (lin + lout / 2.0)])
    if math.isinf(per_seq_max):
        coef = nnls_relative(design, y - fixed, y)
    else:
        coef = bounded_relative(design, y - fixed, y, np.array([math.inf, per_seq_max, math.inf]))
    report = _report("end_to_end", DECODE_TERMS, coef, fixed + design @ coef, y)
    if prefill is None:
        report = report.with_notes(
            "no prefill profile given: prefill work is folded into the decode coefficients "
            "(prefill per-token and decode per-sequence costs are not separable from end-to-end latency)"
        )
    return report


def profile_from(
    prefill: FitReport | LatencyProfile | None = None, decode: FitReport | LatencyProfile | None = None
) -> LatencyProfile:
    """Assemble a LatencyProfile from a prefill part and a decode part (missing parts are zero)."""
    values: dict[str, float] = {}
    for part, names in ((prefill, PREFILL_TERMS), (decode, DECODE_TERMS)):
        if part is None:
            continue
        for name in names:
            values[name] = float(
                part.coefficients[name] if isinstance(part, FitReport) else getattr(part, name)
            )
    return LatencyProfile(**values)


def chunk_attention(chunk_tokens: ArrayLike, chunk_prefix: ArrayLike) -> FloatArray:
    """Attention work ``c·(q + c/2)`` of a prompt chunk of c tokens after q cached tokens of its sequence.

    Each of the c new tokens attends to the q cached ones and, causally, to ≈ c/2 of the chunk; for a
    whole prompt (q = 0) this is P²/2, so ``2·prefill_per_token2_s`` per unit reproduces the P² term.
    """
    c = _vector(chunk_tokens, "chunk_tokens")
    q = _vector(chunk_prefix, "chunk_prefix")
    _same_length(c, q)
    return np.asarray(c * (q + c / 2.0), dtype=np.float64)


def _mixed_parts(
    pure: LatencyProfile, c: FloatArray, a: FloatArray, n: FloatArray, x: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """(pure decode time, pure prefill time) of each row: the lower bounds of a mixed step."""
    decode = pure.decode_base_s + pure.decode_per_seq_s * n + pure.decode_per_ctx_token_s * x
    prefill = (
        pure.prefill_base_s
        + pure.prefill_per_token_s * c
        + 2.0 * pure.prefill_per_token2_s * a
        + pure.decode_per_ctx_token_s * x
    )
    return decode, prefill


def _mixed_form(
    coef: FloatArray, c: FloatArray, a: FloatArray, n: FloatArray, x: FloatArray, low: FloatArray
) -> FloatArray:
    w0, w1, b0, b1, q, cc = coef
    mixed = np.maximum(w0 + w1 * n, b0 + b1 * (c + n)) + q * a + cc * x
    return np.asarray(np.maximum(mixed, low), dtype=np.float64)


def mixed_step_times(
    profile: LatencyProfile,
    prefill_tokens: ArrayLike,
    prefill_attn: ArrayLike,
    n_decode: ArrayLike,
    decode_ctx: ArrayLike,
) -> FloatArray:
    """:meth:`LatencyProfile.step_time` over arrays of steps (same branches, same arithmetic)."""
    c = _vector(prefill_tokens, "prefill_tokens")
    a = _vector(prefill_attn, "prefill_attn")
    n = _vector(n_decode, "n_decode")
    x = _vector(decode_ctx, "decode_ctx")
    _same_length(c, a, n, x)
    decode, prefill = _mixed_parts(profile, c, a, n, x)
    coef = np.array([profile.mixed_coefficients()[k] for k in MIXED_TERMS])
    mixed = _mixed_form(coef, c, a, n, x, np.maximum(decode, prefill))
    gpu = np.where(c <= 0, decode, np.where(n <= 0, prefill, mixed))
    return np.asarray(gpu + profile.step_overhead_s, dtype=np.float64)


def _branch_starts(
    default: FloatArray,
    c: FloatArray,
    a: FloatArray,
    n: FloatArray,
    x: FloatArray,
    t: FloatArray,
    low: FloatArray,
) -> list[FloatArray]:
    """Starting points for the mixed fit: the derived defaults, and NNLS fits of the two linear branches
    for several row-to-branch assignments, each refined by reassigning rows to the branch their fit makes
    larger until the assignment settles.

    Only rows the pure parts do not already explain (measured above the lower bound) take part: the others
    say nothing about the mixed coefficients. Initial assignments: all rows weight-read-bound, all
    arithmetic-bound, the defaults' own, and thresholds on chunk tokens per decode (a step with a long
    chunk and few decodes is arithmetic-bound).
    """
    starts = [default]
    above = t > low * (1.0 + 1e-9)
    if not above.any():
        return starts
    c, a, n, x, t = c[above], a[above], n[above], x[above], t[above]
    one, zero = np.ones_like(c), np.zeros_like(c)
    ratio = c / n
    initial = [
        np.ones_like(c, bool),
        np.zeros_like(c, bool),
        default[0] + default[1] * n >= default[2] + default[3] * (c + n),
        *(ratio <= np.quantile(ratio, q) for q in (0.25, 0.5, 0.75)),
    ]
    for memory_bound in initial:
        for _ in range(20):
            m = memory_bound
            design = np.column_stack(
                [
                    np.where(m, one, zero),
                    np.where(m, n, zero),
                    np.where(m, zero, one),
                    np.where(m, zero, c + n),
                    a,
                    x,
                ]
            )
            coef = nnls_relative(design, t, t)
            again = coef[0] + coef[1] * n >= coef[2] + coef[3] * (c + n)
            if np.array_equal(again, memory_bound):
                break
            memory_bound = again
        starts.append(coef)
    return starts


def fit_mixed(
    prefill_tokens: ArrayLike,
    prefill_attn: ArrayLike,
    n_decode: ArrayLike,
    decode_ctx: ArrayLike,
    time_s: ArrayLike,
    pure: LatencyProfile,
) -> FitReport:
    """Fit the six mixed-step coefficients of :meth:`LatencyProfile.step_time` to measured mixed steps.

    Every row must hold both a prompt chunk (``prefill_tokens`` > 0, attention work ``prefill_attn``, see
    :func:`chunk_attention`) and decodes (``n_decode`` > 0 holding ``decode_ctx`` tokens in all); pure rows
    belong to :func:`fit_prefill` / :func:`fit_decode`, whose result is ``pure`` (held fixed here). The
    report's ``reference`` is the plain sum ``prefill part + iteration_time`` on the same rows — what a
    mixed step would cost if prefill and decode ran as separate steps — for comparison.
    """
    c = _vector(prefill_tokens, "prefill_tokens")
    a = _vector(prefill_attn, "prefill_attn")
    n = _vector(n_decode, "n_decode")
    x = _vector(decode_ctx, "decode_ctx")
    t = _times(time_s, "time_s")
    _same_length(c, a, n, x, t)
    if np.any(c <= 0) or np.any(n <= 0):
        raise ValueError("mixed rows need prefill_tokens > 0 and n_decode > 0 (pure rows fit separately)")
    if np.any(a < 0) or np.any(x < 0):
        raise ValueError("prefill_attn and decode_ctx must be >= 0")
    if pure.step_overhead_s > 0:  # the mixed coefficients describe the GPU part of a step
        t = t - pure.step_overhead_s
        if np.any(t <= 0):
            raise ValueError("a measured mixed step is shorter than the profile's step_overhead_s")
    decode, prefill = _mixed_parts(pure, c, a, n, x)
    low = np.maximum(decode, prefill)
    default = np.array(pure.derived_mixed_coefficients())
    # Unit-effect scaling: coefficient j times its largest relative contribution over the rows.
    features = np.column_stack([np.ones_like(c), n, np.ones_like(c), c + n, a, x]) / t[:, None]
    scale = np.max(features, axis=0)
    scale[scale == 0] = 1.0

    def residuals(z: FloatArray) -> FloatArray:
        return (_mixed_form(z / scale, c, a, n, x, low) - t) / t

    best: FloatArray | None = None
    best_cost = math.inf
    for start in _branch_starts(default, c, a, n, x, t, low):
        from scipy.optimize import least_squares  # at use: keeps scipy.optimize out of start-up

        sol = least_squares(residuals, start * scale, bounds=(0.0, np.inf), method="trf", x_scale=1.0)
        if sol.cost < best_cost:
            best, best_cost = np.asarray(sol.x / scale, dtype=np.float64), float(sol.cost)
    assert best is not None
    report = _report("mixed", MIXED_TERMS, best, _mixed_form(best, c, a, n, x, low), t)
    plain_sum = decode + (prefill - pure.decode_per_ctx_token_s * x)  # separate decode and prefill steps
    plain = _report("plain_sum", (), np.zeros(0), plain_sum, t)
    notes = [
        "mixed: steps with both a prompt chunk and decodes, pure coefficients held fixed; plain_sum: the "
        "same steps run as a separate prefill step plus a decode step"
    ]
    if t.size < len(MIXED_TERMS):
        notes.append(
            f"only {t.size} mixed rows for {len(MIXED_TERMS)} coefficients: not all are identifiable"
        )
    return replace(report, reference=plain).with_notes(*notes)
