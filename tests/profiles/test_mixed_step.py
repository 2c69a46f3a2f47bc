"""Mixed (chunked-prefill) step time: the pure-step contract, monotonicity, the fit, and calibrate.

The contract checked here is what the paged engine's closed forms rely on: a step with no prompt chunk
is exactly today's decode iteration, a step with only a whole prompt is today's prefill.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from sim.cli import app
from sim.engine.latency import MIXED_TERMS, LatencyProfile
from sim.errors import DataError
from sim.profiles import calibrate_file, format_report
from sim.profiles.fit import chunk_attention, fit_mixed, fit_prefill, mixed_step_times
from sim.profiles.hardware import scale_profile

MIXED_CSV = (
    Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "gpu" / "h200_torch_mixed_step_times.csv"
)
needs_mixed_data = pytest.mark.skipif(not MIXED_CSV.exists(), reason="../shared/data/gpu absent")

PURE = LatencyProfile(
    prefill_base_s=0.012,
    prefill_per_token_s=9.0e-5,
    prefill_per_token2_s=2.5e-9,
    decode_base_s=0.017,
    decode_per_seq_s=6.0e-5,
    decode_per_ctx_token_s=5.0e-8,
)
MIXED = dict(
    mixed_base_s=0.016,
    mixed_per_seq_s=9.0e-5,
    mixed_compute_base_s=0.008,
    mixed_per_token_s=1.0e-4,
    mixed_attn_s=4.0e-9,
    mixed_per_ctx_token_s=6.0e-8,
)

coef = st.floats(min_value=0.0, max_value=1e-2, allow_nan=False, allow_infinity=False)
tiny = st.floats(min_value=0.0, max_value=1e-7, allow_nan=False, allow_infinity=False)


@st.composite
def profiles(draw: Any) -> LatencyProfile:
    """Random non-negative pure coefficients; each mixed coefficient either given or left to derive."""
    pure = LatencyProfile(
        prefill_base_s=draw(coef),
        prefill_per_token_s=draw(tiny),
        prefill_per_token2_s=draw(tiny),
        decode_base_s=draw(coef),
        decode_per_seq_s=draw(tiny),
        decode_per_ctx_token_s=draw(tiny),
    )
    given_mixed = {
        name: draw(st.none() | (coef if name.endswith("base_s") else tiny)) for name in MIXED_TERMS
    }
    overhead = draw(st.just(0.0) | coef)  # the identities below must hold with a per-step overhead too
    return replace(pure, **given_mixed, step_overhead_s=overhead)


tokens = st.integers(min_value=0, max_value=100_000)
seqs = st.integers(min_value=0, max_value=1024)


# ----------------------------------------------------------------------------- the pure-step contract
@settings(max_examples=300, deadline=None)
@given(profiles(), seqs, st.integers(min_value=0, max_value=10_000_000))
def test_pure_decode_step_is_exactly_the_decode_iteration(prof: LatencyProfile, n: int, ctx: int) -> None:
    assert prof.step_time(0, 0.0, n, ctx) == prof.iteration_time(n, ctx)


@settings(max_examples=300, deadline=None)
@given(profiles(), st.integers(min_value=1, max_value=200_000))
def test_pure_whole_prompt_step_is_the_prefill(prof: LatencyProfile, p: int) -> None:
    assert prof.step_time(p, p * p / 2, 0, 0) == pytest.approx(prof.prefill_time(p), rel=1e-12, abs=0.0)


@st.composite
def steps(draw: Any) -> tuple[int, float, int, int]:
    """A non-empty step: chunk tokens C, attention work A ≥ C²/2 (chunks may follow cached tokens), decodes n
    holding ctx ≥ n tokens."""
    c, n = draw(tokens), draw(seqs)
    if c == 0 and n == 0:
        n = 1
    prefix = draw(st.integers(min_value=0, max_value=100_000))
    ctx = n * draw(st.integers(min_value=1, max_value=20_000))
    return c, c * (prefix + c / 2), n, ctx


@settings(max_examples=400, deadline=None)
@given(profiles(), steps(), st.integers(min_value=0, max_value=3), st.integers(min_value=1, max_value=5000))
def test_step_time_is_monotone_in_each_argument(
    prof: LatencyProfile, step: tuple[int, float, int, int], which: int, inc: int
) -> None:
    before = list(step)
    after = list(step)
    after[which] += inc  # one argument grows, the others stay
    t0, t1 = prof.step_time(*before), prof.step_time(*after)
    assert math.isfinite(t0) and t0 >= 0.0
    assert t1 >= t0


@settings(max_examples=200, deadline=None)
@given(profiles(), st.integers(min_value=1, max_value=50_000), st.integers(min_value=1, max_value=512))
def test_mixed_step_costs_at_least_each_of_its_parts(prof: LatencyProfile, c: int, n: int) -> None:
    """Across the pure/mixed boundary: adding decodes to a chunk, or a chunk to decodes, never saves time."""
    a, ctx = c * c / 2, n * 1000
    mixed = prof.step_time(c, a, n, ctx)
    assert mixed >= prof.step_time(0, 0.0, n, ctx)
    assert mixed >= prof.step_time(c, a, 0, 0)


@settings(max_examples=300, deadline=None)
@given(profiles(), steps(), st.floats(min_value=0.0, max_value=0.05, allow_nan=False))
def test_step_overhead_is_added_exactly_once_to_every_step(
    prof: LatencyProfile, step: tuple[int, float, int, int], overhead: float
) -> None:
    """prefill_time, iteration_time and step_time (pure or mixed) each carry step_overhead_s once."""
    bare, with_o = replace(prof, step_overhead_s=0.0), replace(prof, step_overhead_s=overhead)
    c, a, n, ctx = step
    assert with_o.step_time(c, a, n, ctx) - bare.step_time(c, a, n, ctx) == pytest.approx(overhead, abs=1e-12)
    assert with_o.iteration_time(n, ctx) - bare.iteration_time(n, ctx) == pytest.approx(overhead, abs=1e-12)
    assert with_o.prefill_time(c) - bare.prefill_time(c) == pytest.approx(overhead, abs=1e-12)


def test_step_overhead_by_hand_and_refused_when_negative() -> None:
    prof = replace(PURE, step_overhead_s=0.004)
    assert prof.iteration_time(10, 1000) == pytest.approx(0.017 + 6.0e-5 * 10 + 5.0e-8 * 1000 + 0.004)
    assert prof.prefill_time(100) == pytest.approx(0.012 + 9.0e-5 * 100 + 2.5e-9 * 100**2 + 0.004)
    # mixed (default coefficients): roofline max of the two branches, attention, KV reads, overhead once
    c, n, ctx = 512, 8, 8000
    mixed = max(0.017 + 6.0e-5 * n, 0.012 + 9.0e-5 * (c + n)) + 5.0e-9 * c * c / 2 + 5.0e-8 * ctx
    assert prof.step_time(c, c * c / 2, n, ctx) == pytest.approx(mixed + 0.004)
    for bad in (-1e-3, math.inf, math.nan):
        with pytest.raises(ValueError, match="step_overhead_s"):
            replace(PURE, step_overhead_s=bad)


def test_scaling_leaves_the_step_overhead_alone() -> None:
    """CPU time per step does not change with params, TP or GPU speed."""
    scaled = scale_profile(replace(PURE, step_overhead_s=0.002), size_ratio=3.0, tp_ratio=0.5,
                           compute_ratio=0.3, bandwidth_ratio=0.7)
    assert scaled.step_overhead_s == 0.002
    assert scaled.decode_base_s == pytest.approx(PURE.decode_base_s * 3.0 * 0.5 * 0.7)


def test_fit_mixed_with_an_overhead_recovers_the_same_coefficients() -> None:
    """Mixed coefficients describe the GPU part: fitting times that include an overhead, with a pure profile
    that carries it, gives the coefficients fitted without it."""
    c, a, n, x = _grid()
    truth = replace(PURE, **MIXED)
    t = mixed_step_times(truth, c, a, n, x)
    plain = fit_mixed(c, a, n, x, t, pure=PURE)
    shifted = fit_mixed(c, a, n, x, t + 0.003, pure=replace(PURE, step_overhead_s=0.003))
    for name in MIXED_TERMS:
        assert shifted.coefficients[name] == pytest.approx(plain.coefficients[name], rel=1e-6, abs=1e-12), name
    prof = replace(PURE, **dict(shifted.coefficients), step_overhead_s=0.003)  # type: ignore[arg-type]
    np.testing.assert_allclose(mixed_step_times(prof, c, a, n, x), t + 0.003, rtol=1e-3)


def test_defaults_are_derived_from_the_pure_coefficients() -> None:
    assert PURE.mixed_coefficients() == {
        "mixed_base_s": PURE.decode_base_s,
        "mixed_per_seq_s": PURE.decode_per_seq_s,
        "mixed_compute_base_s": PURE.prefill_base_s,
        "mixed_per_token_s": PURE.prefill_per_token_s,
        "mixed_attn_s": 2 * PURE.prefill_per_token2_s,
        "mixed_per_ctx_token_s": PURE.decode_per_ctx_token_s,
    }
    assert replace(PURE, mixed_per_token_s=1.0).mixed_coefficients()["mixed_per_token_s"] == 1.0


def test_default_mixed_step_by_hand() -> None:
    """Hand-computed roofline with the derived coefficients.

    Compute-bound: 2,048 chunk tokens + 16 decodes → arithmetic branch 0.012 + 9e-5·2064 = 0.19776 s beats
    the weight-read branch 0.017 + 6e-5·16 = 0.01796 s; attention 5e-9·2048·1024 = 0.01048576 s, decode
    context 5e-8·32,000 = 0.0016 s. The 16 decodes add 9e-5·16 + 0.0016 = 3.04 ms where a separate decode
    step would take 0.01796 + 0.0016 = 19.56 ms (they ride along on the chunk's weight reads).
    Memory-bound (prefill_per_token_s = 1e-5): 8 chunk tokens + 256 decodes → the weight-read branch
    0.017 + 6e-5·256 = 0.03236 s beats the arithmetic one 0.012 + 1e-5·264 = 0.01464 s, so the chunk costs
    only its attention.
    """
    c, n = 2048, 16
    got = PURE.step_time(c, c * c / 2, n, 32_000)
    assert got == pytest.approx(0.012 + 9e-5 * 2064 + 5e-9 * 2048 * 1024 + 5e-8 * 32_000, rel=1e-12)
    assert got - PURE.step_time(c, c * c / 2, 0, 0) == pytest.approx(9e-5 * 16 + 5e-8 * 32_000, rel=1e-9)
    # a short chunk on a decode batch: the weight-read branch wins when decodes dominate and the chunk is small
    small = replace(PURE, prefill_per_token_s=1e-5)
    want = max(0.017 + 6e-5 * 256, 0.012 + 1e-5 * (8 + 256)) + 5e-9 * 32 + 5e-8 * 256_000
    assert small.step_time(8, 32.0, 256, 256_000) == pytest.approx(want, rel=1e-12)
    assert want == pytest.approx(0.017 + 6e-5 * 256 + 5e-9 * 32 + 5e-8 * 256_000, rel=1e-12)


def test_outer_bound_binds_only_for_coefficients_below_the_parts() -> None:
    """Given mixed coefficients far below the pure ones, a mixed step still costs its larger part."""
    cheap = replace(PURE, **dict.fromkeys(MIXED_TERMS, 0.0))
    c, n, ctx = 512, 32, 64_000
    assert cheap.step_time(c, c * c / 2, n, ctx) == max(
        PURE.iteration_time(n, ctx), PURE.step_time(c, c * c / 2, 0, 0) + PURE.decode_per_ctx_token_s * ctx
    )


def test_negative_or_non_finite_mixed_coefficient_is_refused() -> None:
    with pytest.raises(ValueError, match="mixed_attn_s"):
        replace(PURE, mixed_attn_s=-1e-9)
    with pytest.raises(ValueError, match="mixed_base_s"):
        replace(PURE, mixed_base_s=float("nan"))


def test_vectorised_step_times_match_the_scalar_method() -> None:
    rng = np.random.default_rng(7)
    c = rng.integers(0, 5000, 400).astype(float)
    n = rng.integers(0, 300, 400).astype(float)
    c[:50], n[50:100] = 0, 0
    n[(c == 0) & (n == 0)] = 1
    a = chunk_attention(c, rng.integers(0, 8000, 400))
    x = n * rng.integers(1, 9000, 400)
    for prof in (
        PURE,
        replace(PURE, **MIXED),
        replace(PURE, **dict.fromkeys(MIXED_TERMS, 0.0)),
        replace(PURE, **MIXED, step_overhead_s=0.0025),
    ):
        got = mixed_step_times(prof, c, a, n, x)
        want = [prof.step_time(int(ci), float(ai), int(ni), int(xi)) for ci, ai, ni, xi in zip(c, a, n, x, strict=True)]
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=0.0)


def test_scaling_keeps_derived_mixed_coefficients_derived() -> None:
    derived = scale_profile(PURE, size_ratio=2.0, compute_ratio=0.5, bandwidth_ratio=0.25)
    assert derived.mixed_base_s is None and derived.mixed_coefficients()["mixed_base_s"] == pytest.approx(
        PURE.decode_base_s * 2 * 0.25
    )
    given_ = scale_profile(replace(PURE, **MIXED), size_ratio=2.0, compute_ratio=0.5, bandwidth_ratio=0.25)
    assert given_.mixed_per_token_s == pytest.approx(MIXED["mixed_per_token_s"] * 2 * 0.5)
    assert given_.mixed_compute_base_s == pytest.approx(MIXED["mixed_compute_base_s"] * 2 * 0.25)


# ----------------------------------------------------------------------------- fitting
def _grid() -> tuple[np.ndarray, ...]:
    rows = [
        (c, q, n, per_seq)
        for c in (16, 64, 256, 1024, 4096)
        for q in (0, 3000)
        for n in (1, 8, 64, 256)
        for per_seq in (300, 4000)
    ]
    c, q, n, per_seq = (np.array(col, dtype=float) for col in zip(*rows, strict=True))
    return c, chunk_attention(c, q), n, n * per_seq


@pytest.mark.parametrize(
    "mixed",
    [
        MIXED,
        dict(MIXED, mixed_per_seq_s=2.0e-4, mixed_compute_base_s=0.002, mixed_per_token_s=1.2e-4),
        dict(MIXED, mixed_base_s=0.03, mixed_attn_s=5.0e-9, mixed_per_ctx_token_s=1.0e-7),
    ],
)
def test_fit_recovers_known_mixed_coefficients(mixed: dict[str, float]) -> None:
    truth = replace(PURE, **mixed)
    c, a, n, x = _grid()
    t = mixed_step_times(truth, c, a, n, x)
    # the data must exercise both branches of the roofline where it sets the time (not the pure parts'
    # lower bound), else the fit could not identify them
    w = mixed["mixed_base_s"] + mixed["mixed_per_seq_s"] * n
    b = mixed["mixed_compute_base_s"] + mixed["mixed_per_token_s"] * (c + n)
    roof = np.maximum(w, b) + mixed["mixed_attn_s"] * a + mixed["mixed_per_ctx_token_s"] * x
    parts = [
        max(PURE.iteration_time(int(ni), int(xi)), PURE.step_time(int(ci), ai, 0, int(xi)))
        for ci, ai, ni, xi in zip(c, a, n, x, strict=True)
    ]
    sets = roof > np.array(parts)
    assert (sets & (w > b)).sum() >= 8 and (sets & (b > w)).sum() >= 8
    rep = fit_mixed(c, a, n, x, t, pure=PURE)
    for name in MIXED_TERMS:
        assert rep.coefficients[name] == pytest.approx(mixed[name], rel=1e-6, abs=1e-15), name
    assert rep.max_ape_pct < 1e-6
    assert rep.reference is not None and rep.reference.mape_pct > 1.0  # the plain sum is a different model


def test_fit_mixed_rejects_pure_rows() -> None:
    with pytest.raises(ValueError, match="mixed rows"):
        fit_mixed([0, 10], [0, 50], [4, 4], [400, 400], [0.02, 0.03], pure=PURE)


def test_chunk_prefill_fit_with_attention_recovers_pure_coefficients() -> None:
    c = np.array([64, 256, 1024, 4096, 256, 1024, 4096, 128], dtype=float)
    q = np.array([0, 0, 0, 0, 8000, 8000, 2000, 30000], dtype=float)
    a = chunk_attention(c, q)
    t = [PURE.step_time(int(ci), float(ai), 0, 0) for ci, ai in zip(c, a, strict=True)]
    rep = fit_prefill(c, t, attn=a)
    for name in ("prefill_base_s", "prefill_per_token_s", "prefill_per_token2_s"):
        assert rep.coefficients[name] == pytest.approx(getattr(PURE, name), rel=1e-6), name


@needs_mixed_data
@pytest.mark.shared_data
def test_fit_on_the_h200_mixed_table_beats_the_plain_sum() -> None:
    rep = calibrate_file(MIXED_CSV)
    assert rep.format == "mixed_step" and len(rep.groups) == 2
    for g in rep.groups:
        (mixed,) = [f for f in g.fits if f.kind == "mixed"]
        plain = mixed.reference
        assert plain is not None and mixed.rows == plain.rows >= 16
        assert mixed.mape_pct < plain.mape_pct, g.model
        assert mixed.max_ape_pct < plain.max_ape_pct, g.model
        assert g.profile is not None
        assert {k: getattr(g.profile, k) for k in MIXED_TERMS} == dict(mixed.coefficients)


# ----------------------------------------------------------------------------- calibrate
def _write_mixed_csv(path: Path, prof: LatencyProfile, *, time_col: str = "ms") -> None:
    factor = 1000.0 if time_col == "ms" else 1.0
    lines = [f"model,gpu,chunk_tokens,chunk_prefix,decode_seqs,decode_ctx_per_seq,{time_col}"]
    for c in (0, 16, 64, 256, 1024, 4096):  # the mixed rows are _grid(), where the fit is identifiable
        for q in (0, 3000):
            for n in (0, 1, 8, 64, 256):
                for per_seq in (300, 4000):
                    if c == 0 and n == 0:
                        continue
                    t = prof.step_time(c, c * (q + c / 2), n, n * per_seq) * factor
                    lines.append(f"m8,H100,{c},{q},{n},{per_seq},{t!r}")
    path.write_text("\n".join(lines) + "\n")


def test_calibrate_mixed_csv_recovers_every_coefficient(tmp_path: Path) -> None:
    truth = replace(PURE, **MIXED)
    f = tmp_path / "mixed.csv"
    _write_mixed_csv(f, truth, time_col="time_s")
    (g,) = calibrate_file(f).groups
    assert g.profile is not None and g.hardware == "H100-80GB"
    for name in (*MIXED_TERMS, "prefill_per_token_s", "decode_per_seq_s", "decode_per_ctx_token_s"):
        assert getattr(g.profile, name) == pytest.approx(getattr(truth, name), rel=1e-6), name
    assert [f.kind for f in g.fits] == ["prefill", "decode", "mixed"]


def test_calibrate_cli_prints_the_mixed_error_table(tmp_path: Path) -> None:
    f = tmp_path / "mixed.csv"
    _write_mixed_csv(f, replace(PURE, **MIXED))
    result = CliRunner().invoke(app, ["calibrate", str(f)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "format: mixed_step" in out
    mixed_line = next(line for line in out.splitlines() if line.strip().startswith("fit mixed"))
    plain_line = next(line for line in out.splitlines() if "vs plain_sum" in line)
    for line in (mixed_line, plain_line):
        assert "MAPE" in line and "p90" in line and "max" in line
    assert "mixed_per_token_s" in out and "mixed_attn_s" in out


@needs_mixed_data
@pytest.mark.shared_data
def test_calibrate_cli_on_the_h200_mixed_table() -> None:
    result = CliRunner().invoke(app, ["calibrate", str(MIXED_CSV)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.output.count("vs plain_sum") == 2 and result.output.count("fit mixed") == 2


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ("64,0,4,1000,12.5\n64,0,four,1000,13.0\n", "line 3"),
        ("64,0,4,1000,12.5\n0,0,0,1000,3.0\n", "line 3"),
        ("64,0,4,1000,12.5\n128,0,4,1000,-1\n", "line 3"),
        ("64,-5,4,1000,12.5\n", "line 2"),
    ],
)
def test_malformed_mixed_csv_exits_2_naming_file_and_line(tmp_path: Path, body: str, where: str) -> None:
    f = tmp_path / "bad_mixed.csv"
    f.write_text("chunk_tokens,chunk_prefix,decode_seqs,decode_ctx_per_seq,ms\n" + body)
    result = CliRunner().invoke(app, ["calibrate", str(f)], catch_exceptions=False)
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "Traceback" not in text and "bad_mixed.csv" in text and where in text, text


def test_mixed_csv_needs_exactly_one_time_column(tmp_path: Path) -> None:
    f = tmp_path / "m.csv"
    f.write_text("chunk_tokens,chunk_prefix,decode_seqs,decode_ctx_per_seq\n64,0,4,1000\n")
    with pytest.raises(DataError, match="'time_s'") as info:
        calibrate_file(f)
    assert info.value.where == "line 1"
    f.write_text("chunk_tokens,chunk_prefix,decode_seqs,decode_ctx_per_seq,ms,time_s\n64,0,4,1000,1,0.001\n")
    with pytest.raises(DataError, match="both"):
        calibrate_file(f)


def test_mixed_rows_without_pure_rows_are_reported_not_fitted(tmp_path: Path) -> None:
    f = tmp_path / "m.csv"
    f.write_text("chunk_tokens,chunk_prefix,decode_seqs,decode_ctx_per_seq,ms\n64,0,4,1000,12\n0,0,8,500,9\n")
    (g,) = calibrate_file(f).groups
    assert [fit.kind for fit in g.fits] == ["decode"]
    assert any("mixed rows not fitted" in n for n in g.notes)
    assert "mixed rows not fitted" in format_report(calibrate_file(f))
