"""A Markdown reference of every scenario field, generated from the pydantic schema.

The schema is the single source of truth; ``docs/scenario-reference.md`` is this module's output (a test
keeps the two in step), and ``llmsim schema`` prints it.
"""

from __future__ import annotations

import types
import typing
from typing import Any, get_args, get_origin

import annotated_types as at
from pydantic import AfterValidator, BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from sim.config.schema import (
    ACTIVATION_RESERVE_BANDS_GIB,
    ACTIVATION_RESERVE_TP_EXTRA_GIB,
    AtLeast,
    Scenario,
)


def _bounds(metadata: list[Any]) -> str | None:
    """'[lo, hi]'-style text of the numeric bounds in ``metadata`` (None when there are none)."""
    metadata = [x for m in metadata for x in (m.metadata if isinstance(m, FieldInfo) else [m])]
    lo: Any = None
    hi: Any = None
    lo_open = hi_open = False
    for m in metadata:
        if isinstance(m, at.Ge):
            lo, lo_open = m.ge, False
        elif isinstance(m, at.Gt):
            lo, lo_open = m.gt, True
        elif isinstance(m, at.Le):
            hi, hi_open = m.le, False
        elif isinstance(m, at.Lt):
            hi, hi_open = m.lt, True
    for m in metadata:  # a floor checked after gt=0 (see schema.AtLeast) is the real lower end
        if isinstance(m, AfterValidator) and isinstance(m.func, AtLeast):
            lo, lo_open = m.func.lo, False
    if lo is None and hi is None:
        return None
    left = "−∞" if lo is None else _num(lo)
    right = "∞" if hi is None else _num(hi)
    return f"{'(' if lo_open else '['}{left}, {right}{')' if hi_open else ']'}"


def _num(x: Any) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"


def _range(tp: Any, metadata: list[Any]) -> str | None:
    """The range of a field: its own bounds, else those of the numbers inside (Optional, list, tuple)."""
    own = _bounds(metadata)
    if own:
        return own
    origin = get_origin(tp)
    if origin is typing.Annotated:
        args = get_args(tp)
        return _range(args[0], list(args[1:]))
    if origin is tuple:
        parts = [_range(a, []) or "any" for a in get_args(tp)]
        return "(" + ", ".join(parts) + ")" if any(p != "any" for p in parts) else None
    inner = [r for a in get_args(tp) if a is not type(None) and (r := _range(a, []))]
    return inner[0] if len(inner) == 1 else None


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is typing.Annotated:
        return _type_name(get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp))
    if origin is typing.Literal:
        return " or ".join(repr(a) for a in get_args(tp))
    if origin in (list, tuple, dict):
        inner = ", ".join(_type_name(a) for a in get_args(tp) if a is not Ellipsis)
        return f"{origin.__name__}[{inner}]"
    if isinstance(tp, type):
        return "null" if tp is type(None) else tp.__name__
    return str(tp).replace("typing.", "")


def _models_in(tp: Any) -> list[type[BaseModel]]:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [tp]
    return [m for a in get_args(tp) for m in _models_in(a)]


def _default(field: Any) -> str:
    if field.is_required():
        return "**required**"
    if field.default_factory is not None:
        return "(see section)" if _models_in(field.annotation) else "`{}`"
    if field.default is PydanticUndefined:
        return ""
    return f"`{field.default!r}`".replace("'", '"') if field.default is not None else "`null`"


def reference_markdown() -> str:
    out = [
        "# Scenario reference",
        "",
        "Generated from `sim/config/schema.py` by `llmsim schema`; do not edit by hand.",
        "Unknown keys are rejected. Paths are relative to the scenario file.",
        "",
    ]
    seen: set[type[BaseModel]] = set()
    queue: list[tuple[str, type[BaseModel]]] = [("scenario (top level)", Scenario)]
    while queue:
        title, model = queue.pop(0)
        if model in seen:
            continue
        seen.add(model)
        doc = " ".join((model.__doc__ or "").split())
        out += [f"## {title}: `{model.__name__}`", "", doc, "", "| field | type | default | meaning |",
                "|---|---|---|---|"]
        for name, field in model.model_fields.items():
            desc = (field.description or "").replace("|", "\\|").replace("\n", " ")
            bounds = _range(field.annotation, list(field.metadata))
            if bounds:
                desc += f" Range: {bounds}."
            out.append(f"| `{name}` | {_type_name(field.annotation)} | {_default(field)} | {desc} |")
            for sub in _models_in(field.annotation):
                queue.append((f"{title.split(' ')[0]}.{name}" if title != "scenario (top level)" else name, sub))
        out.append("")
    out += _kv_capacity_notes()
    return "\n".join(out).replace("|  |", "| |") + "\n"


def _kv_capacity_notes() -> list[str]:
    """How a deployment's KV capacity is computed, with the default activation reserve table (built
    from the constants the code uses, so the page cannot drift from them)."""
    rows, lo = [], 0.0
    for below, gib in ACTIVATION_RESERVE_BANDS_GIB:
        band = f"< {below:g}" if lo == 0 else (f"{lo:g} – {below:g}" if below != float("inf") else f"≥ {lo:g}")
        rows.append(f"| {band} | {gib:g} | {gib + ACTIVATION_RESERVE_TP_EXTRA_GIB:g} |")
        lo = below
    return [
        "## KV capacity of a deployment",
        "",
        "Both schedulers size an instance's KV cache as a vLLM instance would:",
        "",
        "    KV tokens = floor((tp × memory_gib × gpu_memory_utilization − weights − tp × activation_reserve_gib)"
        " / kv_bytes_per_token)",
        "",
        "with weights = params_b × 1e9 × bytes_per_param and GiB = 2³⁰ bytes; the paged scheduler has "
        "floor(KV tokens / block_size) blocks. A deployment left with no KV room does not fit (an error). "
        "The activation reserve is the memory the engine keeps for activations, CUDA graphs, the sampler and "
        "communication buffers. Unless `activation_reserve_gib` is set, it is per GPU:",
        "",
        "| params_b | tp = 1 (GiB per GPU) | tp > 1 (GiB per GPU) |",
        "|---|---|---|",
        *rows,
        "",
        "Basis: vLLM logs its startup memory profile (\"model weights take X GiB; non_torch_memory takes Y GiB; "
        "PyTorch activation peak memory takes Z GiB; the rest of the memory reserved for KV Cache is W GiB\"). "
        "For Llama-3-8B on one H100 it reports non-torch 1.79 GiB and activation peak 1.26 GiB (3.05 GiB); at "
        "tp 2 non-torch grows to 3.58 GiB per GPU (NCCL and custom all-reduce buffers), hence the tp > 1 "
        f"column (+{ACTIVATION_RESERVE_TP_EXTRA_GIB:g} GiB; vllm-project/vllm pull request 10511). Larger models "
        "get more for their wider residual stream and larger logits, which tensor parallelism does not "
        "shard. Since vLLM 0.21 the captured CUDA graphs (a few hundred MiB) are counted too. Set "
        "`activation_reserve_gib` from your own engine's log for exact block counts, or 0 for the "
        "weights-only upper bound.",
        "",
    ]
