"""Built-in latency profiles (``sim/data/profiles.json``) and lookup by model size, GPU and TP degree.

The JSON is produced by :mod:`sim.profiles.build_builtin` from the public tables in ``shared/data/gpu``;
this module only reads it. Lookups that hit no entry exactly are answered by scaling the nearest entry on
the same GPU with :func:`sim.profiles.hardware.scale_profile` — nearest meaning same TP degree first (TP
efficiency is the least predictable factor), then closest parameter count (in log ratio), then measured
before derived.
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

from sim.engine.latency import LatencyProfile
from sim.profiles.fit import DECODE_TERMS, PREFILL_TERMS
from sim.profiles.hardware import GPUS, canonical_gpu, gpu_ratios, scale_profile

COEFFICIENTS = PREFILL_TERMS + DECODE_TERMS


class UnknownGPUError(KeyError):
    """No built-in profile exists for the requested GPU; the message lists the GPUs that have one."""

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class BuiltinProfile:
    """One entry of the built-in table.

    ``derived`` entries were not measured: ``derived_from`` names the entry they were scaled from and
    ``rule`` says how. ``prefill_measured`` is true only where the prefill coefficients come from a direct
    prefill measurement (Splitwise) rather than from scaling one; ``fit`` holds the fit quality per part
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
    source: Mapping[str, Any]
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
        }
        out.update({c: getattr(self.profile, c) for c in COEFFICIENTS})
        out.update(
            {
                "derived": self.derived,
                "prefill_measured": self.prefill_measured,
                "source": dict(self.source),
                "fit": {k: dict(v) for k, v in self.fit.items()},
            }
        )
        if self.derived:
            out["derived_from"] = self.derived_from
            out["rule"] = self.rule
        return out

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> BuiltinProfile:
        return cls(
            name=str(d["name"]),
            model=str(d["model"]),
            model_size_b=float(d["model_size_b"]),
            gpu=str(d["gpu"]),
            tp=int(d["tp"]),
            profile=LatencyProfile(**{c: float(d[c]) for c in COEFFICIENTS}),
            derived=bool(d["derived"]),
            prefill_measured=bool(d["prefill_measured"]),
            source=dict(d.get("source", {})),
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


def builtin_profile(model_size_b: float, gpu: str, tp: int = 1) -> LatencyProfile:
    """Latency profile of a ``model_size_b``-billion-parameter model on ``tp`` GPUs of type ``gpu``.

    An entry with this size, GPU and TP is returned as is; otherwise the nearest entry on the same GPU
    (same TP first, then closest size) is scaled by parameters/TP (:data:`~sim.profiles.hardware.SCALING_RULE`
    with unchanged GPU). GPU names are matched loosely (``'A100'`` = ``'A100-80GB'``, ``'h100'``,
    ``'NVIDIA H100 SXM'``...). Raises :class:`UnknownGPUError` (a KeyError) listing the known GPUs.
    """
    if not (isinstance(model_size_b, int | float) and math.isfinite(model_size_b) and model_size_b > 0):
        raise ValueError(f"model_size_b must be a positive number of billions, got {model_size_b!r}")
    if isinstance(tp, bool) or not isinstance(tp, int) or tp < 1:
        raise ValueError(f"tp must be a positive integer, got {tp!r}")
    entries = _packaged()
    name = canonical_gpu(gpu)
    candidates = [e for e in entries if e.gpu == name]
    if not candidates:
        raise UnknownGPUError(
            f"no built-in latency profile for GPU {gpu!r}; known GPUs: {', '.join(known_gpus(entries))}"
        )
    ref = _nearest(candidates, float(model_size_b), tp)
    if ref.model_size_b == model_size_b and ref.tp == tp:
        return ref.profile
    return scale_profile(ref.profile, size_ratio=model_size_b / ref.model_size_b, tp_ratio=ref.tp / tp)


def prefill_prior(
    entries: Iterable[BuiltinProfile], size_b: float, gpu: str, tp: int
) -> tuple[LatencyProfile, str] | None:
    """Prefill coefficients for a group whose measurements cannot separate prefill (end-to-end only).

    Scaled from the nearest *measured* prefill (same GPU if any, else a GPU of equal peak FLOP/s, else any)
    — nearest TP first, since prefill efficiency (MFU) depends most on the TP degree — by the compute/memory
    rule. Returns (profile with zero decode terms, one-line provenance), or None when ``gpu`` has no
    datasheet entry in :data:`~sim.profiles.hardware.GPUS`.
    """
    if gpu not in GPUS:
        return None
    refs = [e for e in entries if e.prefill_measured and not e.derived and e.gpu in GPUS]
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
