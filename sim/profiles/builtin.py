"""Built-in latency profiles (``sim/data/profiles.json``) and lookup by model size, GPU, TP and source.

The JSON is produced by :mod:`sim.profiles.build_builtin` from the public tables in ``shared/data/gpu``;
this module only reads it. Every entry names its **source** (:data:`SOURCES`):

* ``vllm-bench`` — fitted to LLM-Inference-Bench end-to-end runs under vLLM (the serving engine llmsim
  models); the prefill part is a scaled Splitwise prefill, since end-to-end rows cannot separate it;
* ``splitwise`` — fitted to the Splitwise perf-model table (direct prefill and per-iteration times);
* ``h200-torch`` — fitted to the H200 plain-PyTorch kernel table (CUDA-graph decode, eager prefill): GPU
  time only, no serving engine's CPU work and no paged attention;
* ``derived`` — scaled from another entry by :data:`~sim.profiles.hardware.SCALING_RULE`.

**One source policy** (``source=None``, a scenario's ``builtin: true``): among the entries of the GPU, for
each (size, TP) the first of ``vllm-bench``, ``splitwise``, ``derived`` is the default, so vLLM
measurements win wherever they exist; ``h200-torch`` entries are never the default (they lack the serving
engine's per-step and per-sequence CPU cost, see the build script's H200 check) unless a GPU has nothing
else. A lookup that hits no default entry exactly scales the nearest one on the same GPU with
:func:`sim.profiles.hardware.scale_profile` — nearest meaning same TP degree first (TP efficiency is the
least predictable factor), then closest parameter count (in log ratio). A named source (``builtin:
splitwise``) uses only that source's entries and needs one with the same GPU and TP and a size within
:data:`SOURCE_SIZE_TOLERANCE` (scaled to the exact size); otherwise :class:`NoSourceEntryError` lists what
the source has.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from sim.engine.latency import MIXED_TERMS, LatencyProfile
from sim.profiles.fit import DECODE_TERMS, PREFILL_TERMS
from sim.profiles.hardware import GPUS, canonical_gpu, gpu_ratios, scale_profile

COEFFICIENTS = PREFILL_TERMS + DECODE_TERMS
#: The sources an entry can come from, in default-policy preference order (h200-torch is never a default).
SOURCES = ("vllm-bench", "splitwise", "derived", "h200-torch")
DEFAULT_SOURCES = ("vllm-bench", "splitwise", "derived")
#: A named source matches an entry whose size is within this ratio of the asked size (e.g. a 70.6B
#: Llama-3-70B uses the 70B entry, scaled x70.6/70).
SOURCE_SIZE_TOLERANCE = 1.15


class UnknownGPUError(KeyError):
    """No built-in profile exists for the requested GPU; the message lists the GPUs that have one."""

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0]) if self.args else ""


class NoSourceEntryError(KeyError):
    """A named source has no entry for the asked size, GPU and TP; the message lists the ones it has."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class BuiltinProfile:
    """One entry of the built-in table.

    ``source`` is one of :data:`SOURCES` and ``engine`` the software that produced the measurement (for
    derived entries, that of the entry they come from). ``derived`` entries were not measured:
    ``derived_from`` names the entry they were scaled from and ``rule`` says how; measured entries may carry
    a ``rule`` too (e.g. the bound on the per-sequence term of the vLLM fits). ``prefill_measured`` is true
    only where the prefill coefficients come from a direct prefill measurement rather than from scaling one;
    ``data`` is the provenance (file, rows used, filters); ``fit`` holds the fit quality per part
    (``{"prefill": {"mape_pct", "r2", "rows"}, ...}``), empty for derived entries.
    """

    name: str
    model: str
    model_size_b: float
    gpu: str
    tp: int
    profile: LatencyProfile
    derived: bool
    prefill_measured: bool
    source: str
    engine: str
    data: Mapping[str, Any]
    fit: Mapping[str, Mapping[str, float]]
    rule: str | None = None
    derived_from: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "model": self.model,
            "model_size_b": self.model_size_b,
            "gpu": self.gpu,
            "tp": self.tp,
            "source": self.source,
            "engine": self.engine,
        }
        out.update({c: getattr(self.profile, c) for c in (*COEFFICIENTS, "step_overhead_s")})
        # mixed-step coefficients only where given (fitted): None means derived from the pure ones
        out.update({c: v for c in MIXED_TERMS if (v := getattr(self.profile, c)) is not None})
        out.update(
            {
                "derived": self.derived,
                "prefill_measured": self.prefill_measured,
                "data": dict(self.data),
                "fit": {k: dict(v) for k, v in self.fit.items()},
            }
        )
        if self.derived:
            out["derived_from"] = self.derived_from
        if self.rule is not None:
            out["rule"] = self.rule
        return out

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> BuiltinProfile:
        coefficients: dict[str, float] = {c: float(d[c]) for c in COEFFICIENTS}
        coefficients.update({c: float(d[c]) for c in MIXED_TERMS if d.get(c) is not None})
        return cls(
            name=str(d["name"]),
            model=str(d["model"]),
            model_size_b=float(d["model_size_b"]),
            gpu=str(d["gpu"]),
            tp=int(d["tp"]),
            profile=LatencyProfile(**coefficients, step_overhead_s=float(d.get("step_overhead_s", 0.0))),
            derived=bool(d["derived"]),
            prefill_measured=bool(d["prefill_measured"]),
            source=str(d["source"]),
            engine=str(d.get("engine", "")),
            data=dict(d.get("data", {})),
            fit={k: dict(v) for k, v in d.get("fit", {}).items()},
            rule=d.get("rule"),
            derived_from=d.get("derived_from"),
        )


def load_profiles(path: str | Path) -> tuple[BuiltinProfile, ...]:
    """Entries of a profiles JSON file (as written by :mod:`sim.profiles.build_builtin`)."""
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    return tuple(BuiltinProfile.from_json(d) for d in data["profiles"])


@lru_cache(maxsize=1)
def _packaged() -> tuple[BuiltinProfile, ...]:
    ref = resources.files("sim").joinpath("data/profiles.json")
    with resources.as_file(ref) as path:
        return load_profiles(path)


def list_builtin() -> list[BuiltinProfile]:
    """All built-in entries, measured and derived, in file order (by GPU, model size, TP)."""
    return list(_packaged())


def known_gpus(entries: Iterable[BuiltinProfile] | None = None) -> list[str]:
    return sorted({e.gpu for e in (_packaged() if entries is None else entries)})


def _nearest(candidates: Iterable[BuiltinProfile], size_b: float, tp: int) -> BuiltinProfile:
    return min(
        candidates,
        key=lambda e: (
            e.tp != tp,
            abs(math.log(e.model_size_b / size_b)),
            abs(math.log2(e.tp / tp)),
            e.derived,
            e.name,
        ),
    )


def default_entries(entries: Iterable[BuiltinProfile]) -> list[BuiltinProfile]:
    """The entries the one source policy uses (module docstring): per (GPU, size, TP) the first of
    :data:`DEFAULT_SOURCES` present; ``h200-torch`` entries only on a GPU that has nothing else."""
    entries = list(entries)
    best: dict[tuple[str, float, int], BuiltinProfile] = {}
    for e in entries:
        if e.source not in DEFAULT_SOURCES:
            continue
        key = (e.gpu, e.model_size_b, e.tp)
        if key not in best or DEFAULT_SOURCES.index(e.source) < DEFAULT_SOURCES.index(best[key].source):
            best[key] = e
    covered = {e.gpu for e in best.values()}
    return [e for e in entries if best.get((e.gpu, e.model_size_b, e.tp)) is e or e.gpu not in covered]


def _check_arguments(model_size_b: float, tp: int) -> None:
    if not (isinstance(model_size_b, int | float) and math.isfinite(model_size_b) and model_size_b > 0):
        raise ValueError(f"model_size_b must be a positive number of billions, got {model_size_b!r}")
    if isinstance(tp, bool) or not isinstance(tp, int) or tp < 1:
        raise ValueError(f"tp must be a positive integer, got {tp!r}")


def builtin_entry(model_size_b: float, gpu: str, tp: int = 1, *, source: str | None = None) -> BuiltinProfile:
    """The entry :func:`builtin_profile` starts from (exact, or the one it scales); same arguments."""
    _check_arguments(model_size_b, tp)
    entries = _packaged()
    name = canonical_gpu(gpu)
    on_gpu = [e for e in entries if e.gpu == name]
    if not on_gpu:
        raise UnknownGPUError(
            f"no built-in latency profile for GPU {gpu!r}; known GPUs: {', '.join(known_gpus(entries))}"
        )
    if source is None:
        return _nearest(default_entries(on_gpu), float(model_size_b), tp)
    if source not in SOURCES:
        raise NoSourceEntryError(f"unknown built-in source {source!r}; expected one of: {', '.join(SOURCES)}")
    named = [
        e
        for e in on_gpu
        if e.source == source
        and e.tp == tp
        and abs(math.log(e.model_size_b / model_size_b)) <= math.log(SOURCE_SIZE_TOLERANCE)
    ]
    if not named:
        have = [f"{e.model_size_b:g}B on {e.gpu} tp{e.tp}" for e in entries if e.source == source]
        raise NoSourceEntryError(
            f"built-in source {source!r} has no entry for {model_size_b:g}B on {name} at tp {tp} "
            f"(sizes within x{SOURCE_SIZE_TOLERANCE:g}); it has: {', '.join(have) or 'nothing'}"
        )
    return _nearest(named, float(model_size_b), tp)


def builtin_profile(model_size_b: float, gpu: str, tp: int = 1, *, source: str | None = None) -> LatencyProfile:
    """Latency profile of a ``model_size_b``-billion-parameter model on ``tp`` GPUs of type ``gpu``.

    ``source=None`` follows the one source policy (module docstring); a name from :data:`SOURCES` uses that
    source only. An entry with this size, GPU and TP is returned as is; otherwise the chosen entry is
    scaled by parameters/TP (:data:`~sim.profiles.hardware.SCALING_RULE` with unchanged GPU;
    ``step_overhead_s`` unscaled). GPU names are matched loosely (``'A100'`` = ``'A100-80GB'``, ``'h100'``,
    ``'NVIDIA H100 SXM'``, ``'H200'``...). Raises :class:`UnknownGPUError` (a KeyError) listing the known
    GPUs, :class:`NoSourceEntryError` (a KeyError) when a named source has no matching entry.
    """
    ref = builtin_entry(model_size_b, gpu, tp, source=source)
    if ref.model_size_b == model_size_b and ref.tp == tp:
        return ref.profile
    return scale_profile(ref.profile, size_ratio=model_size_b / ref.model_size_b, tp_ratio=ref.tp / tp)


def prefill_prior(
    entries: Iterable[BuiltinProfile], size_b: float, gpu: str, tp: int
) -> tuple[LatencyProfile, str] | None:
    """Prefill coefficients for a group whose measurements cannot separate prefill (end-to-end only).

    Scaled from the nearest *measured* Splitwise prefill (same GPU if any, else a GPU of equal peak
    FLOP/s, else any) — a serving system's batched prefill; the H200 table's prefills run eagerly in plain
    PyTorch — nearest TP first, since prefill efficiency (MFU) depends most on the TP degree — by the compute/memory
    rule. Returns (profile with zero decode terms, one-line provenance), or None when ``gpu`` has no
    datasheet entry in :data:`~sim.profiles.hardware.GPUS`.
    """
    if gpu not in GPUS:
        return None
    refs = [e for e in entries if e.prefill_measured and e.source == "splitwise" and e.gpu in GPUS]
    if not refs:
        return None
    same = [e for e in refs if e.gpu == gpu]
    if not same:
        same = [e for e in refs if GPUS[e.gpu].peak_tflops == GPUS[gpu].peak_tflops] or refs
    ref = min(same, key=lambda e: (abs(math.log2(e.tp / tp)), abs(math.log(e.model_size_b / size_b)), e.name))
    compute, bandwidth = gpu_ratios(ref.gpu, gpu)
    scaled = scale_profile(
        ref.profile,
        size_ratio=size_b / ref.model_size_b,
        tp_ratio=ref.tp / tp,
        compute_ratio=compute,
        bandwidth_ratio=bandwidth,
    )
    prior = LatencyProfile(**{c: getattr(scaled, c) for c in PREFILL_TERMS})
    how = (
        f"prefill from measured {ref.name} scaled x{size_b / ref.model_size_b:.4g} params, "
        f"x{ref.tp / tp:.4g} TP, GPU compute x{compute:.4g} / bandwidth x{bandwidth:.4g}"
    )
    return prior, how
