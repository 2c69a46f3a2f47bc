"""Read latency-measurement CSVs into fit-ready groups of rows.

Four formats are recognised from the header:

``splitwise``
    Mutinifni/splitwise-sim ``perf_model.csv``: ``model, hardware, prompt_size, batch_size, token_size,
    prompt_time, token_time, e2e_time, tensor_parallel`` (times in ms). ``prompt_time`` is the prefill of
    ``batch_size × prompt_size`` tokens; ``token_time`` the mean decode-iteration time, as shown by
    ``e2e_time ≈ prompt_time + (token_size − 1)·token_time`` (median ratio 1.0004 on the rows with
    ``token_size ≤ 256``).
``llm_inference_bench``
    argonne-lcf/LLM-Inference-Bench ``All_results.csv``: ``Hardware, Num of Hardware, Framework, Model,
    Input Output Length, Batch Size, Latency`` (s): a batch of ``Batch Size`` requests with input = output
    = ``Input Output Length`` tokens, end to end. ``Num of Hardware`` is taken as the TP degree.
``canonical``
    This project's own format for user measurements: ``kind`` ∈ {prefill, decode}, ``time_s``, and
    ``prompt_tokens`` (prefill rows: total prompt tokens prefilled together) or ``batch_size`` and
    ``context_tokens`` (decode rows: one iteration). Optional ``model``, ``gpu``, ``tp`` columns group rows
    (:data:`TP_COLUMNS`: ``tensor_parallel`` is read as ``tp``).
``mixed_step``
    One engine step per row, as chunked prefill runs them (e.g. ``h200_torch_mixed_step_times.csv``):
    ``chunk_tokens`` (prompt tokens prefilled in the step), ``chunk_prefix`` (tokens of that prompt already
    in the KV cache, which the chunk attends to), ``decode_seqs`` (decodes in the same step),
    ``decode_ctx_per_seq`` (context tokens each decode attends to), and the step time as ``time_s``
    (seconds) or ``ms`` (milliseconds) — exactly one of the two. Optional ``model``, ``gpu`` (or
    ``hardware``), ``tp`` (or ``tensor_parallel``) columns group rows. Rows with ``decode_seqs = 0`` are pure prefill chunks and fit
    the prefill coefficients (attention work ``chunk·(prefix + chunk/2)``), rows with ``chunk_tokens = 0``
    pure decode steps and fit the decode coefficients, the rest the mixed-step coefficients of
    :meth:`~sim.engine.latency.LatencyProfile.step_time` (with the pure ones held fixed; the report compares
    the fit with the plain sum of a separate prefill and decode step). A row with neither is an error.

``iteration``
    One measured step per row, pure decode or pure prefill (e.g. ``h200_torch_iteration_times.csv``):
    ``phase`` ∈ {decode, prefill}, ``batch`` (sequences in the decode step, or prompts prefilled together),
    ``ctx_per_seq`` (context tokens per sequence, or prompt length), ``total_ctx``, ``tokens`` and the step
    time ``ms``. Optional ``model``, ``gpu`` (or ``hardware``), ``tp`` (or ``tensor_parallel``) columns group rows. Decode rows fit
    the decode coefficients against (batch, total_ctx); prefill rows the prefill coefficients against the
    prompt tokens with attention work ``batch·ctx_per_seq²/2`` (each prompt attends only to itself). Prefill
    rows under :data:`ITERATION_MIN_PREFILL_TOKENS` tokens are left out with a note: in an eagerly run
    prefill they measure kernel-launch overhead, not the prompt (the H200 table's README).

Every problem with the file raises :class:`~sim.errors.DataError` naming the file, the line and the column
(a column named twice in the header is one: line 1). Iteration, mixed_step and canonical groups carry notes
when rows exactly repeat an earlier row (repeated runs are legitimate, but add weight, not information)
and when a fit is under-determined (its rows do not vary the columns independently: the coefficients'
split is then arbitrary and the fit's error says nothing).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sim.errors import DataError, read_error
from sim.profiles.fit import FloatArray, chunk_attention
from sim.profiles.hardware import GPUS, MODELS, canonical_gpu

FORMATS: dict[str, tuple[str, ...]] = {
    "splitwise": (
        "model",
        "hardware",
        "prompt_size",
        "batch_size",
        "token_size",
        "prompt_time",
        "token_time",
        "e2e_time",
        "tensor_parallel",
    ),
    "llm_inference_bench": (
        "Hardware",
        "Num of Hardware",
        "Framework",
        "Model",
        "Input Output Length",
        "Batch Size",
        "Latency",
    ),
    "canonical": ("kind", "time_s"),
    "mixed_step": ("chunk_tokens", "chunk_prefix", "decode_seqs", "decode_ctx_per_seq"),
    "iteration": ("phase", "batch", "ctx_per_seq", "total_ctx", "tokens", "ms"),
}
#: Shortest prefill (tokens in the step) an ``iteration`` table's prefill fit uses (module docstring).
ITERATION_MIN_PREFILL_TOKENS = 512
MIXED_TIME_COLUMNS = {"time_s": 1.0, "ms": 1e-3}  # mixed_step time column → factor to seconds
MIXED_TIME_UNITS = {"time_s": "s", "ms": "ms"}

# LLM-Inference-Bench names its hardware generically. Its A100 runs were on ALCF Polaris nodes
# (4 × A100-SXM4-40GB); the data agree: Llama-2-7B (512 KiB of KV per token) slows 3× at batch 16 ×
# 4,096 tokens — 34 GB of KV, which fits beside the weights in 80 GB but not in 40 GB.
BENCH_HARDWARE: dict[str, str] = {
    "Nvidia A100 GPU": "A100-40GB",
    "Nvidia H100 GPU": "H100-80GB",
    "Nvidia GH200 GPU": "GH200-96GB",
}

# Consistency filter for Splitwise rows: a row whose end-to-end time exceeds prefill + decode iterations
# by more than this factor spent time in neither (preemption, swapping) and measures something else.
SPLITWISE_E2E_SLACK = 1.05
# A row generating tokens this many times faster than its group's median (same batch size) did not run:
# per-token time at a fixed batch only grows with length (longer context), never drops 4x.
FAILED_RUN_FACTOR = 4.0
# Preemption onset in an end-to-end table: at a fixed batch size, the time per output token may grow with
# the sequence length only through KV reads; among the vLLM runs that fit in memory it grows at most 1.42x
# when L doubles (Llama-2-7B, A100-40GB, 4 GPUs, batch 32), while a run that starts preempting jumps
# (Llama-2-70B on 4 x A100-40GB, batch 16: 1.73x from L 256 to 512, 16·1024 tokens = 5.4 GB of KV beside
# 138 GB of weights). A jump above this factor drops that row and every longer one at that batch size.
PREEMPTION_JUMP = 1.5
# Memory share vLLM may use (its default gpu_memory_utilization).
GPU_MEMORY_UTILIZATION = 0.9

# Sane ranges of a measurement's values: a value outside them is a unit or typing mistake, not a
# measurement, and (at 1e300) overflows the fit's P² column and relative residuals into inf / nan.
#: Tensor-parallel degree: the largest NVLink domains hold 72 GPUs; 1024 leaves ample headroom.
MAX_TP = 1024
#: Sequences in one step or batch: engines cap a running batch at max_num_seqs (vLLM: 256 by default,
#: rarely above 2,048); the engine check also writes one trace row per sequence.
MAX_BATCH = 100_000
#: Tokens in one step or one batch's context: 1e9 tokens of KV cache is ~100 TB at 100 KB per token,
#: beyond any node; it also keeps P² (1e18 for one row, 1e28 for a Splitwise batch) far from overflow.
MAX_TOKENS = 1e9
#: A measured step or batch time in seconds: above a GPU kernel launch (a few µs) with headroom, and
#: under 11.6 days (the longest public end-to-end rows take minutes).
MIN_TIME_S, MAX_TIME_S = 1e-7, 1e6
TIME_UNITS = {"s": 1.0, "ms": 1000.0}  # unit -> per second


@dataclass(frozen=True)
class RawTable:
    path: Path
    format: str
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    lines: tuple[int, ...]

    def col(self, name: str) -> int:
        return self.header.index(name)

    def numbers(
        self, name: str, idx: list[int] | None = None, *, minimum: float | None = None, maximum: float | None = None
    ) -> FloatArray:
        """Column ``name`` (restricted to row indices ``idx``) as floats; DataError on any bad cell."""
        c = self.col(name)
        out = []
        for i in range(len(self.rows)) if idx is None else idx:
            raw = self.rows[i][c].strip() if c < len(self.rows[i]) else ""
            where = f"line {self.lines[i]}, column '{name}'"
            try:
                value = float(raw)
            except ValueError:
                got = "an empty cell" if raw == "" else repr(raw)
                raise DataError(f"expected a number, got {got}", file=self.path, where=where) from None
            if not math.isfinite(value):
                raise DataError(f"expected a finite number, got {raw!r}", file=self.path, where=where)
            if minimum is not None and value < minimum:
                raise DataError(f"expected a number >= {minimum:g}, got {raw!r}", file=self.path, where=where)
            if maximum is not None and value > maximum:
                raise DataError(f"expected a number <= {maximum:g}, got {raw!r}", file=self.path, where=where)
            out.append(value)
        return np.asarray(out, dtype=np.float64)

    def positive(self, name: str, idx: list[int] | None = None) -> FloatArray:
        values = self.numbers(name, idx)
        bad = np.flatnonzero(values <= 0)
        if bad.size:
            i = bad[0] if idx is None else idx[bad[0]]
            raise DataError(
                f"expected a positive number, got {self.rows[i][self.col(name)].strip()!r}",
                file=self.path,
                where=f"line {self.lines[i]}, column '{name}'",
            )
        return values

    def tokens(self, name: str, idx: list[int] | None = None, *, minimum: float = 0.0) -> FloatArray:
        """A token-count column, at most :data:`MAX_TOKENS`."""
        return self.numbers(name, idx, minimum=minimum, maximum=MAX_TOKENS)

    def batch(self, name: str, idx: list[int] | None = None, *, minimum: float = 1.0) -> FloatArray:
        """A sequences-per-step column, at most :data:`MAX_BATCH`."""
        return self.numbers(name, idx, minimum=minimum, maximum=MAX_BATCH)

    def times(self, name: str, idx: list[int] | None = None, *, unit: str = "s") -> FloatArray:
        """A time column in its own ``unit`` ("s" or "ms"; callers convert, as before), checked to lie
        within [:data:`MIN_TIME_S`, :data:`MAX_TIME_S`] seconds."""
        values = self.positive(name, idx)
        per_s = TIME_UNITS[unit]
        bad = np.flatnonzero((values < MIN_TIME_S * per_s) | (values > MAX_TIME_S * per_s))
        if bad.size:
            i = bad[0] if idx is None else idx[bad[0]]
            raise DataError(
                f"expected a measured time between {MIN_TIME_S * per_s:g} and {MAX_TIME_S * per_s:g} {unit}, "
                f"got {self.rows[i][self.col(name)].strip()!r}",
                file=self.path,
                where=f"line {self.lines[i]}, column '{name}'",
            )
        return values

    def text(self, name: str, i: int) -> str:
        c = self.col(name)
        return self.rows[i][c].strip() if c < len(self.rows[i]) else ""


@dataclass
class Group:
    """Rows of one (model, hardware, tp, framework) combination, ready for :mod:`sim.profiles.fit`."""

    model: str
    hardware: str
    tp: int
    framework: str = ""
    rows_total: int = 0
    prefill: tuple[FloatArray, FloatArray] | None = None  # (total prompt tokens, s)
    prefill_attn: FloatArray | None = None  # attention work per prefill row when not P²/2 (chunks)
    decode: tuple[FloatArray, FloatArray, FloatArray] | None = None  # (n, ctx, s)
    e2e: tuple[FloatArray, FloatArray, FloatArray, FloatArray] | None = None  # (n, L_in, L_out, s)
    mixed: tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray] | None = None  # (C, A, n, X, s)
    notes: list[str] = field(default_factory=list)


def read_table(path: str | Path) -> RawTable:
    """Read a CSV and recognise its format from the header (see the module docstring)."""
    p = Path(path)
    try:
        if not p.exists():
            raise DataError("file not found", file=p)
        if not p.is_file():
            raise DataError("not a file", file=p)
        with p.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header_row = next(reader, None)
            rows: list[tuple[str, ...]] = []
            lines: list[int] = []
            for row in reader:
                if not row or all(cell.strip() == "" for cell in row):
                    continue
                rows.append(tuple(row))
                lines.append(reader.line_num)
    except UnicodeDecodeError as exc:
        raise DataError(f"not a UTF-8 text CSV ({exc.reason})", file=p) from None
    except csv.Error as exc:
        raise DataError(f"malformed CSV: {exc}", file=p) from None
    except OSError as exc:  # also from exists(): a folder on the path that we may not search
        raise read_error(exc, p) from None
    if header_row is None:
        raise DataError("empty file: expected a CSV header line", file=p, where="line 1")
    header = tuple(cell.strip() for cell in header_row)
    seen: set[str] = set()
    for name in header:
        if name in seen and name != "":
            first, second = [i + 1 for i, h in enumerate(header) if h == name][:2]
            raise DataError(
                f"column {name!r} appears more than once in the header (columns {first} and {second}); "
                "rename or remove one",
                file=p,
                where=f"line 1, column '{name}'",
            )
        seen.add(name)
    fmt = detect_format(header, p)
    for i, fields in enumerate(rows):
        if len(fields) > len(header):
            raise DataError(
                f"{len(fields)} fields but the header has {len(header)} columns",
                file=p,
                where=f"line {lines[i]}",
            )
    if not rows:
        raise DataError("no data rows after the header", file=p, where="line 2")
    return RawTable(p, fmt, header, tuple(rows), tuple(lines))


def detect_format(header: tuple[str, ...], path: Path) -> str:
    """The format whose required columns the header has; else DataError naming the missing columns."""
    present = set(header)
    best, best_overlap = "", 0.0
    for name, required in FORMATS.items():
        missing = [c for c in required if c not in present]
        if not missing:
            return name
        overlap = (len(required) - len(missing)) / len(required)
        if overlap > best_overlap:
            best, best_overlap = name, overlap
    if not best:
        expected = "; ".join(f"{n}: {', '.join(cols)}" for n, cols in FORMATS.items())
        raise DataError(
            f"unrecognised CSV header {list(header)}; expected the columns of one format ({expected})",
            file=path,
            where="line 1",
        )
    missing = [c for c in FORMATS[best] if c not in present]
    raise DataError(
        f"looks like a {best} table but misses column(s) {', '.join(repr(c) for c in missing)}",
        file=path,
        where=f"line 1, column '{missing[0]}'",
    )


def _group_indices(table: RawTable, key_columns: tuple[str, ...]) -> dict[tuple[str, ...], list[int]]:
    groups: dict[tuple[str, ...], list[int]] = {}
    for i in range(len(table.rows)):
        key = tuple(table.text(c, i) if c in table.header else "" for c in key_columns)
        groups.setdefault(key, []).append(i)
    return groups


TP_COLUMNS = ("tp", "tensor_parallel")  # the TP column of iteration / mixed_step / canonical tables


def _tp_column(table: RawTable) -> str:
    """The column giving the TP degree: ``tp``, or ``tensor_parallel`` (the Splitwise spelling); both is
    ambiguous (an error). Absent: ``tp`` (every row then TP 1)."""
    present = [c for c in TP_COLUMNS if c in table.header]
    if len(present) > 1:
        raise DataError(
            "both 'tp' and 'tensor_parallel' columns: give the tensor-parallel degree in one of them",
            file=table.path,
            where="line 1, column 'tensor_parallel'",
        )
    return present[0] if present else "tp"


def _tp_value(table: RawTable, column: str, idx: list[int]) -> int:
    values = table.numbers(column, idx[:1], minimum=1)
    value = float(values[0])
    if value != int(value) or value > MAX_TP:
        raise DataError(
            f"expected a whole number of GPUs (1 to {MAX_TP}), got {value:g}",
            file=table.path,
            where=f"line {table.lines[idx[0]]}, column '{column}'",
        )
    return int(value)


def _gpu_name(raw: str) -> str:
    return BENCH_HARDWARE.get(raw) or canonical_gpu(raw) or raw


def splitwise_groups(table: RawTable) -> list[Group]:
    """Prefill and decode rows per (model, hardware, tensor_parallel) of a Splitwise table.

    Prefill: P = batch_size·prompt_size, time = prompt_time. Decode: n = batch_size, time = token_time
    at the mean context n·(prompt_size + g/2) (:func:`~sim.profiles.fit.mean_decode_context`) where g is
    the number of tokens actually generated: ``min(token_size, 1 + (e2e − prompt_time)/token_time)``
    — long requested outputs (token_size ≥ 512) often stop early (e2e plateaus), so token_size overstates
    the context. Rows whose e2e exceeds prompt_time + (token_size − 1)·token_time by > 5 % are dropped
    (time spent stalled, e.g. preempted, is in neither phase).
    """
    out = []
    for (model, hardware, _), idx in sorted(
        _group_indices(table, ("model", "hardware", "tensor_parallel")).items()
    ):
        tp = _tp_value(table, "tensor_parallel", idx)
        prompt = table.tokens("prompt_size", idx, minimum=1)
        batch = table.batch("batch_size", idx)
        tokens = table.tokens("token_size", idx, minimum=1)
        pt = table.times("prompt_time", idx, unit="ms") / 1000.0
        tt = table.times("token_time", idx, unit="ms") / 1000.0
        e2e = table.times("e2e_time", idx, unit="ms") / 1000.0
        consistent = e2e <= SPLITWISE_E2E_SLACK * (pt + (tokens - 1) * tt)
        g = Group(model, _gpu_name(hardware), tp, rows_total=len(idx))
        dropped = int((~consistent).sum())
        if dropped:
            g.notes.append(
                f"dropped {dropped} row(s) whose e2e_time exceeds prompt_time + (token_size-1)*token_time "
                "by > 5% (stalled/preempted runs)"
            )
        k = consistent
        if k.any():
            generated = np.minimum(tokens[k], 1.0 + (e2e[k] - pt[k]) / tt[k])
            ctx = batch[k] * (prompt[k] + generated / 2.0)
            g.prefill = (batch[k] * prompt[k], pt[k])
            g.decode = (batch[k], ctx, tt[k])
        out.append(g)
    return out


def bench_groups(table: RawTable) -> list[Group]:
    """End-to-end rows per (Model, Hardware, Num of Hardware, Framework) of an LLM-Inference-Bench table.

    Failed runs are dropped first: rows over 4x faster per output token than the group's median at the
    same batch size (e.g. BAAI/Aquila-7B at L = 2048 reports 0.05 s for 2,048 tokens — its context window is
    2,048, so the request was rejected). Then rows whose KV cache cannot fit are dropped, when the model and GPU are known: n·2L·kv_bytes must fit
    in TP·memory·0.9 − weights. Beyond that the server preempts and recomputes, which the engine (which
    reserves each request's full KV cache at admission) never does, and latency grows far above the
    model (e.g. Llama-2-7B on one A100-40GB: 316 s at batch 64 × L 2048 vs ≈ 100 s extrapolated).
    """
    out = []
    keys = ("Model", "Hardware", "Num of Hardware", "Framework")
    for (model, hardware, _, framework), idx in sorted(_group_indices(table, keys).items()):
        tp = _tp_value(table, "Num of Hardware", idx)
        length = table.tokens("Input Output Length", idx, minimum=1)
        batch = table.batch("Batch Size", idx)
        latency = table.times("Latency", idx)
        gpu = _gpu_name(hardware)
        g = Group(model, gpu, tp, framework, rows_total=len(idx))
        rate = latency / length
        keep = np.ones(len(idx), dtype=bool)
        for n in np.unique(batch):
            same = batch == n
            keep[same] = rate[same] >= np.median(rate[same]) / FAILED_RUN_FACTOR
        if (~keep).any():
            g.notes.append(
                f"dropped {int((~keep).sum())} row(s) over {FAILED_RUN_FACTOR:g}x faster per output token than "
                "the group's median at the same batch size (failed runs, e.g. beyond the context window)"
            )
        info, spec = MODELS.get(model), GPUS.get(gpu)
        if info is not None and spec is not None:
            budget = tp * spec.memory_gb * 1e9 * GPU_MEMORY_UTILIZATION - info.weights_b * 2e9
            fits = batch * 2.0 * length * info.kv_bytes_per_token <= budget
            if (keep & ~fits).any():
                g.notes.append(
                    f"dropped {int((keep & ~fits).sum())} row(s) whose KV cache (batch*2L*{info.kv_bytes_per_token} B) "
                    f"exceeds {GPU_MEMORY_UTILIZATION:g}*{tp}*{spec.memory_gb:g} GB minus weights (preemption regime)"
                )
            keep &= fits
        else:
            g.notes.append("model or GPU memory unknown: no KV-cache-fit filter applied")
        jumped = _preemption_onset(batch, length, rate, keep)
        if jumped.any():
            g.notes.append(
                f"dropped {int(jumped.sum())} row(s) from the length where the time per output token jumps "
                f"over {PREEMPTION_JUMP:g}x that of the next shorter length at the same batch size (preemption)"
            )
            keep &= ~jumped
        if keep.any():
            g.e2e = (batch[keep], length[keep], length[keep], latency[keep])
        out.append(g)
    return out


def _preemption_onset(batch: FloatArray, length: FloatArray, rate: FloatArray, keep: np.ndarray) -> np.ndarray:
    """Rows (among ``keep``) at or beyond a jump of the per-output-token time over :data:`PREEMPTION_JUMP`
    between consecutive lengths at the same batch size."""
    out = np.zeros(batch.size, dtype=bool)
    for n in np.unique(batch):
        rows = np.flatnonzero((batch == n) & keep)
        rows = rows[np.argsort(length[rows], kind="stable")]
        for prev, row in zip(rows[:-1], rows[1:], strict=True):
            if length[row] > length[prev] and rate[row] > PREEMPTION_JUMP * rate[prev]:
                out[rows[rows.tolist().index(row):]] = True
                break
    return out


def canonical_groups(table: RawTable) -> list[Group]:
    """Prefill and decode rows per (model, gpu, tp) of a canonical table (missing columns → one group)."""
    out = []
    gpu_col = "gpu" if "gpu" in table.header else "hardware"
    tp_col = _tp_column(table)
    for (model, gpu, tp_raw), idx in sorted(_group_indices(table, ("model", gpu_col, tp_col)).items()):
        tp = _tp_value(table, tp_col, idx) if tp_raw else 1
        kinds: dict[str, list[int]] = {"prefill": [], "decode": []}
        for i in idx:
            kind = table.text("kind", i).lower()
            if kind not in kinds:
                raise DataError(
                    f"expected 'prefill' or 'decode', got {table.text('kind', i)!r}",
                    file=table.path,
                    where=f"line {table.lines[i]}, column 'kind'",
                )
            kinds[kind].append(i)
        g = Group(model or "-", _gpu_name(gpu) if gpu else "-", tp, rows_total=len(idx))
        needed = {"prefill": ("prompt_tokens",), "decode": ("batch_size", "context_tokens")}
        for kind, rows in kinds.items():
            if not rows:
                continue
            for column in needed[kind]:
                if column not in table.header:
                    raise DataError(
                        f"{kind} rows need column '{column}', which the header lacks",
                        file=table.path,
                        where=f"line 1, column '{column}'",
                    )
        if kinds["prefill"]:
            r = kinds["prefill"]
            g.prefill = (table.tokens("prompt_tokens", r), table.times("time_s", r))
        if kinds["decode"]:
            r = kinds["decode"]
            g.decode = (
                table.batch("batch_size", r),
                table.tokens("context_tokens", r),
                table.times("time_s", r),
            )
        g.notes += _duplicate_note(table, idx) + _rank_notes(g)
        out.append(g)
    return out


def _duplicate_note(table: RawTable, idx: list[int]) -> list[str]:
    """A note when rows of a group exactly repeat an earlier row (all cells equal after stripping)."""
    seen: set[tuple[str, ...]] = set()
    repeats = 0
    for i in idx:
        key = tuple(cell.strip() for cell in table.rows[i])
        repeats += key in seen
        seen.add(key)
    if not repeats:
        return []
    return [
        f"{repeats} row(s) exactly repeat an earlier row of this group: kept (repeated runs), but they add "
        "weight to those points, not information to identify the coefficients"
    ]


def _rank_notes(g: Group) -> list[str]:
    """Notes for the pure fits of ``g`` whose rows cannot identify all three coefficients (rank < 3 of the
    design ``1, x, y``, columns scaled to unit maximum): the fit then matches its rows whatever the split."""
    notes = []
    parts: list[tuple[str, FloatArray, FloatArray, str]] = []
    if g.decode is not None:
        parts.append(("decode", g.decode[0], g.decode[1], "batch size and context"))
    if g.prefill is not None:
        p = g.prefill[0]
        attn = g.prefill_attn if g.prefill_attn is not None else p * p / 2.0
        parts.append(("prefill", p, attn, "prompt tokens and attention work"))
    for kind, x, y, what in parts:
        design = np.column_stack([np.ones_like(x), x, y])
        scale = np.max(np.abs(design), axis=0)
        scale[scale == 0] = 1.0
        rank = int(np.linalg.matrix_rank(design / scale))
        if rank < 3:
            if kind == "decode" and rank == 2:
                detail = "decode_per_seq_s and decode_per_ctx_token_s are not separately identifiable"
            else:
                detail = f"its 3 {kind} coefficients are not separately identifiable"
            notes.append(
                f"{kind} rows do not vary {what} independently ({len(x)} row(s), design rank {rank} "
                f"of 3): {detail} (their split is arbitrary, and the fit's error says nothing)"
            )
    return notes


def _mixed_time_column(table: RawTable) -> str:
    present = [c for c in MIXED_TIME_COLUMNS if c in table.header]
    if len(present) != 1:
        problem = "has both" if present else "lacks"
        raise DataError(
            f"a mixed_step table needs exactly one time column, 'time_s' (seconds) or 'ms'; the header {problem}",
            file=table.path,
            where="line 1",
        )
    return present[0]


def mixed_step_groups(table: RawTable) -> list[Group]:
    """Pure prefill, pure decode and mixed rows per (model, gpu, tp) of a mixed_step table (module docstring)."""
    time_col = _mixed_time_column(table)
    gpu_col = "gpu" if "gpu" in table.header else "hardware"
    tp_col = _tp_column(table)
    out = []
    for (model, gpu, tp_raw), idx in sorted(_group_indices(table, ("model", gpu_col, tp_col)).items()):
        tp = _tp_value(table, tp_col, idx) if tp_raw else 1
        chunk = table.tokens("chunk_tokens", idx)
        prefix = table.tokens("chunk_prefix", idx)
        seqs = table.batch("decode_seqs", idx, minimum=0)
        ctx = seqs * table.tokens("decode_ctx_per_seq", idx)
        t = table.times(time_col, idx, unit=MIXED_TIME_UNITS[time_col]) * MIXED_TIME_COLUMNS[time_col]
        empty = np.flatnonzero((chunk == 0) & (seqs == 0))
        if empty.size:
            raise DataError(
                "an empty step: chunk_tokens and decode_seqs are both 0",
                file=table.path,
                where=f"line {table.lines[idx[empty[0]]]}, column 'chunk_tokens'",
            )
        attn = chunk_attention(chunk, prefix)
        g = Group(model or "-", _gpu_name(gpu) if gpu else "-", tp, rows_total=len(idx))
        pre, dec, mix = (seqs == 0), (chunk == 0), (chunk > 0) & (seqs > 0)
        if pre.any():
            g.prefill, g.prefill_attn = (chunk[pre], t[pre]), attn[pre]
        if dec.any():
            g.decode = (seqs[dec], ctx[dec], t[dec])
        if mix.any():
            g.mixed = (chunk[mix], attn[mix], seqs[mix], ctx[mix], t[mix])
        g.notes += _duplicate_note(table, idx) + _rank_notes(g)
        out.append(g)
    return out


def iteration_groups(table: RawTable) -> list[Group]:
    """Pure decode and prefill rows per (model, gpu, tp) of an ``iteration`` table (module docstring)."""
    gpu_col = "gpu" if "gpu" in table.header else "hardware"
    tp_col = _tp_column(table)
    out = []
    for (model, gpu, tp_raw), idx in sorted(_group_indices(table, ("model", gpu_col, tp_col)).items()):
        tp = _tp_value(table, tp_col, idx) if tp_raw else 1
        phases = [table.text("phase", i).lower() for i in idx]
        for i, phase in zip(idx, phases, strict=True):
            if phase not in ("decode", "prefill"):
                raise DataError(
                    f"expected 'decode' or 'prefill', got {table.text('phase', i)!r}",
                    file=table.path,
                    where=f"line {table.lines[i]}, column 'phase'",
                )
        g = Group(model or "-", _gpu_name(gpu) if gpu else "-", tp, rows_total=len(idx))
        dec = [i for i, ph in zip(idx, phases, strict=True) if ph == "decode"]
        pre = [i for i, ph in zip(idx, phases, strict=True) if ph == "prefill"]
        if dec:
            g.decode = (
                table.batch("batch", dec),
                table.tokens("total_ctx", dec),
                table.times("ms", dec, unit="ms") / 1000.0,
            )
        if pre:
            batch = table.batch("batch", pre)
            length = table.tokens("ctx_per_seq", pre, minimum=1)
            tokens = table.tokens("tokens", pre, minimum=1)
            t = table.times("ms", pre, unit="ms") / 1000.0
            keep = tokens >= ITERATION_MIN_PREFILL_TOKENS
            if (~keep).any():
                g.notes.append(
                    f"left out {int((~keep).sum())} prefill row(s) under {ITERATION_MIN_PREFILL_TOKENS} tokens "
                    "(kernel-launch overhead of an eager prefill, not prompt work)"
                )
            if keep.any():
                g.prefill = (tokens[keep], t[keep])
                g.prefill_attn = batch[keep] * length[keep] ** 2 / 2.0
        g.notes += _duplicate_note(table, idx) + _rank_notes(g)
        out.append(g)
    return out


def read_groups(path: str | Path) -> tuple[RawTable, list[Group]]:
    """Read ``path``, recognise its format and split it into fit-ready groups."""
    table = read_table(path)
    reader = {
        "splitwise": splitwise_groups,
        "llm_inference_bench": bench_groups,
        "canonical": canonical_groups,
        "mixed_step": mixed_step_groups,
        "iteration": iteration_groups,
    }
    return table, reader[table.format](table)
