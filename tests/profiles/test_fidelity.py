"""Tests of sim.profiles.fidelity and benchmarks/fidelity.py.

The harness is checked against theory: tables generated from a known LatencyProfile by the closed forms of
a static batch (prefill of the whole batch, then decode iterations whose context grows by one token per
sequence) must come back with ~0 error when run through the engine with that profile, and with exactly
the analytically expected error when run with a perturbed one. That proves the harness measures what the
engine does (the right requests, the right columns, the right batch semantics) rather than re-evaluating
a formula of its own.
"""

from __future__ import annotations

import csv
import importlib.util
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sim.config.checks import kv_capacity_tokens
from sim.engine.latency import LatencyProfile
from sim.errors import DataError
from sim.profiles import calibrate_file, list_builtin
from sim.profiles.fidelity import (
    Batch,
    MeasuredSet,
    Measurement,
    calibration_fidelity,
    covers,
    entry_model_keys,
    evaluate,
    format_calibration_fidelity,
    format_fidelity,
    harness,
    is_training,
    model_key,
    profile_target,
    read_measurements,
)
from sim.profiles.tables import FORMATS

ROOT = Path(__file__).resolve().parents[2]
GPU_DIR = ROOT.parent / "shared" / "data" / "gpu"
_needs_shared = pytest.mark.skipif(
    not (GPU_DIR / "llm_inference_bench_all_results.csv").exists(), reason="shared/data/gpu absent"
)

P = LatencyProfile(
    prefill_base_s=0.02,
    prefill_per_token_s=1.5e-4,
    prefill_per_token2_s=2e-9,
    decode_base_s=0.03,
    decode_per_seq_s=2e-4,
    decode_per_ctx_token_s=4e-7,
)
CONFIGS = [(prompt, n, g) for prompt in (128, 1024) for n in (1, 4, 16) for g in (2, 33, 128)]


def mean_step(p: LatencyProfile, n: int, prompt: int, g: int) -> float:
    """Mean of the g-1 decode iterations: at the k-th each sequence holds prompt + k tokens (mean g/2)."""
    return p.iteration_time(n, int(n * prompt)) + p.decode_per_ctx_token_s * n * g / 2.0


def e2e(p: LatencyProfile, n: int, prompt: int, g: int) -> float:
    return p.prefill_time(n * prompt) + (g - 1) * mean_step(p, n, prompt, g)


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def splitwise_table(path: Path, p: LatencyProfile) -> Path:
    header = list(FORMATS["splitwise"])
    rows = [
        [
            "llama2-70b",
            "h100-80gb",
            prompt,
            n,
            g,
            1e3 * p.prefill_time(n * prompt),
            1e3 * mean_step(p, n, prompt, g),
            1e3 * e2e(p, n, prompt, g),
            4,
        ]
        for prompt, n, g in CONFIGS
    ]
    return write_csv(path, header, rows)


def run_table(path: Path, profile: LatencyProfile, scheduler: str = "reserve") -> Any:
    (mset,) = read_measurements(path)
    with harness(scheduler) as h:
        target = profile_target(profile, mset.model, mset.gpu, mset.tp)
        return evaluate(h, target, mset, entry="test", source="test", training=False)


def test_known_profile_through_the_engine_gives_zero_error(tmp_path: Path) -> None:
    row = run_table(splitwise_table(tmp_path / "sw.csv", P), P)
    assert row.rows == len(CONFIGS) and row.waves == 0 and row.unserved == 0
    assert set(row.errors) == {"ttft", "step", "e2e"}
    for metric, stats in row.errors.items():
        assert stats.max_pct < 1e-6, (metric, stats)


def test_perturbed_profile_gives_the_expected_error(tmp_path: Path) -> None:
    """decode_base_s 20 % too high: TTFT unchanged; each step off by 0.2·d0/step; e2e by (g-1)·0.2·d0/e2e."""
    q = replace(P, decode_base_s=P.decode_base_s * 1.2)
    row = run_table(splitwise_table(tmp_path / "sw.csv", P), q)
    extra = 0.2 * P.decode_base_s
    expected = {
        "ttft": np.zeros(len(CONFIGS)),
        "step": np.array([extra / mean_step(P, n, pr, g) for pr, n, g in CONFIGS]) * 100,
        "e2e": np.array([(g - 1) * extra / e2e(P, n, pr, g) for pr, n, g in CONFIGS]) * 100,
    }
    for metric, err in expected.items():
        stats = row.errors[metric]
        assert stats.rows == len(CONFIGS)
        assert stats.median_pct == pytest.approx(np.median(err), rel=1e-6, abs=1e-7)
        assert stats.p90_pct == pytest.approx(np.quantile(err, 0.9), rel=1e-6, abs=1e-7)
        assert stats.max_pct == pytest.approx(np.max(err), rel=1e-6, abs=1e-7)
        # every row is slower than measured, so the signed median equals the absolute one
        assert stats.bias_pct == pytest.approx(np.median(err), rel=1e-6, abs=1e-7)
    assert row.errors["step"].median_pct > 1.0  # the perturbation is visible, not lost in the harness


def test_paged_scheduler_runs_the_batch_as_one_prefill_step(tmp_path: Path) -> None:
    """paged with chunked_prefill false and a budget >= the batch's prompts: decodes are the same steps,
    a single prompt the same prefill; a batch's prefill differs only by per-sequence attention."""
    row = run_table(splitwise_table(tmp_path / "sw.csv", P), P, scheduler="paged")
    assert row.waves == 0 and row.errors["step"].max_pct < 1e-6
    single = [(pr, n, g) for pr, n, g in CONFIGS if n == 1]
    path = write_csv(
        tmp_path / "one.csv",
        list(FORMATS["splitwise"]),
        [
            [
                "llama2-70b",
                "h100-80gb",
                pr,
                n,
                g,
                1e3 * P.prefill_time(pr),
                1e3 * mean_step(P, n, pr, g),
                1e3 * e2e(P, n, pr, g),
                4,
            ]
            for pr, n, g in single
        ],
    )
    assert run_table(path, P, scheduler="paged").errors["ttft"].max_pct < 1e-6


def test_iteration_table_decode_and_prefill_rows(tmp_path: Path) -> None:
    rows: list[list[Any]] = []
    for n in (1, 8, 64):
        for c in (256, 2048):
            rows.append(
                ["llama-3-8b", "NVIDIA H100", "decode", n, c, n * c, n, 1e3 * P.iteration_time(n, n * c)]
            )
    for b, length in (
        (1, 512),
        (4, 1024),
        (1, 128),
    ):  # the last is under 512 tokens: left out, as when fitting
        rows.append(
            [
                "llama-3-8b",
                "NVIDIA H100",
                "prefill",
                b,
                length,
                b * length,
                b * length,
                1e3 * P.prefill_time(b * length),
            ]
        )
    header = ["model", "gpu", "phase", "batch", "ctx_per_seq", "total_ctx", "tokens", "ms"]
    path = write_csv(tmp_path / "it.csv", header, rows)
    (mset,) = read_measurements(path)
    assert Batch(4, 1024, 1) in {r.batch for r in mset.rows}  # 4 prompts of 1024, not one of 4096
    assert Batch(8, 255, 2) in {r.batch for r in mset.rows}  # one decode step at 256 tokens per sequence
    assert any("left out 1 prefill" in n for n in mset.notes)
    row = run_table(path, P)
    assert row.errors["step"].rows == 6 and row.errors["ttft"].rows == 2 and "e2e" not in row.errors
    assert max(s.max_pct for s in row.errors.values()) < 1e-6


def test_mixed_step_table_runs_its_pure_rows_only(tmp_path: Path) -> None:
    rows = [
        [2048, 0, 0, 0, 1e3 * P.prefill_time(2048)],  # a whole prompt: TTFT
        [1024, 1024, 0, 0, 50.0],  # a chunk after a cached prefix: not a request-level quantity
        [0, 0, 16, 2048, 1e3 * P.iteration_time(16, 16 * 2048)],  # a decode step
        [512, 0, 16, 2048, 60.0],  # mixed
    ]
    header = ["chunk_tokens", "chunk_prefix", "decode_seqs", "decode_ctx_per_seq", "ms"]
    (mset,) = read_measurements(write_csv(tmp_path / "mixed.csv", header, rows))
    assert [r.batch for r in mset.rows] == [Batch(1, 2048, 1), Batch(16, 2047, 2)]
    assert any(n.startswith("2 row(s) not run") for n in mset.notes)
    row = run_table(tmp_path / "mixed.csv", P)
    assert max(s.max_pct for s in row.errors.values()) < 1e-6


def test_iteration_table_bad_phase_names_the_line(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "it.csv",
        ["model", "gpu", "phase", "batch", "ctx_per_seq", "total_ctx", "tokens", "ms"],
        [["m", "H100", "decode", 1, 100, 100, 1, 5.0], ["m", "H100", "warmup", 1, 100, 100, 1, 5.0]],
    )
    with pytest.raises(DataError, match=r"line 3, column 'phase'"):
        read_measurements(path)


def test_bench_table_end_to_end(tmp_path: Path) -> None:
    header = [
        "Hardware",
        "Num of Hardware",
        "Framework",
        "Model",
        "Input Output Length",
        "Batch Size",
        "Latency",
    ]
    rows = [
        ["Nvidia H100 GPU", 1, "vLLM", "meta-llama/Meta-Llama-3-8B", L, n, e2e(P, n, L, L)]
        for L in (128, 256, 1024)
        for n in (1, 16, 32)
    ]
    (mset,) = read_measurements(write_csv(tmp_path / "bench.csv", header, rows))
    assert (mset.model, mset.gpu, mset.tp, mset.framework) == (
        "meta-llama/Meta-Llama-3-8B",
        "H100-80GB",
        1,
        "vLLM",
    )
    with harness() as h:
        row = evaluate(
            h, profile_target(P, mset.model, mset.gpu, 1), mset, entry="t", source="t", training=False
        )
    assert set(row.errors) == {"e2e"} and row.errors["e2e"].rows == 9 and row.errors["e2e"].max_pct < 1e-6


def test_waves_and_unserved_are_counted(tmp_path: Path) -> None:
    """A batch the KV cache holds only in part runs in waves (counted, error kept); a request larger than
    the cache is never served (counted, left out of the errors)."""
    target = replace(profile_target(P, "tiny-1b", "GPU", 1), memory_gib=10.0, kv_bytes_per_token=2**20)
    with harness() as h:
        sc = h._scenario_for(target, Batch(1, 10, 2))
        cap = kv_capacity_tokens(sc.models[0], sc.gpus[0], sc.deployments[0])
        assert cap > 100
        part = Batch(2, int(0.3 * cap), int(0.1 * cap))  # 0.8 of the cache together
        over = Batch(3, part.prompt, part.output)  # 1.2: one waits
        huge = Batch(1, cap, 10)
        assert not h.run(target, part).waves
        assert h.run(target, over).waves and h.run(target, over).served
        assert not h.run(target, huge).served
        mset = MeasuredSet("x.csv", "t", "tiny-1b", "GPU", 1)
        mset.rows = [Measurement(b, e2e_s=1.0) for b in (part, over, huge)]
        row = evaluate(h, target, mset, entry="t", source="t", training=False)
    assert (row.waves, row.unserved, row.errors["e2e"].rows) == (1, 1, 2)


def test_refused_for_memory_reruns_without_the_activation_reserve() -> None:
    """Weights filling all but ~0.1 GiB of the usable memory: any default activation reserve leaves no KV
    cache and the scenario is refused; the harness reruns with activation_reserve_gib: 0 and says so."""
    weights_gib = 9.0 - 0.1  # of 10 GiB x 0.9
    target = replace(
        profile_target(P, "tiny", "GPU", 1),
        memory_gib=10.0,
        params_b=weights_gib * 2**30 / 2e9,
        kv_bytes_per_token=1024,
    )
    mset = MeasuredSet("x.csv", "t", "tiny", "GPU", 1)
    mset.rows = [Measurement(Batch(2, 100, 10), e2e_s=e2e(P, 2, 100, 10))]
    with harness() as h:
        row = evaluate(h, target, mset, entry="t", source="t", training=False)
    assert row.unserved == 0 and row.errors["e2e"].max_pct < 1e-6
    assert any("does not fit" in n and "activation_reserve_gib: 0" in n for n in row.notes)


def test_calibration_fidelity_of_an_exact_fit_is_near_zero(tmp_path: Path) -> None:
    rows: list[list[Any]] = [["prefill", p, "", "", P.prefill_time(p)] for p in (64, 512, 2048, 8192)]
    rows += [["decode", "", n, n * c, P.iteration_time(n, n * c)] for n in (1, 8, 32) for c in (100, 1000)]
    path = write_csv(
        tmp_path / "c.csv", ["kind", "prompt_tokens", "batch_size", "context_tokens", "time_s"], rows
    )
    report = calibrate_file(path)
    fid = calibration_fidelity(report)
    assert len(fid) == 1 and fid[0].errors["ttft"].rows == 4 and fid[0].errors["step"].rows == 6
    assert max(s.max_pct for s in fid[0].errors.values()) < 0.01
    text = format_calibration_fidelity(fid)
    assert "Engine check" in text and "ttft med" in text


def test_limit_checks_an_evenly_spread_sample(tmp_path: Path) -> None:
    (mset,) = read_measurements(splitwise_table(tmp_path / "sw.csv", P))
    distinct = list(dict.fromkeys(r.batch for r in mset.rows))
    with harness() as h:
        row = evaluate(
            h,
            profile_target(P, mset.model, mset.gpu, 4),
            mset,
            entry="t",
            source="t",
            training=False,
            limit=3,
        )
        assert row.rows == 3 and h.runs == 3
        assert {distinct[0], distinct[-1]} <= {b for _, b in h._cache}  # spread: first and last included
    assert any(n.startswith(f"checked 3 of {len(distinct)}") for n in row.notes)


def test_calibration_fidelity_bounds_the_runs(tmp_path: Path) -> None:
    report = calibrate_file(splitwise_table(tmp_path / "sw.csv", P))
    (row,) = calibration_fidelity(report, max_runs=4)
    assert row.rows == 4 and row.errors["e2e"].rows == 4
    assert "evenly spread sample" in format_calibration_fidelity([row])
    (full,) = calibration_fidelity(report, max_runs=None)
    assert full.rows == len(CONFIGS)


def test_model_keys_and_coverage() -> None:
    assert model_key("meta-llama/Meta-Llama-3-70B") == model_key("Llama-3-70B") == "llama370b"
    assert model_key("llama2-70b") == model_key("meta-llama/Llama-2-70b-hf") == "llama270b"
    assert entry_model_keys("Llama-2/3-70B") == {"llama270b", "llama370b"}
    assert entry_model_keys("Qwen2.5-32B shape") == {model_key("qwen2.5-32b")}
    e = next(e for e in list_builtin() if not e.derived and len(entry_model_keys(e.model)) == 1)
    same = MeasuredSet("f.csv", "t", "org/" + e.model + "-hf", e.gpu, e.tp)
    assert covers(e, same)
    assert not covers(e, MeasuredSet("f.csv", "t", same.model, e.gpu, e.tp + 1))
    assert not covers(e, MeasuredSet("f.csv", "t", same.model, "no-such-gpu", e.tp))
    assert not is_training(e, MeasuredSet("other.csv", "t", same.model, e.gpu, e.tp))


def test_format_marks_rows_over_the_threshold(tmp_path: Path) -> None:
    q = replace(P, decode_base_s=P.decode_base_s * 2.0)
    row = run_table(splitwise_table(tmp_path / "sw.csv", P), q)
    assert row.over(15.0)
    text = format_fidelity([row])
    assert "* " in text.splitlines()[-1] and "step" in text.splitlines()[-1]
    assert not run_table(splitwise_table(tmp_path / "sw.csv", P), P).over(15.0)


# ---------------------------------------------------------------------------------------------- benchmark
def _benchmark() -> Any:
    name = "_llmsim_benchmark_fidelity"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / "fidelity.py")
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]


def test_benchmark_quick_on_a_synthetic_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    splitwise_table(tmp_path / "splitwise_perf_model.csv", P)
    assert _benchmark().main(["--quick", "--data", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "skipped llm_inference_bench_all_results.csv" in out
    assert "ttft med" in out and "engine runs" in out
    covering = [
        e
        for e in list_builtin()
        if e.gpu == "H100-80GB" and e.tp == 4 and "llama270b" in entry_model_keys(e.model)
    ]
    for e in covering:
        assert e.name in out


def test_benchmark_without_data_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _benchmark().main(["--quick", "--data", str(tmp_path / "absent")]) == 0
    assert "nothing to compare" in capsys.readouterr().out


@pytest.mark.shared_data
@_needs_shared
def test_benchmark_quick_on_the_shared_tables(capsys: pytest.CaptureFixture[str]) -> None:
    assert _benchmark().main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert "entries within 15 % median e2e of independent vLLM measurements" in out


@pytest.mark.shared_data
@_needs_shared
def test_engine_reproduces_the_fit_on_its_training_rows() -> None:
    """A vLLM-fitted entry run through the engine on the rows it was fitted on: the engine's mean e2e error
    equals the fit's reported MAPE (both evaluate prefill(nL) + (L-1) iterations at the mean context)."""
    entries = [e for e in list_builtin() if not e.derived and "end_to_end" in e.fit]
    if not entries:
        pytest.skip("no end-to-end-fitted entry")
    sets = read_measurements(GPU_DIR / "llm_inference_bench_all_results.csv")
    e = entries[0]
    (mset,) = [s for s in sets if covers(e, s) and is_training(e, s)]
    from sim.profiles.fidelity import entry_target

    with harness() as h:
        row = evaluate(h, entry_target(e, mset.model), mset, entry=e.name, source="", training=True)
    assert row.waves == 0 and row.rows == e.fit["end_to_end"]["rows"]
    assert row.errors["e2e"].mean_pct == pytest.approx(e.fit["end_to_end"]["mape_pct"], abs=0.1)
