"""GPU and model facts the profile fitting needs, and the one scaling rule used to derive profiles.

Why a scaling rule at all: the public tables measure a handful of (model, GPU, TP) combinations, and a
scenario may ask for another one (a 13B model, a 7B model on A100-80GB, ...). Rather than guessing per
case, every derived profile comes from a measured one through :func:`scale_profile`, which splits the six
coefficients into the two physical regimes of transformer inference:

* **compute-bound** terms — ``prefill_per_token_s``, ``prefill_per_token2_s`` and ``decode_per_seq_s``:
  each token processed costs ≈ 2·params FLOPs spread over the TP group, so they scale with
  ``params / (TP · peak FLOP/s)``;
* **memory-bound** terms — ``prefill_base_s``, ``decode_base_s`` and ``decode_per_ctx_token_s``: one
  pass over the weights (and over the KV cache) per step, so they scale with
  ``params / (TP · HBM bandwidth)``.

Known simplifications (documented so nobody mistakes derived numbers for measurements): ideal TP scaling
(all-reduce cost ignored, optimistic for TP > 1 — the Splitwise data shows TP4 → TP8 barely speeds up
decode), KV bytes per token taken ∝ params^0.5 (:data:`KV_SIZE_EXPONENT`), attention FLOPs taken
∝ params (they grow more like params^0.7). Derived entries are therefore marked ``derived: true``.

``step_overhead_s`` (CPU time per engine step) is not GPU work: it is carried over unscaled.

Checked against a measurement: the H200 (same arithmetic as the H100, 4.8 vs 3.35 TB/s) entries scaled
from the H100 vLLM entries are compared with the H200 plain-PyTorch fits by the build script, and the
result is recorded in ``profiles.json`` under ``h200_scaling_check`` (see :mod:`sim.profiles.build_builtin`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from sim.engine.latency import LatencyProfile

COMPUTE_TERMS = ("prefill_per_token_s", "prefill_per_token2_s", "decode_per_seq_s")
MEMORY_TERMS = ("prefill_base_s", "decode_base_s", "decode_per_ctx_token_s")
# Mixed-step coefficients scale like the pure coefficient each one defaults to (sim.engine.latency).
MIXED_COMPUTE_TERMS = ("mixed_per_seq_s", "mixed_per_token_s", "mixed_attn_s")
MIXED_MEMORY_TERMS = ("mixed_base_s", "mixed_compute_base_s", "mixed_per_ctx_token_s")

# KV-read terms scale with KV bytes per token, which grow with depth, not with params: params^0.5 matches
# the model cards (Llama-3-8B -> Qwen2.5-32B: KV x2.0 for params x4.1; Llama-2-7B -> 13B: x1.56 for x1.86;
# Llama-3-8B -> 70B: x2.5 for x8.8) and the H200 kernel fits (decode_per_ctx_token_s x1.92, 8B -> 32B),
# where params^1 was off by +138 % (the H200 check in sim.profiles.build_builtin).
KV_SIZE_EXPONENT = 0.5
KV_TERMS = ("decode_per_ctx_token_s", "mixed_per_ctx_token_s")

SCALING_RULE = (
    "compute-bound terms (prefill_per_token_s, prefill_per_token2_s, decode_per_seq_s) scale with "
    "params/(TP*peak FLOP/s); memory-bound terms (prefill_base_s, decode_base_s) scale with "
    "params/(TP*HBM bandwidth) and the KV-read term decode_per_ctx_token_s with params^0.5/(TP*HBM bandwidth) "
    "(KV bytes per token grow with depth); ideal TP scaling (all-reduce ignored), attention FLOPs taken "
    "proportional to params; step_overhead_s (CPU) unscaled"
)


@dataclass(frozen=True)
class GPUSpec:
    """Datasheet numbers of one GPU type (dense bf16/fp16 tensor-core peak, HBM bandwidth, memory)."""

    name: str
    peak_tflops: float
    hbm_gbps: float
    memory_gb: float
    note: str


# Datasheet values (NVIDIA A100 / H100 / GH200 datasheets). Only ratios between GPUs are used.
GPUS: dict[str, GPUSpec] = {
    "A100-40GB": GPUSpec("A100-40GB", 312.0, 1555.0, 40.0, "A100 SXM4 40GB"),
    "A100-80GB": GPUSpec("A100-80GB", 312.0, 2039.0, 80.0, "A100 SXM4 80GB"),
    "H100-80GB": GPUSpec("H100-80GB", 989.0, 3350.0, 80.0, "H100 SXM5 80GB"),
    "H100-80GB-PCAP": GPUSpec(
        "H100-80GB-PCAP", 989.0, 3350.0, 80.0, "H100 SXM5 80GB, power-capped (Splitwise 'h100-80gb-pcap')"
    ),
    "GH200-96GB": GPUSpec("GH200-96GB", 989.0, 4000.0, 96.0, "GH200 Grace Hopper, 96GB HBM3"),
    # H200: the H100's GH100 chip (same tensor-core peak) with 141 GB of HBM3e at 4.8 TB/s.
    "H200-141GB": GPUSpec("H200-141GB", 989.0, 4800.0, 141.0, "H200 SXM 141GB HBM3e (H100 arithmetic)"),
}

# Spellings users and tables use, after lower-casing and dropping everything but letters and digits and
# the words nvidia/gpu/sxm*. A bare "A100"/"H100" means the 80 GB part, the common serving configuration.
_ALIASES: dict[str, str] = {
    "a100": "A100-80GB",
    "a10080gb": "A100-80GB",
    "a10080g": "A100-80GB",
    "a10040gb": "A100-40GB",
    "a10040g": "A100-40GB",
    "h100": "H100-80GB",
    "h10080gb": "H100-80GB",
    "h10080g": "H100-80GB",
    "h10080gbpcap": "H100-80GB-PCAP",
    "gh200": "GH200-96GB",
    "gh20096gb": "GH200-96GB",
    "h200": "H200-141GB",
    "h200141gb": "H200-141GB",
    "h200141g": "H200-141GB",
}


def _gpu_key(name: str) -> str:
    key = name.lower()
    for word in ("nvidia", "gpu", "sxm5", "sxm4", "sxm"):
        key = key.replace(word, "")
    return re.sub(r"[^a-z0-9]", "", key)


def canonical_gpu(name: str) -> str | None:
    """Canonical GPU name (e.g. ``'A100-80GB'``) for a user or table spelling, or None if unknown."""
    return _ALIASES.get(_gpu_key(name))


@dataclass(frozen=True)
class ModelInfo:
    """What the fitting needs to know about a model.

    ``size_b`` is the parameter count (billions) that does the per-token compute (active parameters for
    a mixture of experts); ``weights_b`` the parameters held in memory; ``kv_bytes_per_token`` the fp16
    KV cache of one token (2·layers·kv_heads·head_dim·2 bytes).
    """

    size_b: float
    weights_b: float
    kv_bytes_per_token: int


# Model cards (config.json) of the models appearing in the two public tables.
MODELS: dict[str, ModelInfo] = {
    "llama2-70b": ModelInfo(69.0, 69.0, 2 * 80 * 8 * 128 * 2),
    "bloom-176b": ModelInfo(176.2, 176.2, 2 * 70 * 14336 * 2),
    "meta-llama/Llama-2-7b-hf": ModelInfo(6.74, 6.74, 2 * 32 * 32 * 128 * 2),
    "meta-llama/Llama-2-70b-hf": ModelInfo(69.0, 69.0, 2 * 80 * 8 * 128 * 2),
    "meta-llama/Meta-Llama-3-8B": ModelInfo(8.03, 8.03, 2 * 32 * 8 * 128 * 2),
    "meta-llama/Meta-Llama-3-70B": ModelInfo(70.6, 70.6, 2 * 80 * 8 * 128 * 2),
    "mistralai/Mistral-7B-v0.1": ModelInfo(7.24, 7.24, 2 * 32 * 8 * 128 * 2),
    "mistralai/Mixtral-8x7B-v0.1": ModelInfo(12.9, 46.7, 2 * 32 * 8 * 128 * 2),
    "Qwen/Qwen2-7B": ModelInfo(7.6, 7.6, 2 * 28 * 4 * 128 * 2),
    "Qwen/Qwen2-72B": ModelInfo(72.7, 72.7, 2 * 80 * 8 * 128 * 2),
    "huggyllama/llama-7b": ModelInfo(6.74, 6.74, 2 * 32 * 32 * 128 * 2),
    # Shapes of the H200 table (h200_torch_iteration_times.csv).
    "llama-3-8b": ModelInfo(8.03, 8.03, 2 * 32 * 8 * 128 * 2),
    "qwen2.5-32b": ModelInfo(32.8, 32.8, 2 * 64 * 8 * 128 * 2),
}


def model_size_from_name(name: str) -> float | None:
    """Parameter count in billions: from :data:`MODELS`, else parsed from a name like ``'Qwen1.5-7B'``."""
    info = MODELS.get(name)
    if info is not None:
        return info.size_b
    found = re.findall(r"(?<![0-9.x])(\d+(?:\.\d+)?)[bB](?![a-zA-Z])", name)
    return float(found[-1]) if found else None


def scale_profile(
    profile: LatencyProfile,
    *,
    size_ratio: float = 1.0,
    tp_ratio: float = 1.0,
    compute_ratio: float = 1.0,
    bandwidth_ratio: float = 1.0,
) -> LatencyProfile:
    """Apply :data:`SCALING_RULE` to a measured profile.

    Ratios are target/reference for ``size_ratio`` (params) and reference/target for the others
    (``tp_ratio = tp_ref / tp``, ``compute_ratio = peak_ref / peak``, ``bandwidth_ratio = bw_ref / bw``), so
    every ratio multiplies a time. Mixed-step coefficients that are given scale like the pure coefficient
    they default to; those left None stay None and so follow the scaled pure ones.
    """
    if min(size_ratio, tp_ratio, compute_ratio, bandwidth_ratio) <= 0:
        raise ValueError("scaling ratios must be positive")
    base = size_ratio * tp_ratio
    kv = size_ratio**KV_SIZE_EXPONENT * tp_ratio
    changes = {name: getattr(profile, name) * base * compute_ratio for name in COMPUTE_TERMS}
    changes.update(
        {name: getattr(profile, name) * (kv if name in KV_TERMS else base) * bandwidth_ratio for name in MEMORY_TERMS}
    )
    for names, ratio in ((MIXED_COMPUTE_TERMS, compute_ratio), (MIXED_MEMORY_TERMS, bandwidth_ratio)):
        for name in names:
            value = getattr(profile, name)
            if value is not None:
                changes[name] = value * (kv if name in KV_TERMS else base) * ratio
    return replace(profile, **changes)


def gpu_ratios(reference_gpu: str, target_gpu: str) -> tuple[float, float]:
    """(compute_ratio, bandwidth_ratio) for :func:`scale_profile` from one known GPU to another."""
    ref, tgt = GPUS[reference_gpu], GPUS[target_gpu]
    return ref.peak_tflops / tgt.peak_tflops, ref.hbm_gbps / tgt.hbm_gbps
