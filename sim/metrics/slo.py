"""SLO attainment and latency-estimator accuracy, the summary's ``slo`` and ``estimator`` sections.

Both are pure functions of the recorder's columns, like the rest of :mod:`sim.metrics.summary`, and both
follow the latency statistics' population rule: only requests arriving at or after ``warmup_s`` count
(the caller passes that as ``scope``), so a cold start does not decide attainment.

**Attainment.** A request *meets* an SLO when it completed with its latency (TTFT = first token −
arrival, end-to-end = finish − arrival, both from arrival: what the user waits, and what
``router.slo`` bounds) at most the SLO. Two shares are reported:

* ``attainment_<m>`` (the headline): met over every request of the scope whose outcome is known. A
  rejected request has missed it (its user got no answer), so a policy cannot raise attainment by
  refusing slow queries. A request still pending or in flight at a cut-off (``drain: false``) has
  missed the end-to-end SLO when its deadline (arrival + SLO) is at or before the end of the run, and
  is left out otherwise (it might still make it). For TTFT a pending one is judged the same way; one in
  flight is left out, because the recorder keeps first-token times of completed requests only. With
  ``drain: true`` (the default) nothing is unfinished, and the headline is met over completed +
  rejected.
* ``attainment_<m>_of_completed``: met over completed requests only — how fast the served queries
  were, comparable with the latency percentiles, and blind to what the policy refused.

**Estimator accuracy.** The dispatcher records, per served request, the estimator's prediction for the
model it chose (``rec.pred_ttft`` / ``rec.pred_e2e``, NaN when there is none). Over completed
requests of the scope with a finite prediction: the MAPE, mean |predicted − realised| / realised as a
fraction (requests with a zero realised latency are left out of it, not of the bias), and the mean
bias predicted − realised in seconds (positive: the estimator is pessimistic). The caller passes the
realised latencies measured from the origin the predictions use: :mod:`sim.engine.estimate` predicts,
at the routing decision, the time from then on, so the summary measures them from the decision (a
batching window's wait, already spent when the estimate is made, is not the estimator's error).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from sim.metrics.recorder import STATUS_DONE, STATUS_IN_FLIGHT, STATUS_PENDING, STATUS_REJECTED

METRICS = ("ttft", "e2e")


class Spans(Mapping[str, np.ndarray]):
    """Latencies as differences of two recorder columns, ``{name: (start column, end column)}``, computed
    on each access and not kept (the summary reads each a few times; a million-request run would hold
    an (N,) float64 per name otherwise). :meth:`over` gives one over a mask without the (N,) array."""

    def __init__(self, rec: Any, columns: dict[str, tuple[str, str]]) -> None:
        self.rec, self.columns = rec, columns

    def __getitem__(self, name: str) -> np.ndarray:
        start, end = self.columns[name]
        return np.asarray(getattr(self.rec, end) - getattr(self.rec, start))

    def over(self, name: str, mask: np.ndarray) -> np.ndarray:
        """``self[name][mask]``, subtracting only the selected elements (the same floats)."""
        start, end = self.columns[name]
        return np.asarray(getattr(self.rec, end)[mask] - getattr(self.rec, start)[mask])

    def __iter__(self) -> Iterator[str]:
        return iter(self.columns)

    def __len__(self) -> int:
        return len(self.columns)


def judged(
    rec: Any, latency: np.ndarray, slo: float, end_time: float, *, in_flight_known: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(met, missed) per request for one SLO: see the module docstring. ``in_flight_known``: whether a
    request in flight past its deadline has certainly missed (end-to-end: yes; TTFT: unknown)."""
    status = rec.status
    done = status == STATUS_DONE
    with np.errstate(invalid="ignore"):
        met = done & (latency <= slo)
    unfinished = status == STATUS_PENDING
    if in_flight_known:
        unfinished = unfinished | (status == STATUS_IN_FLIGHT)
    expired = rec.arrival + slo <= end_time
    missed = (done & ~met) | (status == STATUS_REJECTED) | (unfinished & expired)
    return met, missed


def _share(hits: np.ndarray, pool: np.ndarray) -> float | None:
    count = int(pool.sum())
    return float((hits & pool).sum() / count) if count else None


def slo_section(
    rec: Any, scope: np.ndarray, latency: Mapping[str, np.ndarray], targets: dict[str, float | None], end_time: float
) -> dict[str, Any]:
    """``{ttft_s, e2e_s, attainment_ttft, attainment_e2e, attainment_ttft_of_completed,
    attainment_e2e_of_completed}`` over the requests ``scope``; every share None for an unset SLO or an
    empty population. ``latency`` and ``targets`` are keyed by ``"ttft"`` / ``"e2e"``."""
    out: dict[str, Any] = {}
    done = scope & (rec.status == STATUS_DONE)
    for m in METRICS:
        slo = targets.get(m)
        out[f"{m}_s"] = None if slo is None else float(slo)
    for m in METRICS:
        slo = targets.get(m)
        headline = completed = None
        if slo is not None:
            met, missed = judged(rec, latency[m], float(slo), end_time, in_flight_known=m == "e2e")
            headline = _share(met, scope & (met | missed))
            completed = _share(met, done)
        out[f"attainment_{m}"] = headline
        out[f"attainment_{m}_of_completed"] = completed
    return out


def estimator_section(rec: Any, scope: np.ndarray, latency: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """``{e2e_mape, e2e_bias_s, ttft_mape, ttft_bias_s, n}`` over the completed requests ``scope`` with a
    prediction, against the realised ``latency`` (keyed ``"ttft"`` / ``"e2e"``, from the predictions'
    origin) (``n``: those with an end-to-end one); None without predictions (or without the
    recorder's prediction arrays: runs of a simulator that records none). Only the pairs are widened to
    float64 (a run without estimates, all NaN, copies nothing)."""
    out: dict[str, Any] = {}
    n = 0
    for m in ("e2e", "ttft"):
        pred = getattr(rec, f"pred_{m}", None)
        mape = bias = None
        if pred is not None:
            pred = np.asarray(pred)
            pairs = scope & (rec.status == STATUS_DONE) & np.isfinite(pred)
            err = real = np.zeros(0)
            if pairs.any():
                real = latency[m]
                pairs &= np.isfinite(real)
                err = pred[pairs].astype(np.float64) - real[pairs]
            if m == "e2e":
                n = int(pairs.sum())
            if err.size:
                bias = float(err.mean())
                positive = real[pairs] > 0
                mape = float(np.mean(np.abs(err[positive]) / real[pairs][positive])) if positive.any() else None
        out[f"{m}_mape"], out[f"{m}_bias_s"] = mape, bias
    out["n"] = n
    return out
