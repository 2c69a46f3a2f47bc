"""The scenario schema. Every field is documented; unknown keys are rejected.

A scenario is the whole experiment: seed, length, GPU inventory, models, deployments, workload, router
and outputs. Cross-field checks that need physics (does a deployment fit its GPUs' memory?) live in
:mod:`sim.config.checks` so this file stays declarative.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from sim.engine.latency import MIXED_TERMS

# Every number has a physically sensible range: a value far outside it is a typo (or a fuzzer), and
# finite-but-huge values used to overflow deep inside (NaN memory, a deadlocked engine, null costs).
# ``llmsim schema`` prints each range next to the field's description.
DAY_S = 86400.0
#: Longest duration or time point a scenario may name (about 3 years); see also the horizon check in
#: :mod:`sim.config.checks`, which keeps the whole simulated span within float64 precision.
MAX_SECONDS = 1e8
MAX_TOKENS = 10_000_000
MAX_SEED = 2**63 - 1

PosFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
PosInt = Annotated[int, Field(gt=0)]
Prob = Annotated[float, Field(ge=0, le=1)]



class AtLeast:
    """A positive value's smallest sensible size. Kept apart from ``gt=0`` so a negative or zero value
    still reads "greater than 0", and a tiny positive one gets a message naming the floor.
    :mod:`sim.config.reference` prints ``lo`` as the lower end of the field's range."""

    def __init__(self, lo: float, why: str) -> None:
        self.lo, self.why = lo, why

    def __call__(self, value: float) -> float:
        if value < self.lo:
            raise ValueError(f"must be at least {self.lo:g} ({self.why})")
        return value


Seconds = Annotated[float, Field(ge=0, le=MAX_SECONDS)]
"""A time point or duration in the run, 0 allowed."""
PosSeconds = Annotated[float, Field(gt=0, le=MAX_SECONDS)]
WindowSeconds = Annotated[float, Field(ge=0, le=DAY_S)]
"""A waiting window: at most a day."""
IntervalSeconds = Annotated[
    float, Field(gt=0, le=DAY_S), AfterValidator(AtLeast(1e-6, "a microsecond: the clock's resolution"))
]
"""A repeating period (batch interval, sampling): 1 µs to a day."""
#: Built-in profile sources a scenario may name (sim.profiles.builtin.SOURCES; a test keeps them equal).
BuiltinSource = Literal["vllm-bench", "splitwise", "h200-torch", "derived"]
StepSeconds = Annotated[float, Field(ge=0, le=60)]
"""Fixed cost of one engine step: a minute is already absurd for one prefill or decode iteration."""
PerTokenSeconds = Annotated[float, Field(ge=0, le=1)]
PerToken2Seconds = Annotated[float, Field(ge=0, le=1e-3)]
Rate = Annotated[
    float, Field(gt=0, le=1e7), AfterValidator(AtLeast(1e-6, "one arrival per ~12 days"))
]
"""Arrivals per second: one per ~12 days up to ten million per second."""
PricePerHour = Annotated[float, Field(ge=0, le=1e4)]
PricePerMTok = Annotated[float, Field(ge=0, le=1e4)]
USD = Annotated[float, Field(ge=0, le=1e4)]
MemoryGiB = Annotated[float, Field(gt=0, le=16384)]
"""Up to 16 TiB per GPU, room for an API pseudo-GPU with 'ample' memory."""
Tokens = Annotated[int, Field(ge=1, le=MAX_TOKENS)]
TokenMean = Annotated[float, Field(gt=0, le=MAX_TOKENS)]
Sigma = Annotated[float, Field(ge=0, le=10)]
Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]
Weight = Annotated[float, Field(gt=0, le=1e9)]
BetaParam = Annotated[float, Field(gt=0, le=1e3), AfterValidator(AtLeast(1e-3, "smaller is all mass at 0 or 1"))]
Name = Annotated[str, Field(min_length=1, max_length=200)]
PathText = Annotated[str, Field(min_length=1, max_length=4096)]
SLUG = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


def _slug(value: str) -> str:
    """A name that is safe as one path component (no '/', no leading '.', no spaces)."""
    if not re.fullmatch(SLUG, value):
        raise ValueError("expected a safe slug: 1-64 letters, digits, '.', '_' or '-', starting with a letter "
                         "or digit (it names the run folder)")
    return value


class Strict(BaseModel):
    """Base of every schema section: unknown keys are errors, and types are strict (YAML gives native
    types, so ``true`` is never an integer, ``"yes"`` never a boolean and ``"1"`` never a number; floats
    accept integers), and no float may be inf or NaN."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_default=True, strict=True, allow_inf_nan=False
    )


# ----------------------------------------------------------------------------- cluster
class GPUType(Strict):
    """A GPU type and how many of it the cluster owns."""

    name: Annotated[Name, Field(pattern=r"^[^@]+$")] = Field(
        description="Name used by models' latency profiles and by deployments, e.g. 'A100-80GB' (no '@': "
        "it separates the GPU from the tp in latency keys)."
    )
    memory_gib: MemoryGiB = Field(description="Memory per GPU in GiB.")
    cost_per_hour: PricePerHour = Field(0.0, description="USD per GPU-hour (self-hosted infrastructure cost).")
    count: Annotated[int, Field(ge=1, le=1_000_000)] = Field(
        description="Number of GPUs of this type in the inventory."
    )


class LatencySpec(Strict):
    """Latency of a model on a GPU type (see sim.engine.latency.LatencyProfile).

    Prefill of newly admitted requests with P prompt tokens in all takes
    ``prefill_base_s + prefill_per_token_s·P + prefill_per_token2_s·P²``; one decode iteration with n
    sequences and ctx context tokens takes ``decode_base_s + decode_per_seq_s·n + decode_per_ctx_token_s·ctx``.
    """

    prefill_base_s: StepSeconds = Field(0.0, description="Fixed cost of a prefill step (s).")
    prefill_per_token_s: PerTokenSeconds = Field(0.0, description="Prefill seconds per prompt token.")
    prefill_per_token2_s: PerToken2Seconds = Field(0.0, description="Quadratic prefill term (attention), s/token².")
    decode_base_s: StepSeconds = Field(0.0, description="Fixed cost of a decode iteration (s).")
    decode_per_seq_s: PerTokenSeconds = Field(0.0, description="Decode-iteration seconds per running sequence.")
    decode_per_ctx_token_s: PerTokenSeconds = Field(
        0.0, description="Decode-iteration seconds per context token held by the batch (KV reads)."
    )
    # Mixed (chunked-prefill) steps of the paged scheduler; unset = derived from the pure coefficients
    # (sim/engine/latency.py explains the roofline form); `llmsim calibrate` fits them from a mixed-step table.
    mixed_base_s: StepSeconds | None = Field(
        None, description="Mixed step: weight-read-bound base (s); default decode_base_s."
    )
    mixed_per_seq_s: PerTokenSeconds | None = Field(
        None, description="Mixed step: weight-read-bound seconds per decode sequence; default decode_per_seq_s."
    )
    mixed_compute_base_s: StepSeconds | None = Field(
        None, description="Mixed step: arithmetic-bound base (s); default prefill_base_s."
    )
    mixed_per_token_s: PerTokenSeconds | None = Field(
        None, description="Mixed step: arithmetic seconds per token (chunk + decodes); default prefill_per_token_s."
    )
    mixed_attn_s: PerToken2Seconds | None = Field(
        None, description="Mixed step: seconds per unit of chunk attention work Σ c·(q + c/2); default "
        "2·prefill_per_token2_s."
    )
    mixed_per_ctx_token_s: PerTokenSeconds | None = Field(
        None, description="Mixed step: seconds per decode context token; default decode_per_ctx_token_s."
    )
    builtin: bool | BuiltinSource = Field(
        False,
        description="Use the built-in profile fitted from public GPU measurements (sim/data/profiles.json) "
        "for the model's params_b on this GPU at the deployment's tp; the coefficients above must then be unset. "
        "true: the default source policy (vLLM measurements where they cover the size/GPU/tp, else Splitwise, "
        "else derived by the scaling rule; the nearest entry is scaled when none matches exactly). A source name "
        "(vllm-bench, splitwise, h200-torch, derived) uses that source only and needs an entry with this GPU and "
        "tp and a size within x1.15 (else a load-time error listing what the source has); h200-torch is a "
        "plain-PyTorch kernel measurement (no serving engine) and only used when named.",
    )
    step_overhead_s: Annotated[float, Field(ge=0, le=0.1)] | None = Field(
        None,
        description="CPU time per engine step (scheduling, input preparation, sampling), added once to every "
        "prefill, decode and mixed step and never scaled with the GPU; 0 to 0.1 s. Unset: with builtin, the "
        "entry's own value (0.58 ms for vllm-bench entries and those derived from them, identified as vLLM's "
        "decode intercept minus the H200 kernel intercept on Llama-3-8B at tp 1; 0 for splitwise and h200-torch "
        "entries, whose overhead is inside their bases or absent); with coefficients, 0 (a fit of measured step "
        "times already holds it in the bases). Set it to add serving-engine overhead to kernel-only coefficients "
        "(e.g. builtin: h200-torch): omitting it under-predicts TTFT of short prompts. Caveat: identified on one "
        "model at tp 1 only; a real engine's overhead grows with batch size and tp.",
    )

    @model_validator(mode="after")
    def _builtin_alone(self) -> LatencySpec:
        if self.builtin is not False and (
            any(getattr(self, f) for f in COEFFICIENTS) or any(getattr(self, f) is not None for f in MIXED_TERMS)
        ):
            raise ValueError("builtin takes no coefficients (they come from the built-in table)")
        return self


COEFFICIENTS = (
    "prefill_base_s",
    "prefill_per_token_s",
    "prefill_per_token2_s",
    "decode_base_s",
    "decode_per_seq_s",
    "decode_per_ctx_token_s",
)


class ModelSpec(Strict):
    """A model: its size (for memory), its prices, where its quality comes from, and its latency."""

    name: Name = Field(description="Unique model name; the router's columns follow the order of `models`.")
    params_b: Annotated[float, Field(gt=0, le=1e5)] = Field(
        description="Parameters in billions (weights memory = params_b·1e9·bytes_per_param)."
    )
    bytes_per_param: Annotated[float, Field(gt=0, le=8)] = Field(
        2.0, description="Bytes per weight (2 = fp16/bf16, 1 = fp8/int8, 0.5 = 4-bit)."
    )
    kv_bytes_per_token: Annotated[int, Field(ge=1, le=2**28)] = Field(
        131072,
        description="KV-cache bytes per token (2·layers·kv_heads·head_dim·bytes; 128 KiB for Llama-3-8B, "
        "320 KiB for Llama-3-70B).",
    )
    price_in_per_mtok: PricePerMTok | None = Field(
        None,
        description="USD per million input tokens billed per query. Unset: taken from the scenario's "
        "prices_file, else looked up by name (dataset_model or name) in the genai-prices library; a model "
        "found in neither is an error (set 0 for a self-hosted model billed only by GPU time).",
    )
    price_out_per_mtok: PricePerMTok | None = Field(
        None, description="USD per million output tokens billed per query (resolved like price_in_per_mtok)."
    )
    strength: Annotated[float, Field(ge=-100, le=100)] | None = Field(
        None, description="Synthetic pool only: ability on the difficulty scale (success = sigmoid(slope·(strength − difficulty))).",
    )
    verbosity: Annotated[float, Field(gt=0, le=100)] = Field(1.0, description="Synthetic pool: multiplier on the task's output length.")
    dataset_model: Name | None = Field(
        None, description="Dataset pools: the model's name in the dataset (default: `name`)."
    )
    latency: dict[str, LatencySpec] = Field(
        description="Latency profile per GPU type; key 'GPU' or 'GPU@tpN' for a profile measured at tensor "
        "parallel degree N (preferred when the deployment's tp matches).",
    )


# ----------------------------------------------------------------------------- memory not left to KV
#: Default activation reserve per GPU (GiB) by model size: (params_b below, GiB), first match wins.
#: Basis: vLLM's startup profile ("model weights take X GiB; non_torch_memory takes Y GiB; PyTorch
#: activation peak memory takes Z GiB; the rest of the memory reserved for KV Cache ..."). For
#: Llama-3-8B on one H100 it reports non-torch 1.79 GiB + activation peak 1.26 GiB = 3.05 GiB
#: (vllm-project/vllm#10511); larger models carry a wider residual stream and bigger logits that tensor
#: parallelism does not shard, hence the higher bands. Since vLLM 0.21 captured CUDA graphs are
#: counted too (a few hundred MiB), within these figures' rounding.
ACTIVATION_RESERVE_BANDS_GIB: tuple[tuple[float, float], ...] = ((15.0, 3.0), (50.0, 3.5), (float("inf"), 4.0))
#: Extra reserve per GPU when tp > 1: NCCL and custom all-reduce buffers (non-torch memory). The same
#: Llama-3-8B at tp 2 reports non-torch 3.58 GiB per GPU instead of 1.79 GiB.
ACTIVATION_RESERVE_TP_EXTRA_GIB = 1.8


def default_activation_reserve_gib(params_b: float, tp: int) -> float:
    """Per-GPU memory a vLLM-like engine keeps for activations, CUDA graphs, the sampler and
    communication buffers, by model size and tensor-parallel degree (see the bands above)."""
    base = next(gib for below, gib in ACTIVATION_RESERVE_BANDS_GIB if params_b < below)
    return base + (ACTIVATION_RESERVE_TP_EXTRA_GIB if tp > 1 else 0.0)


def _reserve_table_text() -> str:
    """The default rule in words, for the field's description (built from the constants above so the
    docs cannot drift from the code)."""
    parts, lo = [], 0.0
    for below, gib in ACTIVATION_RESERVE_BANDS_GIB:
        span = f"params_b < {below:g}" if lo == 0 else (f"{lo:g} <= params_b < {below:g}" if below != float("inf")
                                                        else f"params_b >= {lo:g}")
        parts.append(f"{span}: {gib:g} GiB")
        lo = below
    return "; ".join(parts)


#: Deployment fields that only the paged scheduler reads (an error to set with ``scheduler: reserve``).
PAGED_ONLY = ("block_size", "max_num_batched_tokens", "chunked_prefill", "prefix_cache", "watermark")


class Deployment(Strict):
    """Instances of one model on one GPU type."""

    model: Name = Field(description="Name of a model in `models`.")
    gpu: Name = Field(description="Name of a GPU type in `gpus`.")
    tp: Annotated[int, Field(ge=1, le=1024)] = Field(1, description="Tensor-parallel degree: GPUs per instance.")
    instances: Annotated[int, Field(ge=0, le=100_000)] = Field(
        1, description="Number of instances (0-100000). 0 keeps the model listed — its router column and "
        "predictions unchanged — without serving it: the router sees no capacity for it (what `llmsim plan` "
        "writes for a model a plan leaves out, and a quick what-if: `--set deployments.2.instances=0`).")
    max_seqs: Annotated[int, Field(ge=1, le=1_000_000)] = Field(256, description="Max concurrent sequences per instance (continuous batching).")
    gpu_memory_utilization: Annotated[float, Field(gt=0, le=1)] = Field(
        0.9, description="Fraction of GPU memory usable for weights + KV cache (vLLM's default 0.9)."
    )
    queue: Literal["per_instance", "shared"] = Field(
        "per_instance",
        description="'per_instance': the dispatcher joins the shortest instance queue; 'shared': one FIFO "
        "queue per deployment from which free instances pull (M/M/c-like).",
    )
    max_queue: Annotated[int, Field(ge=0, le=1_000_000_000)] | None = Field(
        None,
        description="Queued requests per instance the router may count as capacity (None = unlimited); "
        "see router.capacity.",
    )
    scheduler: Literal["paged", "reserve"] = Field(
        "paged",
        description="Instance scheduler. 'paged' follows vLLM v1: KV in blocks of block_size tokens held "
        "for the tokens a request has, a token budget per step (max_num_batched_tokens) shared by decodes "
        "and prefill chunks, preemption by recompute when blocks run out, optional prefix caching. "
        "'reserve' reserves a request's full prompt + output KV at admission, prefills whole prompts in "
        "steps of their own and never preempts (the M/M/c validation and concurrency-cap studies use it). "
        "The paged-only fields below are errors with 'reserve'.",
    )
    block_size: Annotated[int, Field(ge=1, le=1024)] = Field(
        16, description="paged: KV tokens per block (vLLM's default 16); a request holds ceil(context / "
        "block_size) blocks."
    )
    max_num_batched_tokens: Annotated[int, Field(ge=1, le=MAX_TOKENS)] = Field(
        8192,
        description="paged: token budget of one step: running decodes (one token each) first, then prefill "
        "chunks in FIFO order. Must be >= max_seqs (as vLLM requires), so every running sequence can decode.",
    )
    chunked_prefill: bool = Field(
        True,
        description="paged: split prompts into chunks that fill a step's leftover token budget; false "
        "admits a waiting prompt only when all of it fits the leftover budget.",
    )
    prefix_cache: bool = Field(
        False,
        description="paged: share the KV of a request's cached leading prompt blocks (they skip prefill); "
        "cached blocks of finished requests stay until evicted LRU. Needs prefix hashes (a Mooncake trace's "
        "hash_ids) and a block_size dividing workload.arrivals.prefix_block_tokens.",
    )
    watermark: Annotated[float, Field(ge=0, le=0.5)] = Field(
        0.01,
        description="paged: fraction of an instance's KV blocks a new admission must leave free (vLLM's "
        "0.01), so running requests can grow before anything is preempted.",
    )
    activation_reserve_gib: Annotated[float, Field(ge=0, le=16384)] | None = Field(
        None,
        description="GPU memory per GPU that the engine keeps for activations, CUDA graphs, the sampler and "
        "communication buffers, unavailable to the KV cache (both schedulers): KV tokens = (tp × "
        "memory_gib × gpu_memory_utilization − weights − tp × activation_reserve_gib) / kv_bytes_per_token. "
        "Unset: by model size, per GPU, from vLLM's startup memory profile (non-torch memory + activation "
        f"peak; Llama-3-8B on an H100 reports 3.05 GiB): {_reserve_table_text()}; plus "
        f"{ACTIVATION_RESERVE_TP_EXTRA_GIB:g} GiB per GPU when tp > 1 (all-reduce buffers). 0 gives the "
        "old weights-only upper bound.",
    )

    @model_serializer(mode="wrap")
    def _drop_paged_fields(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """A reserve deployment's dump omits the paged-only fields: they do not apply, and a resolved
        scenario.yaml that listed them would be refused when loaded again (setting them with
        ``scheduler: reserve`` is an error)."""
        data: dict[str, Any] = handler(self)
        if self.scheduler == "reserve":
            for name in PAGED_ONLY:
                data.pop(name, None)
        return data


# ----------------------------------------------------------------------------- workload
class DiurnalModulation(Strict):
    """rate(t) = rate·(1 + amplitude·sin(2π(t/period_s) + phase))."""

    type: Literal["diurnal"] = Field(description="Modulation kind: 'diurnal'.")
    amplitude: Annotated[float, Field(ge=0, lt=1)] = Field(description="Relative swing, in [0, 1).")
    period_s: Annotated[float, Field(gt=0, le=MAX_SECONDS), AfterValidator(AtLeast(1e-3, "a millisecond"))] = Field(86400.0, description="Period in seconds.")
    phase: Annotated[float, Field(ge=-1000, le=1000)] = Field(0.0, description="Phase in radians.")


class PiecewiseModulation(Strict):
    """rate(t) = rate·multiplier of the last step whose start_s ≤ t."""

    type: Literal["piecewise"] = Field(description="Modulation kind: 'piecewise'.")
    # strict=False on the tuple only: YAML gives a list; its items stay strict numbers.
    steps: list[Annotated[tuple[Seconds, Annotated[float, Field(ge=0, le=1e6)]], Field(strict=False)]] = Field(
        min_length=1, description="[[start_s, multiplier], ...] with increasing start_s, the first at 0."
    )

    @model_validator(mode="after")
    def _steps(self) -> PiecewiseModulation:
        starts = [s for s, _ in self.steps]
        if starts[0] != 0:
            raise ValueError(f"the first step must start at 0, got {starts[0]:g}")
        if any(b <= a for a, b in zip(starts, starts[1:], strict=False)):
            raise ValueError("step start times must increase strictly")
        if all(m == 0 for _, m in self.steps):
            raise ValueError("every multiplier is 0: nothing would ever arrive")
        return self


Modulation = Annotated[DiurnalModulation | PiecewiseModulation, Field(discriminator="type")]


class PoissonArrivals(Strict):
    type: Literal["poisson"] = Field(description="Arrival process kind: 'poisson'.")
    rate: Rate = Field(description="Mean arrivals per second.")
    modulation: Modulation | None = Field(None, description="Optional rate modulation over time.")


class GammaArrivals(Strict):
    type: Literal["gamma"] = Field(description="Arrival process kind: 'gamma'.")
    rate: Rate = Field(description="Mean arrivals per second.")
    cv: Annotated[float, Field(gt=0, le=100), AfterValidator(AtLeast(1e-3, "Gamma shape 1/cv² stays finite"))] = Field(description="Coefficient of variation of inter-arrival times (1 = Poisson).")
    modulation: Modulation | None = Field(None, description="Optional rate modulation over time.")


class BatchArrivals(Strict):
    type: Literal["batch"] = Field(description="Arrival process kind: 'batch'.")
    batch_size: Annotated[int, Field(ge=1, le=1_000_000)] = Field(
        description="Queries per batch (they arrive at the same instant)."
    )
    interval_s: IntervalSeconds = Field(description="Seconds between batches.")


class TraceArrivals(Strict):
    type: Literal["trace"] = Field(description="Arrival process kind: 'trace'.")
    path: PathText = Field(description="Trace file; a relative path is resolved against the scenario file.")
    format: Literal["azure", "mooncake", "auto"] = Field(
        "auto", description="'azure' (CSV TIMESTAMP,ContextTokens,GeneratedTokens), 'mooncake' (JSONL), or by extension."
    )
    time_scale: Annotated[float, Field(gt=0, le=1e6), AfterValidator(AtLeast(1e-6, "a millionth"))] = Field(1.0, description="Replay at this multiple of the trace's rate.")
    start_s: Seconds = Field(0.0, description="Skip the trace's first start_s seconds.")
    use_trace_tokens: bool = Field(
        True, description="Use the trace's prompt/output token counts instead of the query pool's."
    )
    prefix_block_tokens: Annotated[int, Field(ge=1, le=MAX_TOKENS)] = Field(
        512,
        description="Prompt tokens covered by one prefix hash of the trace (Mooncake hash_ids: 512). A "
        "deployment with prefix_cache: true needs a block_size that divides it.",
    )


Arrivals = Annotated[
    PoissonArrivals | GammaArrivals | BatchArrivals | TraceArrivals, Field(discriminator="type")
]


class TaskSpec(Strict):
    """A task of the synthetic pool (lengths are lognormal, clipped)."""

    name: Name = Field(description="Task name.")
    weight: Weight = Field(1.0, description="Relative share of the query mix.")
    difficulty_a: BetaParam = Field(2.0, description="Difficulty ~ Beta(a, b) on [0, 1]: a.")
    difficulty_b: BetaParam = Field(2.0, description="Difficulty ~ Beta(a, b) on [0, 1]: b.")
    prompt_median: TokenMean = Field(1020.0, description="Median prompt tokens.")
    prompt_sigma: Sigma = Field(1.0, description="Lognormal sigma of prompt tokens.")
    output_median: TokenMean = Field(129.0, description="Median output tokens.")
    output_sigma: Sigma = Field(1.0, description="Lognormal sigma of output tokens.")
    length_dist: Literal["lognormal", "geometric"] = Field(
        "lognormal",
        description="'geometric': prompt and output tokens are geometric with means prompt_median and "
        "output_median (memoryless lengths, for queueing-theory checks).",
    )

    @model_validator(mode="after")
    def _geometric_means(self) -> TaskSpec:
        if self.length_dist == "geometric" and min(self.prompt_median, self.output_median) < 1:
            raise ValueError("geometric lengths need prompt_median and output_median >= 1 (they are means)")
        return self


class SyntheticPool(Strict):
    """Synthetic queries: no external data needed."""

    type: Literal["synthetic"] = Field(description="Query pool kind: 'synthetic'.")
    tasks: list[TaskSpec] | None = Field(
        None, min_length=1, max_length=10_000, description="Tasks (1-10000); default: the built-in 4-task mix."
    )

    @model_validator(mode="after")
    def _unique_tasks(self) -> SyntheticPool:
        names = [t.name for t in self.tasks or []]
        dup = sorted({x for x in names if names.count(x) > 1})
        if dup:
            raise ValueError(f"task {dup[0]!r} is listed twice")
        return self
    slope: Annotated[float, Field(gt=0, le=1000)] = Field(8.0, description="Steepness of success probability vs (strength − difficulty).")
    max_prompt_tokens: Tokens = Field(16384, description="Prompt tokens are clipped to this.")
    max_output_tokens: Tokens = Field(4096, description="Output tokens are clipped to this.")


class DatasetPool(Strict):
    """Queries from a real per-query correctness dataset (see sim.datasets)."""

    type: Literal["dataset"] = Field(description="Query pool kind: 'dataset'.")
    kind: str = Field(description="Loader: long_table, mmlu_pro, dcrouter or routerbench.")
    path: PathText | Annotated[list[PathText], Field(min_length=1, max_length=1000)] = Field(
        description="File or folder (routerbench: every .csv/.parquet in it, in name order; dcrouter: "
        "train.json and test.json), or, for routerbench, a list of files (e.g. [train.csv, test.csv]); a "
        "relative path is resolved against the scenario file."
    )

    @property
    def paths(self) -> list[str]:
        """``path`` as a list (one item when it names one file or folder)."""
        return [self.path] if isinstance(self.path, str) else list(self.path)
    trusted: bool = Field(False, description="Allow unpickling a .pkl RouterBench file (runs code from it).")
    split: Literal["seeded", "files"] = Field(
        "seeded",
        description="'seeded': hold out test_fraction of the queries (task-stratified, seeded). 'files': "
        "the dataset's own split: files whose name has the word 'test' (or 'testing') are simulated, "
        "those with 'train' (or 'training') train the predictor (routerbench folder; dcrouter folder).",
    )
    test_fraction: Annotated[float, Field(gt=0, lt=1)] = Field(
        0.3,
        description="split: seeded: share of queries held out for the simulation, in (0, 1); the rest "
        "trains the predictor. A test part under 2 queries is refused, under 20 (or replayed over 50 "
        "times per query) warned about.",
    )
    on_duplicate: Literal["error", "first"] = Field(
        "error",
        description="A repeated query id (routerbench sample_id; long_table query_id+model): 'error' "
        "stops, 'first' keeps the first row and drops the others (counted in the summary's data).",
    )
    on_missing_score: Literal["error", "drop"] = Field(
        "error",
        description="An empty/NaN score (routerbench, long_table): 'error' stops, 'drop' drops the row "
        "(counted in the summary's data). Other loaders accept only 'error'.",
    )
    tasks: dict[str, Weight] | None = Field(
        None, description="Task mix to sample arrivals from (task → weight); default: the dataset's own mix."
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="Loader-specific options (e.g. dcrouter {task: heuristic})."
    )


Pool = Annotated[SyntheticPool | DatasetPool, Field(discriminator="type")]


class Ordering(Strict):
    """How queries are matched to arrival slots (adversarial batching sorts them)."""

    mode: Literal["random", "by_difficulty", "by_cost", "by_task"] = Field(
        "random", description="'random' shuffles; the others make consecutive batches homogeneous."
    )
    descending: bool = Field(True, description="by_difficulty / by_cost: hardest or dearest first.")
    strong_model: Name | None = Field(None, description="by_cost: the model whose cost sorts (default: the best).")


class Workload(Strict):
    arrivals: Arrivals = Field(description="Arrival process.")
    pool: Pool = Field(description="Where queries come from.")
    order: Ordering = Field(default_factory=lambda: Ordering(), description="Query order over arrivals.")


# ----------------------------------------------------------------------------- router
class PredictorSpec(Strict):
    name: Name = Field("noisy_oracle", description="Predictor: noisy_oracle, task_mean or knn.")
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="Predictor parameters, e.g. {noise: 0.1}; checked at load against the predictor's typed "
        "parameters (names, types and ranges: see sim/predictors).",
    )


SloSeconds = Annotated[float, Field(gt=0, le=DAY_S)]
"""A latency target: above zero, at most a day."""
PenaltyPerSecond = Annotated[float, Field(ge=0, le=1e6)]


SloMode = Literal["constraint", "penalty"]


class SloSpec(Strict):
    """Latency targets the router sees (issue 12): each query gets a predicted TTFT and end-to-end latency
    per model from the live cluster state (sim/engine/estimate.py), and batch policies take the SLO of
    ``route_on`` as a constraint or a penalty."""

    ttft_s: SloSeconds | None = Field(None, description="Time-to-first-token SLO in seconds (0-86400), or None.")
    e2e_s: SloSeconds | None = Field(None, description="End-to-end latency SLO in seconds (0-86400), or None.")
    route_on: Literal["e2e", "ttft"] = Field(
        "e2e", description="Which SLO the router routes on; that SLO must be set."
    )
    mode: SloMode = Field(
        "constraint",
        description="'constraint' or 'penalty'. constraint: a (query, model) pair predicted to miss the SLO is infeasible, and each "
        "model's capacity in a batch is the number of queries it can finish within the SLO given its queue "
        "(min'd with router.capacity's); penalty: such a pair pays penalty × (predicted − SLO) seconds in "
        "the objective, capacity unchanged.",
    )
    penalty: PenaltyPerSecond = Field(
        0.0,
        description="Penalty μ (0-1e6) in objective units per second over the SLO (quality for max-quality "
        "problems, USD for min-cost ones); 0 = the SLO changes nothing in penalty mode.",
    )


class Router(Strict):
    """What a batch is, and how it is routed."""

    policy: Name = Field(description="Policy name (see `llmsim policies`).")
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="Policy parameters; names and value types are checked at load against the policy's "
        "signature (finite numbers only).",
    )
    window_s: WindowSeconds = Field(
        0.0,
        description="Batching window Δ: queries arriving within Δ of the first pending one are routed "
        "together. 0 = route each arrival group (a batch arrival, or a single query) at once.",
    )
    budget_per_query: USD | None = Field(
        None, description="Batch budget = this × batch size (USD); None = no budget row."
    )
    min_quality: Prob | None = Field(None, description="Mean predicted-quality floor α per batch.")
    allow_reject: bool = Field(False, description="May the policy leave a query unserved (quality 0).")
    capacity: Literal["slots", "slots_and_queue", "unlimited"] = Field(
        "slots_and_queue",
        description="Per-model capacity in the routing problem: free sequence slots; plus free queue places "
        "(deployment max_queue); or unlimited.",
    )
    predictor: PredictorSpec = Field(default_factory=lambda: PredictorSpec(), description="Quality predictor.")
    slo: SloSpec | None = Field(
        None, description="Latency SLOs the router routes on (see router.slo); None = latency-blind routing."
    )


class Outputs(Strict):
    requests: bool = Field(True, description="Write requests.parquet (one row per query).")
    batches: bool = Field(True, description="Write batches.parquet (one row per routed batch).")
    latency_estimates: bool = Field(
        False,
        description="Record the latency estimator's prediction of every served query (requests.parquet "
        "predicted_ttft_s / predicted_e2e_s) and report its accuracy in the summary. Always on when "
        "router.slo is set (routing uses the estimates); off by default otherwise because estimating on "
        "the per-query routing path costs about a third more run time on light scenarios.",
    )
    sample_interval_s: IntervalSeconds | None = Field(
        None, description="Queue/occupancy sampling period; default: duration / 2000."
    )


# ----------------------------------------------------------------------------- events
EventMultiplier = Annotated[float, Field(gt=0, le=1e6)]


class NodeFailure(Strict):
    """Instances of one deployment fail at ``at_s`` (and come back empty at ``recover_at_s``); see
    docs/events.md."""

    kind: Literal["node_failure"] = Field(description="Event kind: 'node_failure'.")
    at_s: Seconds = Field(description="Failure time (s); before the arrivals end.")
    deployment: Annotated[int, Field(ge=0, le=9_999)] = Field(
        description="Index of the deployment in `deployments` (0-based; the summary names it "
        "model@gpu#index)."
    )
    instances: Annotated[list[Annotated[int, Field(ge=0, le=99_999)]], Field(min_length=1, max_length=100_000)] | None = Field(
        None, description="Indices of the failing instances within the deployment (0-based); or give count."
    )
    count: Annotated[int, Field(ge=1, le=100_000)] | None = Field(
        None, description="The first `count` instances of the deployment fail (indices 0..count-1); or give instances."
    )
    recover_at_s: PosSeconds | None = Field(
        None, description="Time (s, > at_s) at which they come back, empty; None = never."
    )
    on_failure: Literal["requeue", "lose"] = Field(
        "requeue",
        description="Their running and queued requests: 'requeue' restarts them from scratch on surviving "
        "instances of the same model (held until a scheduled recovery when none survives, else lost); "
        "'lose' marks them lost.",
    )

    @model_validator(mode="after")
    def _which(self) -> NodeFailure:
        if (self.instances is None) == (self.count is None):
            raise ValueError("give exactly one of instances or count")
        if self.instances is not None and len(set(self.instances)) != len(self.instances):
            raise ValueError("instances lists an index twice")
        if self.recover_at_s is not None and self.recover_at_s <= self.at_s:
            raise ValueError(f"recover_at_s ({self.recover_at_s:g}) must be after at_s ({self.at_s:g})")
        return self

    @property
    def indices(self) -> tuple[int, ...]:
        """The failing instances' indices within the deployment."""
        return tuple(self.instances) if self.instances is not None else tuple(range(self.count or 0))


class RateChange(Strict):
    """The arrival rate is multiplied by ``multiplier`` on [start_s, end_s) (a burst or a lull)."""

    kind: Literal["rate_change"] = Field(description="Event kind: 'rate_change'.")
    start_s: Seconds = Field(description="Start of the window (s); before the arrivals end.")
    end_s: PosSeconds = Field(description="End of the window (s, > start_s; excluded).")
    multiplier: EventMultiplier = Field(
        description="Rate multiplier in (0, 1e6]: 2 = a x2 burst, 0.5 = a lull. Overlapping windows multiply."
    )

    @model_validator(mode="after")
    def _window(self) -> RateChange:
        if self.end_s <= self.start_s:
            raise ValueError(f"end_s ({self.end_s:g}) must be after start_s ({self.start_s:g})")
        return self


class PriceChange(Strict):
    """From ``at_s`` on, queries routed to ``model`` are priced at ``multiplier`` × its base prices."""

    kind: Literal["price_change"] = Field(description="Event kind: 'price_change'.")
    at_s: Seconds = Field(description="Time (s) from which queries decided (routed) are charged the new price.")
    model: Name = Field(description="Name of a model in `models`.")
    multiplier: EventMultiplier = Field(
        description="New price = multiplier × the model's base price (input and output tokens, or the "
        "dataset's recorded cost); not compounded: the latest change at or before the decision time holds."
    )


Event = Annotated[NodeFailure | RateChange | PriceChange, Field(discriminator="kind")]


# ----------------------------------------------------------------------------- scenario
class Scenario(Strict):
    """A complete, reproducible experiment."""

    name: Annotated[str, AfterValidator(_slug)] = Field(
        description="Short name, used in the default output folder runs/<name>-<policy>-s<seed>: a safe slug "
        "of 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit (no '/', no '..' prefix)."
    )
    description: Annotated[str, Field(max_length=10_000)] = Field("", description="Free text.")
    seed: Seed = Field(description="Root seed; every random stream derives from it.")
    duration_s: PosSeconds | None = Field(
        None, description="Arrivals stop after this many seconds (with num_queries too: whichever comes first)."
    )
    num_queries: Annotated[int, Field(ge=1, le=1_000_000_000)] | None = Field(None, description="Arrivals stop after this many queries.")
    drain: bool = Field(True, description="Let queued and running requests finish after arrivals stop.")
    warmup_s: Seconds = Field(0.0, description="Requests arriving before this are left out of latency stats.")
    prices_file: PathText | None = Field(
        None,
        description="CSV price table (columns model, price_in_per_mtok, price_out_per_mtok) for models "
        "whose prices are unset; relative to the scenario file.",
    )
    gpus: list[GPUType] = Field(min_length=1, max_length=1000, description="GPU types and inventory (1-1000).")
    models: list[ModelSpec] = Field(
        min_length=1, max_length=1000, description="Models (router columns, in this order; 1-1000)."
    )
    deployments: list[Deployment] = Field(
        min_length=1, max_length=10_000, description="Model instances on GPUs (1-10000)."
    )
    workload: Workload = Field(description="Arrivals and queries.")
    router: Router = Field(description="Batching and routing policy.")
    outputs: Outputs = Field(default_factory=lambda: Outputs(), description="What the run folder holds.")
    events: list[Event] = Field(
        default_factory=list, max_length=10_000,
        description="What-if events (docs/events.md): node_failure, rate_change, price_change; empty = none.",
    )

    @model_serializer(mode="wrap")
    def _drop_no_events(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Without events the dump is what it was before events existed (resolved scenario.yaml, keys)."""
        data: dict[str, Any] = handler(self)
        if not self.events:
            data.pop("events", None)
        return data

    @model_validator(mode="after")
    def _length(self) -> Scenario:
        is_trace = isinstance(self.workload.arrivals, TraceArrivals)
        if self.duration_s is None and self.num_queries is None and not is_trace:
            raise ValueError("give duration_s or num_queries (or use trace arrivals)")
        return self
