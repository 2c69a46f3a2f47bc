"""Build ``sim/data/profiles.json`` from the public GPU tables — reproducibly.

Usage::

    python -m sim.profiles.build_builtin /work/shared/data/gpu --out sim/data/profiles.json

Inputs (read, never copied): ``splitwise_perf_model.csv`` (Mutinifni/splitwise-sim, MIT) and
``llm_inference_bench_all_results.csv`` (argonne-lcf/LLM-Inference-Bench, BSD-3-Clause). Their SHA-256 are
recorded so a changed input is visible. Three kinds of entries, in this order:

1. **Splitwise, measured** — Llama-2-70B at TP 2/4/8 and BLOOM-176B at TP 8 on A100-80GB and H100-80GB:
   prefill fit on (batch·prompt tokens → prompt_time), decode fit on (batch, mean context → token_time);
   see :func:`sim.profiles.tables.splitwise_groups`. The power-capped ``h100-80gb-pcap`` rows are left out
   (a capped GPU is not what a scenario means by H100; they repeat the H100 decode times verbatim).
2. **LLM-Inference-Bench, measured end to end** — Llama-2-7B and Llama-3-8B under vLLM (continuous
   batching, like the engine) on A100-40GB and H100-80GB at 1/2/4 GPUs, KV-cache-overflow rows dropped
   (:func:`sim.profiles.tables.bench_groups`). Decode coefficients are fit with the prefill part fixed
   to the Splitwise prefill scaled by :func:`sim.profiles.builtin.prefill_prior` (prefill is not
   identifiable from end-to-end latency; see :mod:`sim.profiles.fit`).
3. **Derived** (``derived: true``) — 7B/8B on A100-80GB from the A100-40GB fits (same chip and FLOP/s,
   HBM 2,039 vs 1,555 GB/s: memory-bound terms × 1555/2039), and 13B on A100-80GB and H100-80GB at
   TP 1/2/4 from Llama-2-7B on the same GPU and TP (its architecture sibling: full multi-head attention),
   × 13/7 on every term.

Numbers are rounded to 6 significant digits so rebuilding on another machine gives the same file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sim.engine.latency import MIXED_TERMS, LatencyProfile
from sim.profiles.builtin import COEFFICIENTS, BuiltinProfile, prefill_prior
from sim.profiles.fit import FitReport, fit_decode, fit_end_to_end, fit_prefill, profile_from
from sim.profiles.hardware import GPUS, SCALING_RULE, gpu_ratios, scale_profile
from sim.profiles.tables import BENCH_HARDWARE, Group, bench_groups, read_table, splitwise_groups

SPLITWISE_FILE = "splitwise_perf_model.csv"
BENCH_FILE = "llm_inference_bench_all_results.csv"

SPLITWISE_MODELS = {"llama2-70b": ("Llama-2-70B", 70.0), "bloom-176b": ("BLOOM-176B", 176.0)}
SPLITWISE_GPUS = ("A100-80GB", "H100-80GB")
BENCH_MODELS = {
    "meta-llama/Llama-2-7b-hf": ("Llama-2-7B", 7.0),
    "meta-llama/Meta-Llama-3-8B": ("Llama-3-8B", 8.0),
}
BENCH_GPUS = ("A100-40GB", "H100-80GB")
BENCH_FRAMEWORK = "vLLM"
DERIVED_13B_TPS = (1, 2, 4)
_BENCH_NAME = {canonical: raw for raw, canonical in BENCH_HARDWARE.items()}

GENERATED_BY = "python -m sim.profiles.build_builtin <shared/data/gpu> --out sim/data/profiles.json"


def _sig(x: float, digits: int = 6) -> float:
    return float(f"{x:.{digits}g}")


def _rounded(p: LatencyProfile) -> LatencyProfile:
    """The profile with every given coefficient rounded (mixed-step ones left None stay derived)."""
    values = {k: getattr(p, k) for k in COEFFICIENTS + MIXED_TERMS}
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


def _name(model: str, gpu: str, tp: int) -> str:
    return f"{model}@{gpu}/tp{tp}"


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
                name=_name(model, g.hardware, g.tp),
                model=model,
                model_size_b=size,
                gpu=g.hardware,
                tp=g.tp,
                profile=_rounded(profile_from(pre, dec)),
                derived=False,
                prefill_measured=True,
                source={
                    "file": SPLITWISE_FILE,
                    "rows": pre.rows,
                    "rows_in_group": g.rows_total,
                    "filters": filters,
                },
                fit={"prefill": _fit_summary(pre), "decode": _fit_summary(dec)},
            )
        )
    return out


def bench_entries(groups: Sequence[Group], references: Sequence[BuiltinProfile]) -> list[BuiltinProfile]:
    out = []
    for g in groups:
        if g.framework != BENCH_FRAMEWORK or g.model not in BENCH_MODELS or g.hardware not in BENCH_GPUS:
            continue
        if g.e2e is None:
            continue
        model, size = BENCH_MODELS[g.model]
        prior = prefill_prior(references, size, g.hardware, g.tp)
        if prior is None:  # pragma: no cover - every BENCH_GPUS entry has a datasheet
            raise RuntimeError(f"no prefill reference for {g.hardware}")
        prefill, how = prior
        rep = fit_end_to_end(*g.e2e, prefill=prefill)
        filters = "; ".join(
            [
                f"Model={g.model}, Hardware={_BENCH_NAME[g.hardware]!r} (= {g.hardware}), "
                f"Framework={g.framework}, Num of Hardware={g.tp}",
                "latency = prefill(n*L) + (L-1)*iteration(n, n*(L+L/2)), input=output=L",
                how,
                *g.notes,
            ]
        )
        out.append(
            BuiltinProfile(
                name=_name(model, g.hardware, g.tp),
                model=model,
                model_size_b=size,
                gpu=g.hardware,
                tp=g.tp,
                profile=_rounded(profile_from(prefill, rep)),
                derived=False,
                prefill_measured=False,
                source={
                    "file": BENCH_FILE,
                    "rows": rep.rows,
                    "rows_in_group": g.rows_total,
                    "filters": filters,
                },
                fit={"end_to_end": _fit_summary(rep)},
            )
        )
    return out


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
        name=_name(model, gpu, ref.tp),
        model=model,
        model_size_b=size,
        gpu=gpu,
        tp=ref.tp,
        profile=_rounded(profile),
        derived=True,
        prefill_measured=False,
        source={"file": ref.source.get("file", ""), "via": ref.name},
        fit={},
        rule=rule,
        derived_from=ref.name,
    )


def derived_entries(measured: Sequence[BuiltinProfile]) -> list[BuiltinProfile]:
    out = []
    compute, bandwidth = gpu_ratios("A100-40GB", "A100-80GB")
    for ref in measured:
        if ref.gpu == "A100-40GB":
            out.append(
                _derive(
                    ref,
                    model=ref.model,
                    size=ref.model_size_b,
                    gpu="A100-80GB",
                    compute=compute,
                    bandwidth=bandwidth,
                    rule=f"{SCALING_RULE}; A100-40GB -> A100-80GB: same FLOP/s, HBM {GPUS['A100-40GB'].hbm_gbps:g} "
                    f"-> {GPUS['A100-80GB'].hbm_gbps:g} GB/s (memory-bound terms x{bandwidth:.4g})",
                )
            )
    by_name = {e.name: e for e in (*measured, *out)}
    for gpu in ("A100-80GB", "H100-80GB"):
        for tp in DERIVED_13B_TPS:
            sibling = by_name.get(_name("Llama-2-7B", gpu, tp))
            if sibling is None:
                continue
            out.append(
                _derive(
                    sibling,
                    model="13B (Llama-2-13B class)",
                    size=13.0,
                    gpu=gpu,
                    rule=f"{SCALING_RULE}; from Llama-2-7B (same architecture family) on the same GPU and TP, "
                    "every term x13/7",
                )
            )
    return out


def build(data_dir: str | Path) -> dict[str, Any]:
    """The profiles document built from the two tables in ``data_dir`` (see the module docstring)."""
    d = Path(data_dir)
    sw_table = read_table(d / SPLITWISE_FILE)
    bench_table = read_table(d / BENCH_FILE)
    if sw_table.format != "splitwise" or bench_table.format != "llm_inference_bench":
        raise ValueError(f"unexpected formats: {sw_table.format}, {bench_table.format}")
    sw = splitwise_entries(splitwise_groups(sw_table))
    bench = bench_entries(bench_groups(bench_table), sw)
    derived = derived_entries(sw + bench)
    entries = sorted(sw + bench + derived, key=lambda e: (e.gpu, e.model_size_b, e.model, e.tp))
    return {
        "schema_version": 1,
        "description": "Built-in LatencyProfile coefficients (seconds) fitted to public GPU measurements; "
        "see sim/profiles/build_builtin.py for the method.",
        "generated_by": GENERATED_BY,
        "sources": [
            {
                "file": SPLITWISE_FILE,
                "origin": "Mutinifni/splitwise-sim perf_model.csv (Patel et al., Splitwise, ISCA 2024)",
                "license": "MIT",
                "sha256": _sha256(d / SPLITWISE_FILE),
            },
            {
                "file": BENCH_FILE,
                "origin": "argonne-lcf/LLM-Inference-Bench All_results.csv (Chitty-Venkata et al., 2024)",
                "license": "BSD-3-Clause",
                "sha256": _sha256(d / BENCH_FILE),
            },
        ],
        "scaling_rule": SCALING_RULE,
        "gpus": {
            name: {
                "peak_tflops": s.peak_tflops,
                "hbm_gbps": s.hbm_gbps,
                "memory_gb": s.memory_gb,
                "note": s.note,
            }
            for name, s in GPUS.items()
        },
        "excluded": [
            "splitwise hardware h100-80gb-pcap (power-capped; its token_time/e2e_time repeat h100-80gb)",
            "LLM-Inference-Bench frameworks other than vLLM, models other than Llama-2-7B/Llama-3-8B "
            "(70B there is measured directly by Splitwise), hardware other than A100/H100",
        ],
        "profiles": [e.to_json() for e in entries],
    }


def format_table(doc: dict[str, Any]) -> str:
    """A human-readable summary of a built document (one line per entry)."""
    lines = [
        f"{'name':42} {'pre_base':>9} {'pre_tok':>9} {'pre_tok2':>9} {'dec_base':>9} {'dec_seq':>9} "
        f"{'dec_ctx':>9}  fit MAPE %"
    ]
    for e in doc["profiles"]:
        fit = ", ".join(f"{k} {v['mape_pct']:.2f}" for k, v in e["fit"].items()) or "derived"
        lines.append(
            f"{e['name']:42} {e['prefill_base_s']:9.3g} {e['prefill_per_token_s']:9.3g} "
            f"{e['prefill_per_token2_s']:9.3g} {e['decode_base_s']:9.3g} {e['decode_per_seq_s']:9.3g} "
            f"{e['decode_per_ctx_token_s']:9.3g}  {fit}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sim.profiles.build_builtin", description=__doc__.split("\n")[0]
    )
    parser.add_argument("data_dir", type=Path, help="directory holding the two public CSVs (shared/data/gpu)")
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
