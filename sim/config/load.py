"""Load a scenario YAML file into a validated :class:`Scenario`, or fail with one clear message.

Errors name the file, the YAML line and the field path (``deployments[1].tp``) and say what was
expected. Line numbers come from composing the YAML node tree alongside the plain load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from sim.config.checks import check_scenario, resolve_path
from sim.config.prices import resolve_prices
from sim.config.schema import Scenario
from sim.errors import InputError, format_path

MAX_LISTED_ERRORS = 5


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the deepest node on ``loc`` that exists in the YAML tree."""
    line = None if node is None else node.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = next((v for k, v in node.value if getattr(k, "value", None) == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            nxt = node.value[part]
        else:
            nxt = None
        if nxt is None:
            break
        node = nxt
        line = node.start_mark.line + 1
    return line


def _pydantic_message(err: dict[str, Any]) -> str:
    msg = str(err.get("msg", "invalid value"))
    if err.get("type") == "extra_forbidden":
        return "unknown key (not part of the scenario schema)"
    if err.get("type") == "missing":
        return "required field is missing"
    if "input" in err and err.get("type") not in ("model_type", "dict_type"):
        shown = repr(err["input"])
        if len(shown) > 60:
            shown = shown[:57] + "..."
        msg += f" (got {shown})"
    return msg


def _clean_loc(loc: tuple[Any, ...], data: Any) -> tuple[Any, ...]:
    """Drop pydantic's union-tag segments from a location.

    For a discriminated union pydantic inserts the tag (``workload.arrivals.poisson.rate``); we skip a
    segment that equals the ``type`` of the mapping at that point, and any ``function-after[...]``.
    """
    out: list[Any] = []
    node = data
    for part in loc:
        if isinstance(part, str) and ("[" in part or (isinstance(node, dict) and node.get("type") == part
                                                     and part not in node)):
            continue
        out.append(part)
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            node = None
    return tuple(out)


def apply_overrides(data: Any, sets: list[str], file: str | Path) -> Any:
    """Apply ``--set a.b.c=value`` overrides (value parsed as YAML) to the loaded scenario data."""
    for item in sets:
        if "=" not in item:
            raise InputError(f"--set expects KEY.PATH=VALUE, got {item!r}")
        key, raw = item.split("=", 1)
        node: Any = data
        parts = key.split(".")
        for part in parts[:-1]:
            if isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            elif isinstance(node, dict):
                node = node.setdefault(part, {})
            else:
                raise InputError(f"--set {key}: {part!r} does not name a mapping key or list index", file=file)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise InputError(f"--set {key}: value {raw!r} is not valid YAML") from None
        last = parts[-1]
        if isinstance(node, list) and last.isdigit() and int(last) < len(node):
            node[int(last)] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise InputError(f"--set {key}: cannot set {last!r} here", file=file)
    return data


def parse_scenario(
    text: str,
    file: str | Path = "<scenario>",
    base_dir: Path | None = None,
    overrides: list[str] | None = None,
) -> Scenario:
    """Validate YAML ``text`` with ``--set`` ``overrides`` applied; ``file`` is used in messages (with the
    line numbers of ``text``), ``base_dir`` resolves relative data paths."""
    try:
        data = yaml.safe_load(text)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else None
        raise InputError(f"not valid YAML: {exc.problem or exc}", file=file, where=where) from None
    except yaml.YAMLError as exc:
        raise InputError(f"not valid YAML: {exc}", file=file) from None
    if not isinstance(data, dict):
        raise InputError("expected a mapping of scenario fields at the top level", file=file, where="line 1")
    if overrides:
        data = apply_overrides(data, overrides, file)
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        lines = []
        for err in errors[:MAX_LISTED_ERRORS]:
            loc = _clean_loc(tuple(err["loc"]), data)
            line = _line_of(root, loc)
            where = f"line {line}: " if line else ""
            lines.append(f"{where}{format_path(loc)}: {_pydantic_message(dict(err))}")
        more = f"\n  (and {len(errors) - MAX_LISTED_ERRORS} more)" if len(errors) > MAX_LISTED_ERRORS else ""
        head = lines[0] if len(lines) == 1 else "invalid scenario:\n  " + "\n  ".join(lines)
        raise InputError(head + more, file=file) from None
    check_scenario(scenario, file=file, base_dir=base_dir, locate=lambda loc: _line_of(root, loc))
    scenario = resolve_prices(scenario, file, base_dir)
    return _absolute_paths(scenario, base_dir)


def _absolute_paths(sc: Scenario, base_dir: Path | None) -> Scenario:
    """Resolve data paths against the scenario's folder, so the resolved config written to a run folder
    reproduces the run from anywhere."""
    if base_dir is None:
        return sc
    wl = sc.workload
    arr, pool = wl.arrivals, wl.pool
    if hasattr(arr, "path"):
        arr = arr.model_copy(update={"path": str(resolve_path(arr.path, base_dir).resolve())})
    if hasattr(pool, "path"):
        pool = pool.model_copy(update={"path": str(resolve_path(pool.path, base_dir).resolve())})
    update: dict[str, object] = {"workload": wl.model_copy(update={"arrivals": arr, "pool": pool})}
    if sc.prices_file is not None:
        update["prices_file"] = str(resolve_path(sc.prices_file, base_dir).resolve())
    return sc.model_copy(update=update)


def read_scenario_text(path: str | Path) -> str:
    """The text of a scenario file, or an InputError naming it."""
    p = Path(path)
    if not p.exists():
        raise InputError("scenario file not found", file=p)
    if p.is_dir():
        raise InputError("expected a scenario YAML file, got a directory", file=p)
    try:
        return p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the file: {exc}", file=p) from None


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file."""
    p = Path(path)
    return parse_scenario(read_scenario_text(p), file=p, base_dir=p.resolve().parent)
