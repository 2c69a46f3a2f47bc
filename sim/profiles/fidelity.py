"""Fidelity of latency profiles: measured configurations run through the engine, errors against the measurements.

A fit's own error (``llmsim calibrate``'s MAPE) says how well a formula matches the rows it was fitted to;
what a capacity plan inherits is what the *simulator* predicts for a deployment a user writes. So this module
checks a profile the way it is used: every measured configuration (a batch of ``n`` requests of ``prompt``
prompt and ``output`` output tokens, run together) becomes a one-deployment scenario — the model, the GPU,
the tensor-parallel degree, one instance with ``max_seqs = n``, a tiny Azure-format trace holding the ``n``
requests at time 0 (``use_trace_tokens: true``, so the synthetic pool's per-model length noise never
applies) — which :func:`sim.runner.simulate` runs; TTFT, the decode step (TPOT) and the end-to-end time
are read from its requests table and compared with what the table measured. ``benchmarks/fidelity.py``
does this for every built-in entry against every public table covering it; :func:`calibration_fidelity`
does it for a profile ``llmsim calibrate`` has just fitted, on the user's own rows.

What each table measures, and the batch it becomes (:func:`read_measurements`):

* **Splitwise** (``prompt_time``, ``token_time``, ``e2e_time``): a static batch; TTFT = the batch's prefill,
  step = the mean decode iteration, e2e = the batch's completion. The output length is the number of tokens
  actually generated, ``min(token_size, 1 + (e2e − prompt_time)/token_time)`` — long requested outputs stop
  early, and the measured e2e reflects what ran. Rows that stalled (e2e above prefill + decodes by > 5 %)
  are dropped, as the fit drops them.
* **LLM-Inference-Bench** (``Latency``): a batch of ``Batch Size`` requests of input = output = L tokens,
  end to end only. Failed runs and batches whose KV cache cannot fit (the preemption regime) are dropped by
  :func:`sim.profiles.tables.bench_groups`, exactly as for fitting.
* **Iteration tables** (``phase, batch, ctx_per_seq, total_ctx, tokens, ms``, e.g. the H200 one): a decode
  row is one step of ``batch`` sequences each holding ``ctx_per_seq`` tokens — run as ``batch`` requests of
  ``ctx_per_seq − 1`` prompt tokens and 2 output tokens, whose single decode step sees exactly that context
  (at the k-th decode a sequence holds prompt + k tokens); a prefill row is ``batch`` prompts of
  ``ctx_per_seq`` tokens with one output token (TTFT only); prefills under 512 tokens are left out, as for
  fitting (eager-mode kernel-launch overhead, :data:`~sim.profiles.tables.ITERATION_MIN_PREFILL_TOKENS`).
* **canonical** and **mixed_step** tables: prefill rows as one prompt of the row's tokens (TTFT), decode
  rows as above (the per-sequence context rounded to whole tokens). Mixed chunked-prefill rows and chunks
  with a cached prefix are single steps inside a longer request, which a request-level run cannot isolate;
  they are counted and skipped (their fit error is in calibrate's fit report).

Scheduler (why ``reserve`` by default): every table measures a batch admitted at once whose prompts are
prefilled together in one step before decoding starts, and whose requests never wait for memory; the
``reserve`` scheduler does exactly that (whole-prompt prefill, full KV reserved at admission). ``paged``
runs the same batch with ``chunked_prefill: false`` and a token budget ≥ the batch's prompt tokens (and ≥
one request's prompt + output, which the paged engine requires without chunking), so the prompts are again
one prefill step; the difference is then the paged step model (per-sequence attention in ``step_time``)
and paged memory (preemption instead of waiting).

Memory is the engine's, as a user gets it (datasheet GPU memory, default activation reserve). A batch the
engine could not start at once is counted in the ``waves`` column (its error is then the memory model as
much as the profile); a request larger than the KV cache is never served and is counted as ``unserved``
(left out of the errors); a scenario refused outright because the default activation reserve leaves no KV
cache is rerun with ``activation_reserve_gib: 0`` — what the error message advises — and noted.

Errors are relative, ``(simulated − measured) / measured``; a table reports the median, p90 and max of their
absolute values per metric and the median signed error (bias) of the end-to-end time.
"""

from __future__ import annotations

import itertools
import re
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from sim.config.checks import profile_for
from sim.config.load import parse_scenario
from sim.config.schema import LatencySpec
from sim.engine.latency import LatencyProfile
from sim.errors import DataError, InputError, InputWarning
from sim.profiles import builtin as _builtin
from sim.profiles.builtin import BuiltinProfile, builtin_profile
from sim.profiles.hardware import GPUS, MODELS, canonical_gpu, model_size_from_name
from sim.profiles.tables import (
    BENCH_HARDWARE,
    SPLITWISE_E2E_SLACK,
    Group,
    RawTable,
    _tp_value,
    bench_groups,
    canonical_groups,
    iteration_groups,
    mixed_step_groups,
    read_table,
)
from sim.runner import simulate

if TYPE_CHECKING:  # calibrate imports the engine-free profile modules only; no import cycle at run time
    from sim.profiles.calibrate import CalibrationReport

METRICS = ("ttft", "step", "e2e")
METRIC_TITLES = {"ttft": "TTFT", "step": "decode step", "e2e": "end to end"}
THRESHOLD_PCT = 15.0
SCHEDULERS = ("reserve", "paged")
# Memory given to a GPU the datasheet table does not know (a user's own hardware): ample, so the run
# checks the latency profile and not a guessed memory size.
UNKNOWN_GPU_MEMORY_GIB = 4096.0
DEFAULT_KV_BYTES = 131072  # the scenario schema's default (Llama-3-8B)
# Engine runs llmsim calibrate spends on its check at most (~40 ms each; calibration_fidelity).
MAX_CALIBRATION_RUNS = 400


@dataclass(frozen=True)
class Batch:
    """A measured configuration: ``n`` requests of ``prompt`` prompt and ``output`` output tokens, arriving together."""

    n: int
    prompt: int
    output: int


@dataclass(frozen=True)
class Measurement:
    """What a table measured for one batch (None where it does not measure that metric), in seconds."""

    batch: Batch
    ttft_s: float | None = None
    step_s: float | None = None
    e2e_s: float | None = None

    def value(self, metric: str) -> float | None:
        return {"ttft": self.ttft_s, "step": self.step_s, "e2e": self.e2e_s}[metric]


@dataclass
class MeasuredSet:
    """The rows of one (model, GPU, TP, framework) of one table file."""

    file: str  # file name (no directory)
    table: str  # short label of the table kind, e.g. 'splitwise', 'bench vLLM'
    model: str  # as the table spells it
    gpu: str  # canonical GPU name when known, else as spelled
    tp: int
    framework: str = ""
    rows: list[Measurement] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.table


# ----------------------------------------------------------------------------------------- reading tables
def _gpu_name(raw: str) -> str:
    return BENCH_HARDWARE.get(raw) or canonical_gpu(raw) or raw


def _decode_batch(n: float, ctx_total: float) -> Batch | None:
    """``n`` sequences holding ``ctx_total`` context tokens in all, as requests whose one decode step sees
    that context: prompt = per-sequence context − 1 (rounded), 2 output tokens. None below 2 tokens each."""
    per_seq = int(round(ctx_total / n))
    return Batch(int(n), per_seq - 1, 2) if per_seq >= 2 else None


def _splitwise_sets(table: RawTable) -> list[MeasuredSet]:
    groups: dict[tuple[str, str, str], list[int]] = {}
    for i in range(len(table.rows)):
        key = (table.text("model", i), table.text("hardware", i), table.text("tensor_parallel", i))
        groups.setdefault(key, []).append(i)
    out = []
    for (model, hardware, _), idx in sorted(groups.items()):
        tp = _tp_value(table, "tensor_parallel", idx)
        prompt = table.tokens("prompt_size", idx, minimum=1)
        batch = table.batch("batch_size", idx)
        tokens = table.tokens("token_size", idx, minimum=1)
        pt, tt, e2e = (table.times(c, idx, unit="ms") / 1000.0 for c in ("prompt_time", "token_time", "e2e_time"))
        s = MeasuredSet(table.path.name, "splitwise", model, _gpu_name(hardware), int(tp))
        stalled = e2e > SPLITWISE_E2E_SLACK * (pt + (tokens - 1) * tt)
        if stalled.any():
            s.notes.append(f"{int(stalled.sum())} stalled row(s) dropped (e2e > prefill + decodes by > 5 %)")
        for k in np.flatnonzero(~stalled):
            generated = int(min(tokens[k], max(1, round(1 + (e2e[k] - pt[k]) / tt[k]))))
            b = Batch(int(batch[k]), int(prompt[k]), generated)
            step = float(tt[k]) if generated > 1 else None
            s.rows.append(Measurement(b, ttft_s=float(pt[k]), step_s=step, e2e_s=float(e2e[k])))
        out.append(s)
    return out


def _bench_sets(table: RawTable) -> list[MeasuredSet]:
    out = []
    for g in bench_groups(table):
        s = MeasuredSet(table.path.name, f"bench {g.framework}", g.model, g.hardware, g.tp, g.framework)
        s.notes.extend(g.notes)
        if g.e2e is not None:
            for n, lin, lout, t in zip(*g.e2e, strict=True):
                s.rows.append(Measurement(Batch(int(n), int(lin), int(lout)), e2e_s=float(t)))
        out.append(s)
    return out


def _prefill_batch(tokens: float, attn: float) -> Batch | None:
    """A prefill row of ``tokens`` prompt tokens with attention work ``attn`` as ``b`` whole prompts of
    ``L`` tokens (attention b·L²/2, so L = 2·attn/tokens); None for a chunk after a cached prefix (its work
    c·(q + c/2) is no whole number of whole prompts)."""
    length = 2.0 * attn / tokens
    n = tokens / length
    if length < 1 or abs(n - round(n)) > 1e-6 * n or abs(length - round(length)) > 1e-6 * length:
        return None
    return Batch(int(round(n)), int(round(length)), 1)


def _step_sets(table: RawTable, groups: list[Group], label: str) -> list[MeasuredSet]:
    """canonical / mixed_step / iteration groups: prefill rows as whole prompts prefilled together (one
    prompt of the row's tokens unless the group's attention work says several; chunks after a cached
    prefix skipped), decode rows as one decode step, mixed rows skipped (module docstring)."""
    out = []
    for g in groups:
        s = MeasuredSet(table.path.name, label, g.model, g.hardware, g.tp)
        s.notes.extend(g.notes)
        skipped = 0
        if g.prefill is not None:
            tokens, times = g.prefill
            attn = g.prefill_attn if g.prefill_attn is not None else tokens * tokens / 2.0
            for p, a, t in zip(tokens, attn, times, strict=True):
                b = _prefill_batch(float(p), float(a)) if p >= 1 else None
                if b is None:
                    skipped += 1
                else:
                    s.rows.append(Measurement(b, ttft_s=float(t)))
        if g.decode is not None:
            for n, ctx, t in zip(*g.decode, strict=True):
                d = _decode_batch(float(n), float(ctx))
                if d is None:
                    skipped += 1
                else:
                    s.rows.append(Measurement(d, step_s=float(t)))
        if g.mixed is not None:
            skipped += len(g.mixed[0])
        if skipped:
            s.notes.append(
                f"{skipped} row(s) not run: mixed chunked-prefill steps, chunks after a cached prefix or "
                "decodes under 2 context tokens per sequence are single steps a request-level run cannot isolate"
            )
        out.append(s)
    return out


def read_measurements(path: str | Path) -> list[MeasuredSet]:
    """Every measured batch of a latency table, per (model, GPU, TP, framework); see the module docstring.

    Accepts the formats of :mod:`sim.profiles.tables` (rows those readers filter out for fitting are left
    out here too, with their notes); raises :class:`~sim.errors.DataError` naming file, line and column.
    """
    table = read_table(Path(path))
    if table.format == "splitwise":
        return _splitwise_sets(table)
    if table.format == "llm_inference_bench":
        return _bench_sets(table)
    readers = {"canonical": canonical_groups, "mixed_step": mixed_step_groups, "iteration": iteration_groups}
    if table.format in readers:
        return _step_sets(table, readers[table.format](table), table.format)
    raise DataError(f"no fidelity reader for the {table.format} format", file=table.path)


# ----------------------------------------------------------------------------------------- running the engine
@dataclass(frozen=True)
class Target:
    """The deployment a batch runs on, as a user writes it: GPU (scenario name and memory), TP, model size
    and KV bytes, and the ``models[].latency.<gpu>`` blocks to try in order (the first whose resolved
    profile equals ``profile`` is used — ``builtin: true`` when the lookup lands on the entry, else the
    coefficients written out)."""

    gpu: str
    memory_gib: float
    tp: int
    params_b: float
    kv_bytes_per_token: int
    profile: LatencyProfile
    latency_blocks: tuple[tuple[tuple[str, Any], ...], ...]
    activation_reserve_gib: float | None = None  # None: the scenario default


@dataclass(frozen=True)
class Simulated:
    """What the engine gave for one batch: TTFT and end to end of the batch (its last request) and the
    mean decode step (None with one output token); ``waves`` when it could not run the batch at once
    (KV memory: later requests waited or were preempted); ``served`` false when some request never ran
    (larger than the KV cache), and then every time is None."""

    ttft_s: float | None
    step_s: float | None
    e2e_s: float | None
    waves: bool
    served: bool = True

    def value(self, metric: str) -> float | None:
        return {"ttft": self.ttft_s, "step": self.step_s, "e2e": self.e2e_s}[metric]


def coefficient_block(profile: LatencyProfile) -> tuple[tuple[str, Any], ...]:
    """A scenario latency block giving ``profile``'s coefficients explicitly (every field the scenario
    schema accepts that the profile sets)."""
    names = [f.name for f in fields(LatencyProfile) if f.init and f.name in LatencySpec.model_fields]
    return tuple((n, float(getattr(profile, n))) for n in names if getattr(profile, n) is not None)


def _scenario(
    target: Target, block: Mapping[str, Any], batch: Batch, trace: Path, scheduler: str
) -> dict[str, Any]:
    dep: dict[str, Any] = {
        "model": "m",
        "gpu": target.gpu,
        "tp": target.tp,
        "instances": 1,
        "max_seqs": batch.n,
        "scheduler": scheduler,
    }
    if target.activation_reserve_gib is not None:
        dep["activation_reserve_gib"] = target.activation_reserve_gib
    if scheduler == "paged":  # one prefill step for the whole batch, as measured (module docstring); without
        # chunked prefill the paged engine also wants a request's whole context (a restart after preemption) in one step
        budget = max(batch.n, batch.n * batch.prompt, batch.prompt + batch.output)
        dep.update(chunked_prefill=False, max_num_batched_tokens=budget)
    return {
        "name": "fidelity",
        "seed": 1,
        "gpus": [{"name": target.gpu, "memory_gib": target.memory_gib, "count": target.tp}],
        "models": [
            {
                "name": "m",
                "params_b": target.params_b,
                "kv_bytes_per_token": target.kv_bytes_per_token,
                "price_in_per_mtok": 0.0,
                "price_out_per_mtok": 0.0,
                "strength": 1.0,
                "latency": {target.gpu: dict(block)},
            }
        ],
        "deployments": [dep],
        "workload": {
            "arrivals": {"type": "trace", "path": str(trace), "format": "azure", "use_trace_tokens": True},
            "pool": {"type": "synthetic"},
        },
        "router": {"policy": "cheapest", "capacity": "unlimited"},
    }


class NotExpressible(Exception):
    """A profile no scenario can give (e.g. a coefficient the scenario schema does not accept yet)."""


class Harness:
    """Runs measured batches through :func:`sim.runner.simulate`; results are cached per (target, batch),
    so repeated measurements of one configuration cost one run. Use :func:`harness` for a temp folder."""

    def __init__(self, workdir: Path, scheduler: str = "reserve") -> None:
        if scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler must be one of {SCHEDULERS}, got {scheduler!r}")
        self.workdir = workdir
        self.scheduler = scheduler
        self._cache: dict[tuple[Target, Batch], Simulated] = {}
        self._block: dict[Target, int] = {}
        self.runs = 0

    def _trace(self, batch: Batch) -> Path:
        path = self.workdir / f"batch-{batch.n}-{batch.prompt}-{batch.output}.csv"
        if not path.exists():
            row = f"2024-01-01 00:00:00.0000000,{batch.prompt},{batch.output}\n"
            path.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n" + row * batch.n, encoding="utf-8")
        return path

    def _parse(self, target: Target, block: Mapping[str, Any], batch: Batch) -> Any:
        """Parse the scenario as ``llmsim run`` would; its load-time warnings are dropped — they are about
        the generated scenario (e.g. chunked_prefill false with the paged budget), not the user's input."""
        text = yaml.safe_dump(_scenario(target, block, batch, self._trace(batch), self.scheduler))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", InputWarning)
            return parse_scenario(text, file="<fidelity scenario>", base_dir=self.workdir)

    def _scenario_for(self, target: Target, batch: Batch) -> Any:
        """The parsed scenario, with the first latency block that resolves to the target's profile."""
        if target in self._block:
            return self._parse(target, dict(target.latency_blocks[self._block[target]]), batch)
        for i, block in enumerate(target.latency_blocks):
            try:
                sc = self._parse(target, dict(block), batch)
            except InputError:
                if i == len(target.latency_blocks) - 1:
                    raise
                continue
            if profile_for(sc.models[0], sc.deployments[0]) == target.profile:
                self._block[target] = i
                return sc
        missing = [
            f.name
            for f in fields(LatencyProfile)
            if f.init and f.name not in LatencySpec.model_fields and getattr(target.profile, f.name)
        ]
        raise NotExpressible(
            "no scenario latency block gives this profile"
            + (f" (models[].latency does not accept {', '.join(missing)})" if missing else "")
        )

    def run(self, target: Target, batch: Batch) -> Simulated:
        """Simulate ``batch`` on ``target``; InputError if the scenario is refused (e.g. weights do not fit)."""
        key = (target, batch)
        if key not in self._cache:
            req = simulate(self._scenario_for(target, batch)).requests
            self.runs += 1
            self._cache[key] = _simulated(req, batch)
        return self._cache[key]


def _simulated(req: Any, batch: Batch) -> Simulated:
    """Batch TTFT / mean step / batch e2e from a run's requests table (see :class:`Simulated`)."""
    arrival = req["arrival_s"].to_numpy(dtype=float)
    started = req["start_s"].to_numpy(dtype=float)
    waves = bool(np.any(started > arrival) or np.any(req["preemptions"].to_numpy() > 0))
    if len(req) != batch.n or not (req["status"] == "completed").all():
        return Simulated(None, None, None, waves=True, served=False)
    return Simulated(
        ttft_s=float(np.max(req["first_token_s"].to_numpy(dtype=float) - arrival)),
        step_s=float(np.mean(req["tpot_s"].to_numpy(dtype=float))) if batch.output > 1 else None,
        e2e_s=float(np.max(req["finish_s"].to_numpy(dtype=float) - arrival)),
        waves=waves,
    )


@contextmanager
def harness(scheduler: str = "reserve") -> Iterator[Harness]:
    """A :class:`Harness` writing its trace files to a temporary folder, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="llmsim-fidelity-") as tmp:
        yield Harness(Path(tmp), scheduler)


# ----------------------------------------------------------------------------------------- errors
@dataclass(frozen=True)
class ErrorStats:
    """Relative errors of one metric over a set's rows, in percent: median / p90 / max / mean of |error|,
    and the median signed error (bias: + means the simulator is slower than measured)."""

    rows: int
    median_pct: float
    p90_pct: float
    max_pct: float
    bias_pct: float
    mean_pct: float  # comparable with a fit's MAPE


def error_stats(simulated: Sequence[float], measured: Sequence[float]) -> ErrorStats | None:
    if not measured:
        return None
    rel = (np.asarray(simulated, dtype=float) - np.asarray(measured, dtype=float)) / np.asarray(
        measured, dtype=float
    )
    err = np.abs(rel) * 100.0
    return ErrorStats(
        rows=len(err),
        median_pct=float(np.median(err)),
        p90_pct=float(np.quantile(err, 0.9)),
        max_pct=float(np.max(err)),
        bias_pct=float(np.median(rel) * 100.0),
        mean_pct=float(np.mean(err)),
    )


@dataclass(frozen=True)
class FidelityRow:
    """One profile against one measured set."""

    entry: str
    source: str
    table: str
    file: str
    training: bool  # the profile was fitted on these rows
    rows: int
    errors: Mapping[str, ErrorStats]  # per metric the table measures
    waves: int = 0  # rows the engine could not run as one batch (KV memory); their errors are included
    unserved: int = 0  # rows with a request the engine can never admit (larger than the KV cache); excluded
    notes: tuple[str, ...] = ()
    default: bool = (
        True  # a scenario's `builtin: true` gives this profile (else only by source name / coefficients)
    )

    def over(self, threshold_pct: float = THRESHOLD_PCT) -> list[str]:
        """Metrics whose median error exceeds the threshold."""
        return [m for m in METRICS if m in self.errors and self.errors[m].median_pct > threshold_pct]


def _run_batches(
    h: Harness, target: Target, batches: Sequence[Batch]
) -> tuple[dict[Batch, Simulated], str | None]:
    """Each batch through the engine; a refused scenario (InputError, e.g. the weights do not fit, or a
    profile no scenario can give) counts as unserved, and the first refusal's message is returned."""
    sims: dict[Batch, Simulated] = {}
    refused = None
    for b in batches:
        try:
            sims[b] = h.run(target, b)
        except (InputError, NotExpressible) as exc:
            sims[b] = Simulated(None, None, None, waves=True, served=False)
            if refused is None:
                refused = exc.detail if isinstance(exc, InputError) else str(exc)
    return sims, refused


def evaluate(
    h: Harness,
    target: Target,
    mset: MeasuredSet,
    *,
    entry: str,
    source: str,
    training: bool,
    limit: int | None = None,
    table: str | None = None,
    default: bool = True,
) -> FidelityRow:
    """Run every row of ``mset`` on ``target`` — or, with ``limit``, the rows of at most ``limit`` distinct
    batches spread evenly over the table's order — and compute the errors per metric. ``table`` overrides
    the set's label, ``default`` is copied to the row."""
    rows = mset.rows
    notes = list(mset.notes)
    distinct = list(dict.fromkeys(r.batch for r in rows))
    if limit is not None and len(distinct) > limit:
        picks = np.unique(np.linspace(0, len(distinct) - 1, max(1, limit)).round().astype(int))
        keep = {distinct[i] for i in picks}
        rows = [r for r in rows if r.batch in keep]
        notes.append(f"checked {len(keep)} of {len(distinct)} distinct batches (evenly spread)")
    batches = list(dict.fromkeys(r.batch for r in rows))
    sims, refused = _run_batches(h, target, batches)
    if refused is not None:
        notes.append(f"not runnable: {refused}")
        if target.activation_reserve_gib is None and not any(x.served for x in sims.values()):
            # what the error message tells a user to do: run without the default activation reserve
            retry, again = _run_batches(h, replace(target, activation_reserve_gib=0.0), batches)
            if any(x.served for x in retry.values()):
                sims = retry
                notes[-1] += " -- ran with activation_reserve_gib: 0 instead"
                if again is not None:
                    notes.append(f"not runnable even then: {again}")
    errors = {}
    for metric in METRICS:
        pairs = [(sims[r.batch].value(metric), r.value(metric)) for r in rows]
        kept = [(s, m) for s, m in pairs if s is not None and m is not None]
        stats = error_stats([s for s, _ in kept], [m for _, m in kept])
        if stats is not None:
            errors[metric] = stats
    waves = sum(sims[r.batch].waves and sims[r.batch].served for r in rows)
    unserved = sum(not sims[r.batch].served for r in rows)
    return FidelityRow(
        entry,
        source,
        table or mset.table,
        mset.file,
        training,
        len(rows),
        errors,
        waves,
        unserved,
        tuple(notes),
        default,
    )


# ----------------------------------------------------------------------------------------- built-in entries
SOURCE_LABELS = {  # fallback labels by training file, when an entry names no source itself
    "splitwise_perf_model.csv": "splitwise",
    "llm_inference_bench_all_results.csv": "vllm-bench",
    "h200_torch_iteration_times.csv": "h200-torch",
}


def model_key(name: str) -> str:
    """A spelling-insensitive model key: 'meta-llama/Meta-Llama-3-70B', 'Llama-3-70B' → 'llama370b';
    'llama2-70b', 'Llama-2-70B' → 'llama270b'."""
    s = name.rsplit("/", 1)[-1].lower()
    s = re.sub(r"^meta-(?=llama)", "", s)
    s = re.sub(r"-hf$", "", s)
    return re.sub(r"[^a-z0-9]", "", s)


def _provenance(entry: BuiltinProfile) -> Mapping[str, Any]:
    """The entry's data provenance (file, rows, filters): ``entry.data``, or a mapping ``source`` (older JSON)."""
    data = getattr(entry, "data", None)
    if isinstance(data, Mapping):
        return data
    return entry.source if isinstance(entry.source, Mapping) else {}


def source_files(entry: BuiltinProfile) -> set[str]:
    """Names of the table files the entry was fitted on (empty for a derived entry's own rows)."""
    data = _provenance(entry)
    files = list(data.get("files") or [])
    if data.get("file"):
        files.append(data["file"])
    return {Path(str(f)).name for f in files}


def source_label(entry: BuiltinProfile) -> str:
    """The entry's source name (``vllm-bench``, ``splitwise``, ``h200-torch``, ``derived``)."""
    if isinstance(entry.source, str) and entry.source:
        return entry.source
    if entry.derived:
        return "derived"
    files = sorted(source_files(entry))
    return SOURCE_LABELS.get(files[0], Path(files[0]).stem) if files else "?"


def entry_model_keys(name: str) -> set[str]:
    """Model keys an entry's model name stands for: 'Llama-2/3-70B' (one fit over both models' rows) →
    {'llama270b', 'llama370b'}; 'Llama-3-8B shape' (random weights of that shape) → {'llama38b'};
    parenthesised remarks dropped."""
    name = re.sub(r"\s*\(.*?\)", "", name)
    name = re.sub(r"\s+shape$", "", name.strip(), flags=re.IGNORECASE)
    options = [part.split("/") for part in name.split("-")]
    return {model_key("-".join(choice)) for choice in itertools.product(*options)}


def covers(entry: BuiltinProfile, mset: MeasuredSet) -> bool:
    """The set measures (one of) the entry's model(s) on its GPU at its TP degree."""
    return (
        model_key(mset.model) in entry_model_keys(entry.model)
        and entry.gpu == mset.gpu
        and entry.tp == mset.tp
    )


def is_training(entry: BuiltinProfile, mset: MeasuredSet) -> bool:
    """The entry was fitted on these rows: a measured entry whose source is this file (and, for a file
    with several frameworks, names this framework)."""
    if entry.derived or mset.file not in source_files(entry):
        return False
    return not mset.framework or mset.framework.lower() in str(dict(_provenance(entry))).lower()


def _latency_blocks(
    profile: LatencyProfile, names: Iterable[bool | str]
) -> tuple[tuple[tuple[str, Any], ...], ...]:
    return (*((("builtin", n),) for n in names), coefficient_block(profile))


def entry_target(entry: BuiltinProfile, table_model: str) -> Target:
    """The scenario a user would write for this entry: ``params_b`` = its size (so the built-in lookup
    lands on it), KV bytes of the measured model, the GPU's datasheet memory, ``builtin: true`` (or its
    source name, or its coefficients when the lookup would pick another entry of the same size)."""
    names: list[bool | str] = []
    if builtin_profile(entry.model_size_b, entry.gpu, entry.tp) == entry.profile:
        names.append(True)
    label = source_label(entry)
    try:
        LatencySpec.model_validate({"builtin": label})
        names.append(label)
    except ValueError:  # the schema takes builtin: true/false only
        pass
    info = MODELS.get(table_model)
    spec = GPUS.get(entry.gpu)
    return Target(
        gpu=entry.gpu,
        memory_gib=spec.memory_gb if spec is not None else UNKNOWN_GPU_MEMORY_GIB,
        tp=entry.tp,
        params_b=entry.model_size_b,
        kv_bytes_per_token=info.kv_bytes_per_token if info is not None else DEFAULT_KV_BYTES,
        profile=entry.profile,
        latency_blocks=_latency_blocks(entry.profile, names),
    )


def entry_fidelity(
    entries: Sequence[BuiltinProfile], sets: Sequence[MeasuredSet], h: Harness, *, limit: int | None = None
) -> tuple[list[FidelityRow], list[BuiltinProfile]]:
    """Every entry against every set covering it (training sets included, marked); and the entries no set covers."""
    rows, uncovered = [], []
    for entry in entries:
        matched = [s for s in sets if covers(entry, s) and s.rows]
        if not matched:
            uncovered.append(entry)
        several = len(entry_model_keys(entry.model)) > 1
        default = builtin_profile(entry.model_size_b, entry.gpu, entry.tp) == entry.profile
        for s in matched:
            label = f"{s.table} [{s.model.rsplit('/', 1)[-1]}]" if several else s.table
            target = entry_target(entry, s.model)
            rows.append(
                evaluate(
                    h,
                    target,
                    s,
                    entry=entry.name,
                    source=source_label(entry),
                    training=is_training(entry, s),
                    limit=limit,
                    table=label,
                    default=default,
                )
            )
    return rows, uncovered


def lookup_fidelity(
    entries: Sequence[BuiltinProfile],
    sets: Sequence[MeasuredSet],
    h: Harness,
    *,
    limit: int | None = None,
) -> list[FidelityRow]:
    """Measured sets no entry covers, run as a user would write them — ``params_b`` of the measured model
    and ``builtin: true`` — so the lookup scales the nearest entry: what a scenario with, say, Llama-3-70B
    or Llama-2-70B on A100-40GB actually gets. Dense models of :data:`~sim.profiles.hardware.MODELS` only
    (a mixture of experts needs its active size, which a scenario's ``params_b`` does not carry)."""
    rows = []
    for s in sets:
        info = MODELS.get(s.model)
        if info is None or info.size_b != info.weights_b or not s.rows or s.framework not in ("", "vLLM"):
            continue
        if any(covers(e, s) for e in entries):
            continue
        try:
            profile = builtin_profile(info.size_b, s.gpu, s.tp)
        except (KeyError, ValueError):  # no built-in entry on this GPU
            continue
        start = getattr(_builtin, "builtin_entry", None)
        origin = f"scaled {start(info.size_b, s.gpu, s.tp).name}" if start is not None else "scaled"
        target = Target(
            gpu=s.gpu,
            memory_gib=GPUS[s.gpu].memory_gb if s.gpu in GPUS else UNKNOWN_GPU_MEMORY_GIB,
            tp=s.tp,
            params_b=info.size_b,
            kv_bytes_per_token=info.kv_bytes_per_token,
            profile=profile,
            latency_blocks=_latency_blocks(profile, [True]),
        )
        name = f"{s.model.rsplit('/', 1)[-1]}@{s.gpu}/tp{s.tp} (lookup)"
        rows.append(evaluate(h, target, s, entry=name, source=origin, training=False, limit=limit))
    return rows


# ----------------------------------------------------------------------------------------- a calibrated profile
def profile_target(profile: LatencyProfile, model: str, gpu: str, tp: int) -> Target:
    """The scenario for a profile fitted on a user's table: the GPU's datasheet memory when the GPU is
    known (else ample memory), the model's size and KV bytes when known (else 1 B parameters, 128 KiB)."""
    spec = GPUS.get(canonical_gpu(gpu) or gpu)
    info = MODELS.get(model)
    size = info.size_b if info is not None else model_size_from_name(model)
    return Target(
        gpu=spec.name if spec is not None else "GPU",
        memory_gib=spec.memory_gb if spec is not None else UNKNOWN_GPU_MEMORY_GIB,
        tp=tp,
        params_b=info.weights_b if info is not None else (size or 1.0),
        kv_bytes_per_token=info.kv_bytes_per_token if info is not None else DEFAULT_KV_BYTES,
        profile=profile,
        latency_blocks=(coefficient_block(profile),),
    )


def calibration_fidelity(
    report: CalibrationReport, scheduler: str = "reserve", max_runs: int | None = MAX_CALIBRATION_RUNS
) -> list[FidelityRow]:
    """Each fitted group of a calibration report, run through the engine on its own rows of the table.

    The fit's MAPE measures the formula; this measures what a scenario using the fitted coefficients
    predicts for the measured batches (TTFT / decode step / end to end, whichever the table measures).
    A run costs ~40 ms, so with ``max_runs`` each group checks at most ``max_runs / groups`` (≥ 3) distinct
    batches, evenly spread (the row's note says so); None checks every row.
    """
    sets = read_measurements(report.path)
    pairs = []
    for g in report.groups:
        for s in sets:
            same = (s.model, s.gpu, s.tp, s.framework or "") == (g.model, g.hardware, g.tp, g.framework or "")
            if g.profile is not None and same and s.rows:
                pairs.append((g, g.profile, s))
    limit = None if max_runs is None else max(3, max_runs // max(1, len(pairs)))
    out = []
    with harness(scheduler) as h:
        for g, profile, s in pairs:
            name = f"{g.model} on {g.hardware}, tp={g.tp}" + (f", {g.framework}" if g.framework else "")
            target = profile_target(profile, g.model, g.hardware, g.tp)
            out.append(evaluate(h, target, s, entry=name, source="fitted", training=True, limit=limit))
    return out


# ----------------------------------------------------------------------------------------- printing
def _pct(stats: ErrorStats | None, attr: str) -> str:
    if stats is None:
        return "-"
    value = getattr(stats, attr)
    return f"{value:+.1f}" if attr == "bias_pct" else f"{value:.1f}"


def format_fidelity(rows: Sequence[FidelityRow], threshold_pct: float = THRESHOLD_PCT) -> str:
    """One table: per (profile, measured set) the rows run, the batches the engine split into waves,
    median / p90 / max |relative error| in % of TTFT, decode step and end to end, the e2e bias, and the
    metrics whose median exceeds ``threshold_pct`` (flagged ``*``). Training sets are marked ``(fit)``;
    a profile that ``builtin: true`` does not select (another source is the default) is marked ``(by name)``."""
    head = ["profile", "source", "table", "rows", "waves", "unserved"]
    for m in METRICS:
        head += [f"{m} med", "p90", "max"]
    head += ["e2e bias", f"> {threshold_pct:g} %"]
    body = []
    for r in rows:
        line = [
            r.entry,
            r.source + ("" if r.default else " (by name)"),
            r.table + (" (fit)" if r.training else ""),
            str(r.rows),
            str(r.waves),
            str(r.unserved),
        ]
        for m in METRICS:
            line += [_pct(r.errors.get(m), a) for a in ("median_pct", "p90_pct", "max_pct")]
        over = r.over(threshold_pct)
        line += [_pct(r.errors.get("e2e"), "bias_pct"), ("* " + ",".join(over)) if over else ""]
        if not r.errors:
            line[-1] = "not run"
        body.append(line)
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]
    left = {0, 1, 2, len(head) - 1}

    def fmt(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i in left else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    lines = [fmt(head), fmt(["-" * w for w in widths])]
    lines += [fmt(b) for b in body]
    return "\n".join(lines)


def format_calibration_fidelity(rows: Sequence[FidelityRow]) -> str:
    """The calibrate report's closing section: the fitted profiles run through the engine on the table's rows."""
    if not rows:
        return "\nEngine check: no table rows can be run as request batches (see the notes above)."
    lines = [
        "",
        "Engine check: each fitted profile in a one-deployment scenario, run on the table's measured batches",
        "(|relative error| in %: median, p90, max; bias = median signed e2e error, + = simulated slower)",
        format_fidelity(rows),
    ]
    for r in rows:
        lines += [
            f"  note ({r.entry}): {n}" for n in r.notes if n.startswith("not runnable") or "not run:" in n
        ]
    limited = sum(any(n.startswith("checked ") for n in r.notes) for r in rows)
    if limited:
        lines.append(
            f"  note: {limited} group(s) checked on an evenly spread sample of their distinct batches, to bound "
            "the engine runs (rows = the rows checked)"
        )
    return "\n".join(lines)
