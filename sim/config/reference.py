"""A Markdown reference of every scenario field, generated from the pydantic schema.

The schema is the single source of truth; ``docs/scenario-reference.md`` is this module's output (a test
keeps the two in step), and ``llmsim schema`` prints it.
"""

from __future__ import annotations

import types
import typing
from typing import Any, get_args, get_origin

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from sim.config.schema import Scenario


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
            out.append(f"| `{name}` | {_type_name(field.annotation)} | {_default(field)} | {desc} |")
            for sub in _models_in(field.annotation):
                queue.append((f"{title.split(' ')[0]}.{name}" if title != "scenario (top level)" else name, sub))
        out.append("")
    return "\n".join(out).replace("|  |", "| |") + "\n"
