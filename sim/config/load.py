"""Load a scenario YAML file into a validated :class:`Scenario`, or fail with one clear message.

Errors name the file, the YAML line and the field path (``deployments[1].tp``) and say what was
expected. Line numbers come from the composed YAML node tree, which is then constructed into plain data
by the same :class:`ScenarioLoader` (a SafeLoader that also refuses duplicate keys, deep nesting and
alias bombs).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from sim.config.checks import (
    check_scenario,
    clip,
    policy_accepts,
    predictor_accepts,
    resolve_path,
    short,
)
from sim.config.prices import resolve_prices
from sim.config.schema import DatasetPool, Scenario
from sim.errors import InputError, format_path, os_reason, warn_input

MAX_LISTED_ERRORS = 5
#: Deepest YAML nesting accepted: a scenario needs about 6 levels; hundreds would exhaust the recursion
#: of the composer and of pydantic.
MAX_DEPTH = 50
#: Most YAML nodes a document may expand to once aliases are followed (a scenario has a few thousand;
#: a "billion laughs" alias bomb has 10⁹ and would hang validation and flood error messages).
MAX_EXPANDED_NODES = 200_000


class ScenarioLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses what the plain one silently accepts or crashes on:

    * a key repeated in one mapping (PyYAML keeps the last one, so a second ``router:`` would replace
      the whole block unseen): the error names both lines;
    * nesting deeper than :data:`MAX_DEPTH` (the composer recurses per level: ``RecursionError``).
    Alias bombs and recursive aliases are caught on the composed tree by :func:`compose_checked`.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                event = self.peek_event()
                raise yaml.composer.ComposerError(
                    None, None, f"nesting deeper than {MAX_DEPTH} levels", event.start_mark
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Node] = {}
        if isinstance(node, yaml.MappingNode):
            for key, _ in node.value:
                if key.tag == "tag:yaml.org,2002:merge" or not isinstance(key, yaml.ScalarNode):
                    continue
                if key.value in seen:
                    raise yaml.constructor.ConstructorError(
                        f"key {short(key.value)} first given on line {seen[key.value].start_mark.line + 1}",
                        seen[key.value].start_mark,
                        f"duplicate key {short(key.value)} (a repeated key would silently replace the "
                        "first)",
                        key.start_mark,
                    )
                seen[key.value] = key
        return super().construct_mapping(node, deep=deep)  # type: ignore[no-any-return]

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        """An integer, refused (with its line) when Python cannot print it: past
        ``sys.get_int_max_str_digits()`` digits (4300) ``int()`` and ``str()`` raise ValueError, and every
        message, override and run id prints the value. A bad ``!!int`` literal is refused the same way."""
        try:
            value: int = super().construct_yaml_int(node)
            str(value)  # a hex or binary literal converts, but its decimal form may be too long to print
        except ValueError as exc:
            too_long = "limit" in str(exc)  # "Exceeds the limit (4300 digits) for integer string conversion"
            raise BadInteger(node, too_long) from None
        return value


class BadInteger(yaml.constructor.ConstructorError):
    """An integer literal that cannot be used: too many digits for Python to convert, or not a number.
    ``path`` is filled in by :func:`compose_checked` (the field the value is at, when found)."""

    def __init__(self, node: yaml.ScalarNode, too_long: bool) -> None:
        problem = (f"integer too large (more than {sys.get_int_max_str_digits():,} decimal digits)" if too_long
                   else f"{clip(str(node.value), 40)!r} is not an integer")
        super().__init__(None, None, problem, node.start_mark)
        self.node = node
        self.path: tuple[Any, ...] = ()


ScenarioLoader.add_constructor("tag:yaml.org,2002:int", ScenarioLoader.construct_yaml_int)

# PyYAML follows YAML 1.1, where a float needs a dot and a signed exponent: ``1e-4`` and ``1.0e5`` are
# strings. With strict types a string is never a number, so accept YAML 1.2's exponent forms too.
ScenarioLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def _expanded_size(root: yaml.Node) -> int:
    """Nodes of ``root`` once every alias is expanded, stopping past :data:`MAX_EXPANDED_NODES`.

    Memoised per node (aliases share node objects), so a bomb is measured without being expanded; a
    node met again while its own size is being computed is a recursive alias."""
    size: dict[int, int] = {}
    active: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        if done:
            active.discard(id(node))
            size[id(node)] = min(1 + sum(size[id(c)] for c in children), MAX_EXPANDED_NODES + 1)
            continue
        if id(node) in size:
            continue
        if id(node) in active:
            raise yaml.composer.ComposerError(None, None, "recursive alias (a node containing itself)",
                                              node.start_mark)
        active.add(id(node))
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in size)
    return size[id(root)]


def compose_checked(text: str) -> tuple[yaml.Node | None, Any]:
    """The composed node tree of one YAML document and the data constructed from it (one parse)."""
    loader = ScenarioLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None, None
        if _expanded_size(root) > MAX_EXPANDED_NODES:
            raise yaml.composer.ComposerError(
                None, None,
                f"the document expands to more than {MAX_EXPANDED_NODES:,} nodes once aliases are followed "
                "(an alias bomb?)", root.start_mark,
            )
        try:
            return root, loader.construct_document(root)
        except BadInteger as exc:
            exc.path = _path_to(root, exc.node)
            raise
    finally:
        loader.dispose()


def _path_to(root: yaml.Node, target: yaml.Node) -> tuple[Any, ...]:
    """The field path of ``target`` in the tree (``()`` for the root or a mapping key)."""
    stack: list[tuple[yaml.Node, tuple[Any, ...]]] = [(root, ())]
    seen: set[int] = set()
    while stack:
        node, path = stack.pop()
        if node is target:
            return path
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            stack += [(k, path) for k, _ in node.value]
            stack += [(v, (*path, getattr(k, "value", "?"))) for k, v in node.value]
        elif isinstance(node, yaml.SequenceNode):
            stack += [(v, (*path, i)) for i, v in enumerate(node.value)]
    return ()


def _yaml_error(exc: yaml.YAMLError, file: str | Path, what: str = "not valid YAML", text: str = "") -> InputError:
    if isinstance(exc, BadInteger):  # valid YAML, unusable value: name the field as a schema error would
        mark = exc.problem_mark
        field = f"{format_path(exc.path)}: " if exc.path else ""
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else None
        return InputError(f"{field}{exc.problem}", file=file, where=where)
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else None
        context = f" ({exc.context})" if exc.context and exc.problem else ""
        return InputError(f"{what}: {exc.problem or exc}{context}", file=file, where=where)
    if isinstance(exc, yaml.reader.ReaderError):  # a control character: no mark, but a position
        line = text[: exc.position].count("\n") + 1
        ch = exc.character
        shown = f"U+{ch:04X}" if isinstance(ch, int) else repr(ch)
        return InputError(f"{what}: control character {shown} is not allowed in YAML", file=file,
                          where=f"line {line}")
    return InputError(f"{what}: {clip(str(exc), 200)}", file=file)


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
    # pydantic may quote the input in the message itself (a union tag): cut it like any echo
    msg = clip(str(err.get("msg", "invalid value")).removeprefix("Value error, "), 200)
    if err.get("type") == "extra_forbidden":
        return "unknown key (not part of the scenario schema)"
    if err.get("type") == "missing":
        return "required field is missing"
    if "input" in err and err.get("type") not in ("model_type", "dict_type"):
        msg += f" (got {short(err['input'])})"
    return msg


def _clean_loc(loc: tuple[Any, ...], data: Any) -> tuple[Any, ...]:
    """Drop pydantic's union-tag segments from a location.

    For a discriminated union pydantic inserts the tag (``workload.arrivals.poisson.rate``); we skip a
    segment that equals the ``type`` (or, for ``events``, the ``kind``) of the mapping at that point,
    and any ``function-after[...]``.
    """
    out: list[Any] = []
    node = data
    for part in loc:
        if isinstance(part, str) and ("[" in part or (isinstance(node, dict) and part not in node
                                                     and part in (node.get("type"), node.get("kind")))):
            continue
        out.append(part)
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            node = None
    return tuple(out)


class Override(str):
    """A ``KEY.PATH=VALUE`` override that remembers the option it came from, so that an error in its value
    names that option (``--policy``, ``--grid router.window_s``) rather than a line of the scenario file
    the value never came from. A plain ``str`` override is a ``--set`` one; ``option=""`` marks a value
    taken from the scenario file itself (errors in it keep the file's line)."""

    option: str | None

    def __new__(cls, item: str, option: str | None = None) -> Override:
        obj = super().__new__(cls, item)
        obj.option = option
        return obj


def option_label(item: str, key: str) -> str:
    """How messages name the option an override came from: its own label, else ``--set KEY``."""
    option = getattr(item, "option", None)
    return f"--set {clip(key, 80)}" if option is None else option


def _set_one(data: Any, item: str, file: str | Path) -> str:
    """Apply one ``KEY.PATH=VALUE`` override to ``data``; return the key path."""
    if "=" not in item:
        raise InputError(f"{getattr(item, 'option', None) or '--set'} expects KEY.PATH=VALUE, got {short(item)}")
    key, raw = item.split("=", 1)
    node: Any = data
    parts = key.split(".")
    label = option_label(item, key) or f"--set {clip(key, 80)}"
    if not all(parts):
        raise InputError("empty segment in the key path", file=file, where=label)
    for part in parts[:-1]:
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict):
            node = node.setdefault(part, {})
        else:
            raise InputError(f"{short(part)} does not name a mapping key or list index", file=file, where=label)
    try:
        _, value = compose_checked(raw)
    except BadInteger as exc:
        raise InputError(exc.problem or "invalid integer", file=file, where=label) from None
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, label, f"{short(key)}: value {short(raw)} is not valid YAML") from None
    last = parts[-1]
    if isinstance(node, list) and last.isdigit() and int(last) < len(node):
        node[int(last)] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise InputError(f"cannot set {short(last)} here", file=file, where=label)
    return key


def apply_overrides(data: Any, sets: list[str], file: str | Path, origins: Origins | None = None) -> Any:
    """Apply ``--set a.b.c=value`` overrides (value parsed as YAML) to the loaded scenario data.
    ``origins``, when given, receives each overridden key path and the option it came from (see
    :class:`Origins`).

    When an override swaps the policy or the predictor, parameters from the file that the new one does
    not take are dropped with a warning (the old one's ``k: 16`` would otherwise make
    ``--set router.predictor.name=task_mean`` fail), as ``--policy`` already resets them.
    """
    data = _unshare(data)
    keys = [_set_one(data, item, file) for item in sets]
    if origins is not None:
        for item, key in zip(sets, keys, strict=True):
            origins.add(key, option_label(item, key))
    router = data.get("router") if isinstance(data, dict) else None
    if not isinstance(router, dict):
        return data
    if "router.policy" in keys:
        _drop_unaccepted(router, policy_accepts(router.get("policy")), "router.params", keys, file)
    predictor = router.get("predictor")
    if "router.predictor.name" in keys and isinstance(predictor, dict):
        _drop_unaccepted(predictor, predictor_accepts(predictor.get("name")), "router.predictor.params", keys,
                         file)
    return data


def _unshare(value: Any) -> Any:
    """A copy in which no two places share one dict or list: YAML aliases construct shared objects, and
    ``--set deployments.0.instances=2`` must not also change an aliased ``deployments[1]``. (Bounded by
    MAX_EXPANDED_NODES and MAX_DEPTH, checked when the document was composed.)"""
    if isinstance(value, dict):
        return {k: _unshare(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unshare(v) for v in value]
    return value


def _drop_unaccepted(block: dict[str, Any], accepted: set[str] | None, where: str, keys: list[str],
                     file: str | Path) -> None:
    """Drop ``block["params"]`` entries the new name does not accept, unless an override set them (or
    the whole block): what the user typed is never dropped, so a mistake there is still reported."""
    params = block.get("params")
    if accepted is None or not isinstance(params, dict) or where in keys:
        return  # unknown name, malformed or freshly given params: validation reports any problem
    typed = {k[len(where) + 1 :].split(".")[0] for k in keys if k.startswith(where + ".")}
    dropped = sorted(str(k) for k in params if k not in accepted and k not in typed)
    if dropped:
        block["params"] = {k: v for k, v in params.items() if k in accepted or k in typed}
        kind = "policy" if where == "router.params" else "predictor"
        warn_input(f"dropped {', '.join(short(k) for k in dropped)}: not accepted by the {kind} chosen with "
                   f"--set (give its parameters with --set {where}.KEY=...)", file=file, where=where)


class Origins:
    """Where the values an override set came from: key path → option label. A schema or consistency error
    at (or inside) an overridden path names the option (``--set router.window_s``), not the line of the
    scenario file that held the value the override replaced."""

    def __init__(self) -> None:
        self._labels: dict[tuple[str, ...], str] = {}

    def add(self, key: str, label: str) -> None:
        """Record ``key`` as set by ``label``; ``""`` (a value from the file) clears an earlier label."""
        if label:
            self._labels[tuple(key.split("."))] = label
        else:
            self._labels.pop(tuple(key.split(".")), None)

    def where(self, loc: tuple[Any, ...], shown: tuple[Any, ...] | None = None) -> str | None:
        """``PATH (from --set KEY)`` with ``PATH`` the field path (as ``shown``), or None when no override
        set ``loc``: the longest overridden key path that ``loc`` starts with names the option."""
        parts = tuple(str(p) for p in loc)
        hits = [k for k in self._labels if parts[: len(k)] == k]
        if not hits:
            return None
        return f"{format_path(shown or loc)} (from {self._labels[max(hits, key=len)]})"


def parse_scenario(
    text: str,
    file: str | Path = "<scenario>",
    base_dir: Path | None = None,
    overrides: list[str] | None = None,
) -> Scenario:
    """Validate YAML ``text`` with ``--set`` ``overrides`` applied; ``file`` is used in messages (with the
    line numbers of ``text``), ``base_dir`` resolves relative data paths."""
    try:
        root, data = compose_checked(text)
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, file, text=text) from None
    except RecursionError:  # belt and braces: MAX_DEPTH should stop nesting long before
        raise InputError("not valid YAML: nested too deeply", file=file) from None
    if not isinstance(data, dict):
        raise InputError("expected a mapping of scenario fields at the top level", file=file, where="line 1")
    origins = Origins()
    if overrides:
        data = apply_overrides(data, overrides, file, origins)
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        raise _validation_error(exc, data, root, file, origins) from None
    except RecursionError:
        raise InputError("the scenario is nested too deeply to validate", file=file) from None
    _checked(scenario, file, base_dir, root, origins)
    scenario = resolve_prices(scenario, file, base_dir)
    return _absolute_paths(scenario, base_dir)


def _checked(scenario: Scenario, file: str | Path, base_dir: Path | None, root: yaml.Node | None,
             origins: Origins) -> None:
    """:func:`check_scenario`, its error located at the option that set the failing field, if one did.

    ``check_scenario`` asks ``locate`` for a line just before it raises; a field an override set has no
    line of its own, so the error's location is replaced by the option's label."""
    asked: list[tuple[str, str]] = []

    def locate(loc: tuple[Any, ...]) -> int | None:
        label = origins.where(loc)
        if label is None:
            return _line_of(root, loc)
        asked.append((format_path(loc), label))
        return None

    try:
        check_scenario(scenario, file=file, base_dir=base_dir, locate=locate)
    except InputError as exc:
        if not asked or exc.where != asked[-1][0]:
            raise
        raise type(exc)(exc.detail, file=exc.file, where=asked[-1][1]) from None


def _validation_error(exc: ValidationError, data: Any, root: yaml.Node | None, file: str | Path,
                      origins: Origins | None = None) -> InputError:
    """One message listing the first few schema errors, each with its YAML line (or the option that set
    the value) and field path."""
    errors = exc.errors()
    lines = []
    for err in errors[:MAX_LISTED_ERRORS]:
        loc = _clean_loc(tuple(err["loc"]), data)
        shown = tuple(clip(p, 60) if isinstance(p, str) else p for p in loc)  # an unknown key may be huge
        option = origins.where(loc, shown) if origins is not None else None
        if option is not None:
            lines.append(f"{option}: {_pydantic_message(dict(err))}")
            continue
        line = _line_of(root, loc)
        where = f"line {line}: " if line else ""
        lines.append(f"{where}{format_path(shown)}: {_pydantic_message(dict(err))}")
    more = f"\n  (and {len(errors) - MAX_LISTED_ERRORS} more)" if len(errors) > MAX_LISTED_ERRORS else ""
    head = lines[0] if len(lines) == 1 else "invalid scenario:\n  " + "\n  ".join(lines)
    return InputError(head + more, file=file)


def _absolute_paths(sc: Scenario, base_dir: Path | None) -> Scenario:
    """Resolve data paths against the scenario's folder, so the resolved config written to a run folder
    reproduces the run from anywhere."""
    if base_dir is None:
        return sc
    wl = sc.workload
    arr, pool = wl.arrivals, wl.pool
    if hasattr(arr, "path"):
        arr = arr.model_copy(update={"path": str(resolve_path(arr.path, base_dir).resolve())})
    if isinstance(pool, DatasetPool):
        absolute = [str(resolve_path(item, base_dir).resolve()) for item in pool.paths]
        pool = pool.model_copy(update={"path": absolute[0] if isinstance(pool.path, str) else absolute})
    update: dict[str, object] = {"workload": wl.model_copy(update={"arrivals": arr, "pool": pool})}
    if sc.prices_file is not None:
        update["prices_file"] = str(resolve_path(sc.prices_file, base_dir).resolve())
    return sc.model_copy(update=update)


MAX_SCENARIO_BYTES = 16 << 20
"""Largest scenario file read (the bundled ones are under 10 KB; inline queries may make one bigger)."""


def read_scenario_text(path: str | Path) -> str:
    """The text of a scenario file, or an InputError naming it."""
    p = Path(path)
    try:
        if not p.exists():
            raise InputError("scenario file not found", file=p)
        if p.is_dir():
            raise InputError("expected a scenario YAML file, got a directory", file=p)
        with p.open("rb") as f:  # bounded: /dev/zero or a runaway pipe must not fill the memory
            data = f.read(MAX_SCENARIO_BYTES + 1)
    except OSError as exc:  # also from exists(): a folder on the path that we may not search
        raise InputError(f"cannot read the file: {os_reason(exc)}", file=p) from None
    if len(data) > MAX_SCENARIO_BYTES:
        raise InputError(f"larger than {MAX_SCENARIO_BYTES >> 20} MiB; expected a scenario YAML file (data "
                         "belongs in the trace and dataset files it names)", file=p)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(f"not UTF-8 text (byte 0x{data[exc.start]:02x}); save the file as UTF-8",
                         file=p, where=f"line {line}") from None
    return text.removeprefix("\ufeff")  # a byte-order mark is legal UTF-8 but not part of the YAML


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file."""
    p = Path(path)
    return parse_scenario(read_scenario_text(p), file=p, base_dir=p.resolve().parent)
