"""Calibrate latency profiles from a measurement CSV: ``calibrate_file`` fits, ``format_report`` prints.

``calibrate_file`` recognises the table format (:mod:`sim.profiles.tables`), fits every
(model, hardware, TP, framework) group with :mod:`sim.profiles.fit`, and returns a report object;
``format_report`` turns it into text and does nothing else (no I/O), so the CLI (``llmsim calibrate``) and
tests share it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from sim.engine.latency import MIXED_TERMS, LatencyProfile
from sim.errors import DataError, warn_input
from sim.profiles.builtin import COEFFICIENTS, list_builtin, prefill_prior
from sim.profiles.fit import FitReport, fit_decode, fit_end_to_end, fit_mixed, fit_prefill, profile_from
from sim.profiles.hardware import model_size_from_name
from sim.profiles.tables import Group, read_groups


@dataclass(frozen=True)
class GroupCalibration:
    """Fit of one group. ``profile`` is None when filtering left no rows to fit."""

    model: str
    hardware: str
    tp: int
    framework: str
    rows_total: int
    profile: LatencyProfile | None
    fits: tuple[FitReport, ...]
    notes: tuple[str, ...]


@dataclass(frozen=True)
class CalibrationReport:
    path: str
    format: str
    rows: int
    groups: tuple[GroupCalibration, ...]


def _calibrate_group(g: Group) -> GroupCalibration:
    notes = list(g.notes)
    fits: list[FitReport] = []
    prefill: FitReport | LatencyProfile | None = None
    decode: FitReport | None = None
    if g.prefill is not None:
        prefill = fit_prefill(*g.prefill, attn=g.prefill_attn)
        fits.append(prefill)
    if g.decode is not None:
        decode = fit_decode(*g.decode)
        fits.append(decode)
    if g.e2e is not None:
        size = model_size_from_name(g.model)
        prior = prefill_prior(list_builtin(), size, g.hardware, g.tp) if size is not None else None
        if prior is not None:
            prefill, how = prior
            notes.append(how + " (prefill is not identifiable from end-to-end latency)")
        decode = fit_end_to_end(*g.e2e, prefill=prior[0] if prior is not None else None)
        fits.append(decode)
    fitted = bool(fits)
    if not fitted:
        notes.append("no rows left to fit")
    else:
        if g.prefill is None and g.e2e is None:
            notes.append("no prefill rows: prefill coefficients left at 0")
        if g.decode is None and g.e2e is None:
            notes.append("no decode rows: decode coefficients left at 0")
    profile = profile_from(prefill, decode) if fitted else None
    if g.mixed is not None:
        if g.prefill is None or g.decode is None or profile is None:
            notes.append(
                "mixed rows not fitted: they need pure prefill rows (decode_seqs = 0) and pure decode rows "
                "(chunk_tokens = 0) in the same group, whose coefficients the mixed fit holds fixed"
            )
        else:
            mixed = fit_mixed(*g.mixed, pure=profile)
            fits.append(mixed)
            given: dict[str, Any] = dict(mixed.coefficients)
            profile = replace(profile, **given)
    return GroupCalibration(
        model=g.model,
        hardware=g.hardware,
        tp=g.tp,
        framework=g.framework,
        rows_total=g.rows_total,
        profile=profile,
        fits=tuple(fits),
        notes=tuple(notes),
    )


def _label(g: Group | GroupCalibration) -> str:
    """The group as the report heads it: ``model on GPU, tp=N[, framework]``."""
    return f"{g.model} on {g.hardware}, tp={g.tp}" + (f", {g.framework}" if g.framework else "")


def _fit_group(g: Group, path: str | Path) -> GroupCalibration:
    """:func:`_calibrate_group` with numpy's floating-point warnings kept off the console and anything
    non-finite refused: the table's ranges are checked (:mod:`sim.profiles.tables`), so an inf or nan
    here is a fit that failed, and it must not reach a profile or the engine check."""
    try:
        with np.errstate(all="ignore"):
            cal = _calibrate_group(g)
    except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
        raise DataError(f"cannot fit these rows: {exc}", file=path, where=_label(g)) from None
    for f in cal.fits:
        bad = [k for k, v in f.coefficients.items() if not math.isfinite(v)]
        if bad or not all(math.isfinite(x) for x in (f.mape_pct, f.max_ape_pct)):
            what = f"coefficient(s) {', '.join(bad)}" if bad else "errors"
            raise DataError(f"the {f.kind} fit gave non-finite {what}; check the table's units and values",
                            file=path, where=_label(g))
    _warn_underdetermined(cal, path)
    return cal


def _warn_underdetermined(cal: GroupCalibration, path: str | Path) -> None:
    """Fewer rows than coefficients: any such fit matches its rows exactly (MAPE 0), so the error says
    nothing and the coefficients' split is arbitrary. Warned, not refused, as the mixed fit notes it (that
    note is in its report, so mixed fits are left out here)."""
    for f in cal.fits:
        if f.kind != "mixed" and f.rows < len(f.coefficients):
            warn_input(f"only {f.rows} {f.kind} row(s) for {len(f.coefficients)} coefficients: the fit cannot "
                       "determine them (it matches these rows exactly whatever the split); measure more "
                       "batch sizes and lengths", file=path, where=_label(cal))


def calibrate_file(path: str | Path) -> CalibrationReport:
    """Fit latency profiles to every group of a measurement CSV.

    Accepts the Splitwise perf-model table, the LLM-Inference-Bench results table, the canonical
    format (``kind, prompt_tokens | batch_size, context_tokens, time_s`` [, model, gpu, tp]), the
    iteration format (``phase, batch, ctx_per_seq, total_ctx, tokens, ms`` [, model, gpu, tp], e.g. the
    H200 table) or the mixed-step format (``chunk_tokens, chunk_prefix, decode_seqs, decode_ctx_per_seq,
    time_s | ms`` [, model, gpu, tp]); see :mod:`sim.profiles.tables`. Raises
    :class:`~sim.errors.DataError` naming the file, line and column for a missing file, a missing column
    or a bad value, and naming the file when filtering left no group anything to fit (a calibration that
    produced no profile is a failure, not a report).
    """
    table, groups = read_groups(path)
    fitted = tuple(_fit_group(g, path) for g in groups)
    if not any(g.profile is not None for g in fitted):
        why = sorted({n for g in fitted for n in g.notes if n != "no rows left to fit"})
        raise DataError(
            "no group has rows left to fit, so no profile was produced"
            + (f" ({'; '.join(why)})" if why else ""),
            file=path,
        )
    return CalibrationReport(
        path=str(path),
        format=table.format,
        rows=len(table.rows),
        groups=fitted,
    )


def _fmt_r2(r2: float) -> str:
    return "n/a" if r2 != r2 else f"{r2:.3f}"


def _fit_line(label: str, f: FitReport) -> str:
    return (
        f"{label:<16} rows {f.rows:>4}  R² {_fmt_r2(f.r2):>6}  MAPE {f.mape_pct:6.2f}%  "
        f"p90 {f.p90_ape_pct:6.2f}%  max {f.max_ape_pct:6.2f}%"
    )


def format_report(report: CalibrationReport) -> str:
    """Human-readable report: per group, the fitted coefficients (in seconds, ready for a scenario's
    ``latency:`` block) and each fit's R², mean / p90 / max relative error and row count; a mixed-step
    fit is followed by the plain sum (separate prefill and decode steps) on the same rows. Pure: no I/O."""
    lines = [
        f"Calibration of {report.path} (format: {report.format}, {report.rows} rows, {len(report.groups)} groups)",
    ]
    width = max(len(c) for c in COEFFICIENTS + MIXED_TERMS)
    for g in report.groups:
        head = f"{g.model} on {g.hardware}, tp={g.tp}"
        if g.framework:
            head += f", {g.framework}"
        lines += ["", f"{head} ({g.rows_total} rows)"]
        for f in g.fits:
            lines.append(_fit_line(f"  fit {f.kind}", f))
            if f.reference is not None:
                lines.append(_fit_line(f"    vs {f.reference.kind}", f.reference))
        if g.profile is not None:
            mixed = any(f.kind == "mixed" for f in g.fits)
            for c in COEFFICIENTS + (MIXED_TERMS if mixed else ()):
                lines.append(f"    {c:<{width}}: {getattr(g.profile, c):.6g}")
        for note in (*g.notes, *(n for f in g.fits for n in f.notes)):
            lines.append(f"  note: {note}")
    return "\n".join(lines)
