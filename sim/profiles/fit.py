"""Fit :class:`~sim.engine.latency.LatencyProfile` coefficients to measurements.

Three kinds of measurement rows, each a linear function of (some of) the six coefficients:

* **prefill** rows — P prompt tokens prefilled together take ``t = a + b·P + c·P²``
  (:func:`fit_prefill`);
* **decode** rows — one iteration with n sequences holding ctx context tokens in all takes
  ``t = d0 + ds·n + dc·ctx`` (:func:`fit_decode`);
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
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import nnls

from sim.engine.latency import LatencyProfile

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
    solution, _ = nnls(weighted / scale, target / measured, maxiter=50 * design.shape[1])
    return np.asarray(solution / scale, dtype=np.float64)


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
    )


def fit_prefill(prompt_tokens: ArrayLike, time_s: ArrayLike) -> FitReport:
    """Fit ``prefill_base_s + prefill_per_token_s·P + prefill_per_token2_s·P²`` to (P, seconds) rows.

    P is the total prompt tokens prefilled together (batch size × prompt length for a batch of equal
    prompts), which is how the engine calls :meth:`LatencyProfile.prefill_time`.
    """
    p = _vector(prompt_tokens, "prompt_tokens")
    t = _times(time_s, "time_s")
    _same_length(p, t)
    design = np.column_stack([np.ones_like(p), p, p * p])
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
) -> FitReport:
    """Fit the decode coefficients to end-to-end latencies of batches run to completion.

    Model (see the module docstring for why it is exact under the engine's linear iteration cost)::

        latency = prefill(n·L_in) + (L_out − 1)·(d0 + ds·n) + dc·n·(L_out − 1)·(L_in + L_out/2)

    ``prefill`` supplies the prefill part, which end-to-end rows cannot identify; None means zero, i.e. the
    prefill work is folded into the decode coefficients (noted in the report). R² and MAPE are on the
    end-to-end latency, the measured quantity.
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
    fixed = (
        pre.prefill_base_s
        + pre.prefill_per_token_s * total_prompt
        + pre.prefill_per_token2_s * total_prompt**2
    )
    iters = lout - 1.0
    design = np.column_stack([iters, iters * n, iters * n * (lin + lout / 2.0)])
    coef = nnls_relative(design, y - fixed, y)
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
