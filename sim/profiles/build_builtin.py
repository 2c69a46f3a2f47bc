"""Build ``sim/data/profiles.json`` from the public GPU tables — reproducibly.

Usage::

    python -m sim.profiles.build_builtin /work/shared/data/gpu --out sim/data/profiles.json

Inputs (read, never copied): ``splitwise_perf_model.csv`` (Mutinifni/splitwise-sim, MIT),
``llm_inference_bench_all_results.csv`` (argonne-lcf/LLM-Inference-Bench, BSD-3-Clause) and the two H200
tables measured for this project (``h200_torch_iteration_times.csv``, ``h200_torch_mixed_step_times.csv``).
Their SHA-256 are recorded so a changed input is visible. Every entry names its ``source`` (see
:mod:`sim.profiles.builtin` for the one source policy that picks the default):

1. ``splitwise`` — Llama-2-70B at TP 2/4/8 and BLOOM-176B at TP 8 on A100-80GB and H100-80GB: prefill
   fit on (batch·prompt tokens → prompt_time), decode fit on (batch, mean context → token_time); see
   :func:`sim.profiles.tables.splitwise_groups`. The power-capped ``h100-80gb-pcap`` rows are left out.
2. ``vllm-bench`` — LLM-Inference-Bench end-to-end runs under vLLM (continuous batching, like the engine):
   Llama-2-7B and Llama-3-8B on A100-40GB and H100-80GB at 1/2/4 GPUs, and 70B at 4 GPUs (H100: the
   Llama-2-70B and Llama-3-70B rows pooled — same shape, 80 layers, 8 KV heads; A100-40GB: Llama-2-70B, the
   only one run there), preempted and KV-overflow rows dropped (:func:`sim.profiles.tables.bench_groups`).
   Decode coefficients are fit with the prefill part fixed to the Splitwise prefill scaled by
   :func:`sim.profiles.builtin.prefill_prior` (prefill is not identifiable from end-to-end latency).
   **Per-sequence term**: the runs cover batches 1–64 only, and the linear form extrapolates
   ``decode_per_seq_s`` to any batch. Its fit is the *average* slope over 1–64, which overstates the slope at
   the top of the range where the cost is concave (70B on H100 TP4: 144 µs/seq fitted over batches ≤ 32,
   86 µs over ≤ 64, ≈ 30 µs between 32 and 64). So ``decode_per_seq_s`` is bounded above by the larger of
   (a) the marginal slope at the top of the measured range (the same fit on the rows of the two largest
   batch sizes only) and (b) the per-sequence cost GPU kernels need — the H200 kernel table's
   ``decode_per_seq_s`` (fitted over batches 1–256) of the nearer shape, scaled by
   params/(TP·peak FLOP/s). Beyond batch 64 the step therefore grows only by that slope (70B H100 TP4:
   ≈ 7.6 ms from 1 to 256 sequences, vs 70 ms with the Splitwise entry); ``d0``/``dc`` are refitted with it.
3. ``h200-torch`` — Llama-3-8B and Qwen2.5-32B shapes on one H200, plain PyTorch (CUDA-graph decode, eager
   prefill; random weights): decode fit on (batch, total_ctx), prefill fit on the prompts of ≥ 512 tokens
   with attention work Σ len²/2, mixed-step coefficients fit on the mixed table (:func:`fit_mixed`). A
   kernel measurement: no serving engine's per-step CPU work, no paged attention, so never the default.
4. ``derived`` — 7B/8B/70B on A100-80GB from the A100-40GB vLLM fits (same chip and FLOP/s, HBM 2,039 vs
   1,555 GB/s: memory-bound terms × 1555/2039); 13B on A100-80GB and H100-80GB at TP 1/2/4 from Llama-2-7B
   on the same GPU and TP (its architecture sibling: full multi-head attention), × 13/7 on every term; and
   every default H100-80GB entry on the **H200** (memory-bound terms × 3350/4800, H100 arithmetic).

**Per-step overhead** (``step_overhead_s``): the vLLM fits' decode intercept holds the serving engine's CPU
time per step; the H200 kernel fit has none. On the same model at TP 1 (Llama-3-8B) the vLLM intercept
minus the kernel intercept carried to the H100 by the bandwidth ratio identifies it
(:func:`identify_step_overhead`); every vLLM entry gets that value split out of its decode and prefill
bases (the pure step times are unchanged, but derived entries no longer scale CPU time with the GPU).
Splitwise entries keep 0 (their engine's overhead, if any, is inside their bases and cannot be separated).

**H200 check** (:func:`h200_scaling_check`, printed and stored under ``h200_scaling_check``): the H100 vLLM
Llama-3-8B entry scaled to each H200 shape by the rule (size by params, GPU by the bandwidth ratio), against
the H200 kernel fit — per memory-bound coefficient and over the table's decode steps. Result: on the 8B
shape ``decode_per_ctx_token_s`` +11.7 % (the intercept agrees by construction: it identifies the step
overhead); on the 32B shape ``decode_base_s`` +17.0 % and ``decode_per_ctx_token_s`` +17.5 % — which was
+138 % while the rule scaled KV reads with params (GQA models' KV grows with depth), so the rule now scales
that term with params^0.5 (:data:`sim.profiles.hardware.KV_SIZE_EXPONENT`). The remaining ~17 % is
weight-read efficiency growing with model size (66 % of HBM bandwidth at 8B, 77 % at 32B in the kernel
table), not the GPU ratio. ``prefill_base_s`` is not comparable (Splitwise batched prefill vs eager PyTorch).

**Default H200 entries** are the H100 defaults scaled by the checked rule (``derived``), not the kernel
fits: a serving engine's costs are in the vLLM fits and absent from the kernel table — per sequence the
vLLM Llama-3-8B entry costs 42 µs where the kernels need 11.7 µs (the rest is vLLM's CPU work per
sequence), and the kernel table has no per-step overhead — so the kernel fits would make an H200 look
faster than it serves. ``builtin: h200-torch`` selects them (e.g. with ``step_overhead_s`` set).

Numbers are rounded to 6 significant digits so rebuilding on another machine gives the same file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from sim.engine.latency import MIXED_TERMS, LatencyProfile
from sim.profiles.builtin import COEFFICIENTS, BuiltinProfile, default_entries, prefill_prior
from sim.profiles.fit import (
    FitReport,
    fit_decode,
    fit_end_to_end,
    fit_mixed,
    fit_prefill,
    mixed_step_times,
    profile_from,
)
from sim.profiles.hardware import GPUS, MEMORY_TERMS, SCALING_RULE, gpu_ratios, scale_profile
from sim.profiles.tables import (
    BENCH_HARDWARE,
    Group,
    bench_groups,
    iteration_groups,
    mixed_step_groups,
    read_table,
    splitwise_groups,
)

SPLITWISE_FILE = "splitwise_perf_model.csv"
BENCH_FILE = "llm_inference_bench_all_results.csv"
H200_FILE = "h200_torch_iteration_times.csv"
H200_MIXED_FILE = "h200_torch_mixed_step_times.csv"

SPLITWISE_MODELS = {"llama2-70b": ("Llama-2-70B", 70.0), "bloom-176b": ("BLOOM-176B", 176.0)}
SPLITWISE_GPUS = ("A100-80GB", "H100-80GB")
SPLITWISE_ENGINE = "Splitwise characterisation runs (splitwise-sim perf_model.csv)"
BENCH_MODELS = {
    "meta-llama/Llama-2-7b-hf": ("Llama-2-7B", 7.0),
    "meta-llama/Meta-Llama-3-8B": ("Llama-3-8B", 8.0),
    "meta-llama/Llama-2-70b-hf": ("Llama-2/3-70B", 70.0),
    "meta-llama/Meta-Llama-3-70B": ("Llama-2/3-70B", 70.0),
}
BENCH_GPUS = ("A100-40GB", "H100-80GB")
BENCH_FRAMEWORK = "vLLM"
BENCH_ENGINE = "vLLM (LLM-Inference-Bench, 2024)"
H200_MODELS = {"llama-3-8b": ("Llama-3-8B shape", 8.03), "qwen2.5-32b": ("Qwen2.5-32B shape", 32.8)}
H200_ENGINE = "plain PyTorch 2.11, bf16, CUDA-graph decode, eager prefill, random weights (no serving engine)"
H200_GPU = "H200-141GB"
DERIVED_13B_TPS = (1, 2, 4)
# The shape on which the step overhead is identified: the same model measured by vLLM (H100) and by the
# kernel table (H200), both at TP 1.
OVERHEAD_REFERENCE = ("Llama-3-8B", "llama-3-8b")
_BENCH_NAME = {canonical: raw for raw, canonical in BENCH_HARDWARE.items()}

GENERATED_BY = "python -m sim.profiles.build_builtin <shared/data/gpu> --out sim/data/profiles.json"


def _sig(x: float, digits: int = 6) -> float:
    return float(f"{x:.{digits}g}")


def _rounded(p: LatencyProfile) -> LatencyProfile:
    """The profile with every given coefficient rounded (mixed-step ones left None stay derived)."""
    values = {k: getattr(p, k) for k in (*COEFFICIENTS, *MIXED_TERMS, "step_overhead_s")}
    rounded: dict[str, Any] = {k: None if v is None else _sig(v) for k, v in values.items()}
    return LatencyProfile(**rounded)


def _fit_summary(report: FitReport) -> dict[str, float]:
    r2 = report.r2 if report.r2 == report.r2 else 0.0
    return {
        "mape_pct": _sig(report.mape_pct, 4),
        "max_ape_pct": _sig(report.max_ape_pct, 4),
        "r2": _sig(r2, 4),
        "rows": report.rows,
    }


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _name(model: str, gpu: str, tp: int, source: str) -> str:
    return f"{model}@{gpu}/tp{tp} [{source}]"


def splitwise_entries(groups: Sequence[Group]) -> list[BuiltinProfile]:
    out = []
    for g in groups:
        if g.model not in SPLITWISE_MODELS or g.hardware not in SPLITWISE_GPUS:
            continue
        if g.prefill is None or g.decode is None:
            continue
        model, size = SPLITWISE_MODELS[g.model]
        pre, dec = fit_prefill(*g.prefill), fit_decode(*g.decode)
        filters = "; ".join(
            [
                f"model={g.model}, hardware={g.hardware.lower()}, tensor_parallel={g.tp}",
                "prefill: P=batch_size*prompt_size -> prompt_time",
                "decode: n=batch_size, ctx=n*(prompt_size+g/2) with g=min(token_size, 1+(e2e_time-prompt_time)/token_time) -> token_time",
                *g.notes,
            ]
        )
        out.append(
            BuiltinProfile(
                name=_name(model, g.hardware, g.tp, "splitwise"),
                model=model,
                model_size_b=size,
                gpu=g.hardware,
                tp=g.tp,
                profile=_rounded(profile_from(pre, dec)),
                derived=False,
                prefill_measured=True,
                source="splitwise",
                engine=SPLITWISE_ENGINE,
                data={"file": SPLITWISE_FILE, "rows": pre.rows, "rows_in_group": g.rows_total, "filters": filters},
                fit={"prefill": _fit_summary(pre), "decode": _fit_summary(dec)},
            )
        )
    return out


def h200_entries(iteration: Sequence[Group], mixed: Sequence[Group]) -> list[BuiltinProfile]:
    """The ``h200-torch`` entries: pure fits from the iteration table, mixed coefficients from the mixed one."""
    mixed_by_model = {g.model: g for g in mixed}
    out = []
    for g in iteration:
        if g.model not in H200_MODELS or g.prefill is None or g.decode is None:
            continue
        model, size = H200_MODELS[g.model]
        pre = fit_prefill(*g.prefill, attn=g.prefill_attn)
        dec = fit_decode(*g.decode)
        profile = profile_from(pre, dec)
        fit = {"prefill": _fit_summary(pre), "decode": _fit_summary(dec)}
        notes = [f"model={g.model}, gpu={g.hardware}", *g.notes]
        m = mixed_by_model.get(g.model)
        if m is not None and m.mixed is not None:
            rep = fit_mixed(*m.mixed, pure=profile)
            mixed_given: dict[str, Any] = dict(rep.coefficients)
            profile = replace(profile, **mixed_given)
            fit["mixed"] = _fit_summary(rep)
            notes.append(f"mixed coefficients from {H200_MIXED_FILE} ({rep.rows} mixed rows, pure ones held fixed)")
        out.append(
            BuiltinProfile(
                name=_name(model, g.hardware, g.tp, "h200-torch"),
                model=model,
                model_size_b=size,
                gpu=g.hardware,
                tp=g.tp,
                profile=_rounded(profile),
                derived=False,
                prefill_measured=True,
                source="h200-torch",
                engine=H200_ENGINE,
                data={"file": H200_FILE, "rows": pre.rows + dec.rows, "rows_in_group": g.rows_total,
                      "filters": "; ".join(notes)},
                fit=fit,
                rule="plain-PyTorch kernel measurement: GPU time only (step_overhead_s 0), no paged attention; "
                "read the absolute times as an honest plain implementation, the shape of the cost as the finding",
            )
        )
    return out


def kernel_per_seq(h200: Sequence[BuiltinProfile], size: float, gpu: str, tp: int) -> tuple[float, str]:
    """Per-sequence decode cost GPU kernels need for ``size``B on ``tp`` × ``gpu``: the nearer-shaped H200
    kernel fit's ``decode_per_seq_s`` × size ratio / TP × FLOP/s ratio (the compute rule)."""
    ref = min(h200, key=lambda e: abs(math.log(e.model_size_b / size)))
    compute, _ = gpu_ratios(ref.gpu, gpu)
    value = ref.profile.decode_per_seq_s * size / ref.model_size_b / tp * compute
    return value, ref.name


def _pooled(groups: Sequence[Group]) -> dict[tuple[str, str, int], list[Group]]:
    pooled: dict[tuple[str, str, int], list[Group]] = {}
    for g in groups:
        if g.framework != BENCH_FRAMEWORK or g.model not in BENCH_MODELS or g.hardware not in BENCH_GPUS:
            continue
        if g.e2e is not None:
            pooled.setdefault((BENCH_MODELS[g.model][0], g.hardware, g.tp), []).append(g)
    return pooled


E2E = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # (n, L_in, L_out, s)


def _per_seq_bound(e2e: E2E, prefill: LatencyProfile, kernel: float) -> float:
    """Upper bound of decode_per_seq_s: max(marginal slope over the two largest batch sizes, kernel need)."""
    n = e2e[0]
    sizes = np.unique(n)
    if sizes.size < 3:  # too few batch sizes for a top segment distinct from the whole range
        return kernel
    top = n >= sizes[-2]
    b, lin, lout, t = (col[top] for col in e2e)
    marginal = fit_end_to_end(b, lin, lout, t, prefill=prefill).coefficients["decode_per_seq_s"]
    return max(marginal, kernel)


def bench_entries(
    groups: Sequence[Group], references: Sequence[BuiltinProfile], h200: Sequence[BuiltinProfile]
) -> list[BuiltinProfile]:
    out = []
    for (model, gpu, tp), parts in sorted(_pooled(groups).items()):
        size = BENCH_MODELS[parts[0].model][1]
        prior = prefill_prior(references, size, gpu, tp)
        if prior is None:  # pragma: no cover - every BENCH_GPUS entry has a datasheet
            raise RuntimeError(f"no prefill reference for {gpu}")
        prefill, how = prior
        cols = [np.concatenate([p.e2e[i] for p in parts if p.e2e is not None]) for i in range(4)]
        e2e: E2E = (cols[0], cols[1], cols[2], cols[3])
        kernel, kernel_ref = kernel_per_seq(h200, size, gpu, tp)
        bound = _per_seq_bound(e2e, prefill, kernel)
        free = fit_end_to_end(*e2e, prefill=prefill)
        rep = fit_end_to_end(*e2e, prefill=prefill, per_seq_max=bound)
        batches = sorted({int(b) for b in e2e[0]})
        rule = (
            f"decode_per_seq_s fitted over the measured batches {batches} and bounded by "
            f"max(marginal slope over the two largest batch sizes, kernel need {kernel:.3g} s from {kernel_ref} "
            f"x params/(TP*FLOP/s)) = {bound:.3g} s (unbounded fit {free.coefficients['decode_per_seq_s']:.3g} s, "
            f"MAPE {free.mape_pct:.2f} %); beyond batch {batches[-1]} the step grows by this slope per sequence"
        )
        filters = [
            f"Model={p.model}, Hardware={_BENCH_NAME[gpu]!r} (= {gpu}), Framework={p.framework}, "
            f"Num of Hardware={tp}" + (f" [{'; '.join(p.notes)}]" if p.notes else "")
            for p in parts
        ]
        filters += ["latency = prefill(n*L) + (L-1)*iteration(n, n*(L+L/2)), input=output=L", how]
        out.append(
            BuiltinProfile(
                name=_name(model, gpu, tp, "vllm-bench"),
                model=model,
                model_size_b=size,
                gpu=gpu,
                tp=tp,
                profile=profile_from(prefill, rep),
                derived=False,
                prefill_measured=False,
                source="vllm-bench",
                engine=BENCH_ENGINE,
                data={"file": BENCH_FILE, "rows": rep.rows, "rows_in_group": sum(p.rows_total for p in parts),
                      "filters": "; ".join(filters)},
                fit={"end_to_end": _fit_summary(rep)},
                rule=rule,
            )
        )
    return out


def identify_step_overhead(bench: Sequence[BuiltinProfile], h200: Sequence[BuiltinProfile]) -> dict[str, Any]:
    """Per-step CPU time of the vLLM runs: the vLLM decode intercept of :data:`OVERHEAD_REFERENCE` on the
    H100 at TP 1 minus the H200 kernel intercept of the same model carried to the H100 (× bandwidth ratio)."""
    vllm_model, kernel_model = OVERHEAD_REFERENCE
    vllm = next(e for e in bench if e.model == vllm_model and e.gpu == "H100-80GB" and e.tp == 1)
    kernel = next(e for e in h200 if e.data["filters"].startswith(f"model={kernel_model},"))
    _, bandwidth = gpu_ratios(kernel.gpu, vllm.gpu)
    carried = kernel.profile.decode_base_s * bandwidth
    value = max(0.0, vllm.profile.decode_base_s - carried)
    return {
        "step_overhead_s": _sig(value),
        "how": f"{vllm.name} decode_base_s {vllm.profile.decode_base_s:.6g} s minus {kernel.name} decode_base_s "
        f"{kernel.profile.decode_base_s:.6g} s x {bandwidth:.4g} (HBM {kernel.gpu} / {vllm.gpu}) = {carried:.6g} s",
    }


def with_overhead(e: BuiltinProfile, overhead: float) -> BuiltinProfile:
    """``e`` with ``overhead`` of its intercepts moved into ``step_overhead_s`` (same pure step times)."""
    o = min(overhead, e.profile.decode_base_s, e.profile.prefill_base_s)
    p = replace(
        e.profile,
        decode_base_s=e.profile.decode_base_s - o,
        prefill_base_s=e.profile.prefill_base_s - o,
        step_overhead_s=o,
    )
    return replace(e, profile=_rounded(p))


def _derive(
    ref: BuiltinProfile,
    *,
    model: str,
    size: float,
    gpu: str,
    rule: str,
    compute: float = 1.0,
    bandwidth: float = 1.0,
) -> BuiltinProfile:
    profile = scale_profile(
        ref.profile, size_ratio=size / ref.model_size_b, compute_ratio=compute, bandwidth_ratio=bandwidth
    )
    return BuiltinProfile(
        name=_name(model, gpu, ref.tp, "derived"),
        model=model,
        model_size_b=size,
        gpu=gpu,
        tp=ref.tp,
        profile=_rounded(profile),
        derived=True,
        prefill_measured=False,
        source="derived",
        engine=ref.engine,
        data={"file": ref.data.get("file", ""), "via": ref.name},
        fit={},
        rule=rule,
        derived_from=ref.name,
    )


def _gpu_rule(src: str, dst: str) -> str:
    _, bandwidth = gpu_ratios(src, dst)
    return (
        f"{SCALING_RULE}; {src} -> {dst}: same FLOP/s, HBM {GPUS[src].hbm_gbps:g} -> {GPUS[dst].hbm_gbps:g} GB/s "
        f"(memory-bound terms x{bandwidth:.4g}); step_overhead_s unscaled"
    )


def derived_entries(measured: Sequence[BuiltinProfile]) -> list[BuiltinProfile]:
    out = []
    compute, bandwidth = gpu_ratios("A100-40GB", "A100-80GB")
    for ref in measured:
        if ref.gpu == "A100-40GB" and ref.source == "vllm-bench":
            out.append(
                _derive(ref, model=ref.model, size=ref.model_size_b, gpu="A100-80GB", compute=compute,
                        bandwidth=bandwidth, rule=_gpu_rule("A100-40GB", "A100-80GB"))
            )
    by_name = {e.name: e for e in (*measured, *out)}
    for gpu in ("A100-80GB", "H100-80GB"):
        for tp in DERIVED_13B_TPS:
            source = "derived" if gpu == "A100-80GB" else "vllm-bench"
            sibling = by_name.get(_name("Llama-2-7B", gpu, tp, source))
            if sibling is None:
                continue
            out.append(
                _derive(
                    sibling,
                    model="13B (Llama-2-13B class)",
                    size=13.0,
                    gpu=gpu,
                    rule=f"{SCALING_RULE}; from Llama-2-7B (same architecture family) on the same GPU and TP, "
                    "every term x13/7; step_overhead_s unscaled",
                )
            )
    compute, bandwidth = gpu_ratios("H100-80GB", H200_GPU)
    for ref in default_entries([*measured, *out]):
        if ref.gpu == "H100-80GB":
            out.append(
                _derive(ref, model=ref.model, size=ref.model_size_b, gpu=H200_GPU, compute=compute,
                        bandwidth=bandwidth, rule=_gpu_rule("H100-80GB", H200_GPU))
            )
    return out


def h200_scaling_check(entries: Sequence[BuiltinProfile], h200: Sequence[BuiltinProfile],
                       iteration: Sequence[Group]) -> list[dict[str, Any]]:
    """The H100 vLLM Llama-3-8B entry scaled to each H200 shape (size by params, GPU by the rule) against the
    H200 kernel fit: relative error of each memory-bound coefficient (the GPU part of the intercepts) and of
    the decode step over the table's decode rows. The intercept of the 8B shape is what identifies
    ``step_overhead_s``, so its ``decode_base_s`` agrees by construction; the 32B one is a real check."""
    ref = next(e for e in entries if e.name == _name("Llama-3-8B", "H100-80GB", 1, "vllm-bench"))
    compute, bandwidth = gpu_ratios("H100-80GB", H200_GPU)
    rows = {g.model: g for g in iteration}
    out = []
    for e in h200:
        scaled = scale_profile(ref.profile, size_ratio=e.model_size_b / ref.model_size_b,
                               compute_ratio=compute, bandwidth_ratio=bandwidth)
        terms = {t: _sig(getattr(scaled, t) / getattr(e.profile, t) - 1.0, 4) for t in MEMORY_TERMS
                 if getattr(e.profile, t) > 0}
        key = next(k for k, v in H200_MODELS.items() if v[0] == e.model)
        n, ctx, t = rows[key].decode  # type: ignore[misc]
        gpu_scaled = replace(scaled, step_overhead_s=0.0)
        pred = mixed_step_times(gpu_scaled, np.zeros_like(n), np.zeros_like(n), n, ctx)
        err = np.abs(pred - t) / t * 100.0
        out.append({
            "measured": e.name,
            "scaled_from": ref.name,
            "relative_error_of_memory_bound_terms": terms,
            "decode_step_ape_pct": {"median": _sig(float(np.median(err)), 4), "max": _sig(float(err.max()), 4)},
        })
    return out


def build(data_dir: str | Path) -> dict[str, Any]:
    """The profiles document built from the tables in ``data_dir`` (see the module docstring)."""
    d = Path(data_dir)
    tables = {f: read_table(d / f) for f in (SPLITWISE_FILE, BENCH_FILE, H200_FILE, H200_MIXED_FILE)}
    formats = [t.format for t in tables.values()]
    if formats != ["splitwise", "llm_inference_bench", "iteration", "mixed_step"]:
        raise ValueError(f"unexpected formats: {formats}")
    sw = splitwise_entries(splitwise_groups(tables[SPLITWISE_FILE]))
    iteration = iteration_groups(tables[H200_FILE])
    h200 = h200_entries(iteration, mixed_step_groups(tables[H200_MIXED_FILE]))
    raw_bench = bench_entries(bench_groups(tables[BENCH_FILE]), sw, h200)
    overhead = identify_step_overhead(raw_bench, h200)
    bench = [with_overhead(e, overhead["step_overhead_s"]) for e in raw_bench]
    derived = derived_entries(sw + bench)
    order = {"vllm-bench": 0, "splitwise": 1, "h200-torch": 2, "derived": 3}
    entries = sorted(sw + bench + h200 + derived,
                     key=lambda e: (e.gpu, e.model_size_b, e.model, e.tp, order[e.source]))
    check = h200_scaling_check(entries, h200, iteration)
    return {
        "schema_version": 2,
        "description": "Built-in LatencyProfile coefficients (seconds) fitted to public GPU measurements; "
        "see sim/profiles/build_builtin.py for the method and sim/profiles/builtin.py for the source policy.",
        "generated_by": GENERATED_BY,
        "sources": _sources(d),
        "source_policy": "default per (GPU, size, TP): the first of vllm-bench, splitwise, derived; "
        "h200-torch only by name (builtin: h200-torch); a named source needs an entry with the same GPU and "
        "TP and a size within x1.15",
        "scaling_rule": SCALING_RULE,
        "step_overhead": overhead,
        "h200_scaling_check": check,
        "gpus": {
            name: {"peak_tflops": s.peak_tflops, "hbm_gbps": s.hbm_gbps, "memory_gb": s.memory_gb, "note": s.note}
            for name, s in GPUS.items()
        },
        "excluded": [
            "splitwise hardware h100-80gb-pcap (power-capped; its token_time/e2e_time repeat h100-80gb)",
            "LLM-Inference-Bench frameworks other than vLLM, models other than Llama-2-7B/Llama-3-8B/"
            "Llama-2-70B/Llama-3-70B, hardware other than A100/H100",
            f"{H200_FILE}: prefills under 512 tokens (eager-mode launch overhead)",
        ],
        "profiles": [e.to_json() for e in entries],
    }


def _sources(d: Path) -> list[dict[str, str]]:
    origins = [
        (SPLITWISE_FILE, "Mutinifni/splitwise-sim perf_model.csv (Patel et al., Splitwise, ISCA 2024)", "MIT"),
        (BENCH_FILE, "argonne-lcf/LLM-Inference-Bench All_results.csv (Chitty-Venkata et al., 2024)", "BSD-3-Clause"),
        (H200_FILE, "measured for this project on one NVIDIA H200, plain PyTorch (shared/data/README.md)", "-"),
        (H200_MIXED_FILE, "measured for this project on one NVIDIA H200, plain PyTorch (shared/data/README.md)", "-"),
    ]
    return [{"file": f, "origin": o, "license": lic, "sha256": _sha256(d / f)} for f, o, lic in origins]


def format_table(doc: dict[str, Any]) -> str:
    """A human-readable summary of a built document (one line per entry, then the H200 check)."""
    lines = [
        f"{'name':50} {'pre_base':>9} {'pre_tok':>9} {'pre_tok2':>9} {'dec_base':>9} {'dec_seq':>9} "
        f"{'dec_ctx':>9} {'ovh':>7}  fit MAPE %"
    ]
    for e in doc["profiles"]:
        fit = ", ".join(f"{k} {v['mape_pct']:.2f}" for k, v in e["fit"].items()) or "derived"
        lines.append(
            f"{e['name']:50} {e['prefill_base_s']:9.3g} {e['prefill_per_token_s']:9.3g} "
            f"{e['prefill_per_token2_s']:9.3g} {e['decode_base_s']:9.3g} {e['decode_per_seq_s']:9.3g} "
            f"{e['decode_per_ctx_token_s']:9.3g} {e['step_overhead_s']:7.2g}  {fit}"
        )
    lines.append(f"step_overhead_s = {doc['step_overhead']['step_overhead_s']:g} s: {doc['step_overhead']['how']}")
    lines.append("H200 scaling check (H100 entry scaled by the rule vs the H200 kernel fit):")
    for c in doc["h200_scaling_check"]:
        terms = ", ".join(f"{k} {v * 100:+.1f} %" for k, v in c["relative_error_of_memory_bound_terms"].items())
        ape = c["decode_step_ape_pct"]
        lines.append(f"  {c['measured']}: {terms}; decode steps median {ape['median']:.1f} % max {ape['max']:.1f} %")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sim.profiles.build_builtin", description=__doc__.split("\n")[0]
    )
    parser.add_argument("data_dir", type=Path, help="directory holding the public CSVs (shared/data/gpu)")
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    args = parser.parse_args(argv)
    doc = build(args.data_dir)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    print(format_table(doc))
    print(f"wrote {len(doc['profiles'])} profiles to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
