"""Hypothesis strategies that mutate the shipped scenarios into (mostly) bad ones.

Each mutation knows whether the result must be refused (``expect='fail'``: duplicate keys, NaN / inf,
a value of an incompatible type, deep nesting, an alias bomb, a wrong top-level type) or may go either
way (a deleted optional key, an out-of-range number, markup or unicode in a name). Scenarios are made
short (``num_queries`` small) so that the valid ones run in a fraction of a second.
"""

from __future__ import annotations

import copy
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

from tests.sim.fuzz_check import FuzzCase

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data"
NUM_QUERIES = 80
LOCAL_SCENARIOS = ("scenarios/quickstart.yaml", "sim/scenarios/quickstart.yaml",
                   "scenarios/mmc_validation.yaml", "scenarios/adversarial_batches.yaml")
SHARED_SCENARIOS = ("scenarios/mmlu_pro.yaml", "scenarios/dcrouter_azure_conv.yaml")

MARKUP = ("[/]", "[bold]x", "[big]", "[red]oops[/red]", "[/bold]", "[link=file:///etc]x", "\\[x]", "[")
UNICODE = ("\u202eevil\u202c", "modèle-ñ", "🚀🔥", "\x01\x02\x1b[31m", "\u200b", "\x7f", "a\x00b",
           "x" * 5000, "\ufeffname", "名前")
OUT_OF_RANGE: tuple[Any, ...] = (-1, 0, -0.0, 1e308, -1e308, 1e-300, 2**63, 10**30, 1e18, -(2**63))
NONFINITE = (float("nan"), float("inf"), float("-inf"))
RETYPES: tuple[Any, ...] = (True, False, "abc", "", [], [1, 2], {}, {"a": 1}, None, 3, 2.5)


def load_base(rel: str) -> dict[str, Any]:
    """A shipped scenario made short, with data paths made absolute (it is copied to a temp folder)."""
    src = REPO / rel
    data = yaml.safe_load(src.read_text(encoding="utf-8"))
    data["num_queries"] = NUM_QUERIES
    data.pop("duration_s", None)
    data["warmup_s"] = 0
    wl = data["workload"]
    for part in ("arrivals", "pool"):
        if "path" in wl[part]:
            wl[part]["path"] = str((src.parent / wl[part]["path"]).resolve())
    return data


def dump(data: Any) -> str:
    """Block-style YAML, one key per line (so that a line can be duplicated), never wrapped."""
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=10**9, default_flow_style=False)


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every mapping key and list index below ``node``, as a path from the root."""
    out = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for k, v in items:
        out.append(prefix + (k,))
        out.extend(paths(v, prefix + (k,)))
    return out


def _get(data: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        data = data[p]
    return data


def _incompatible(old: Any, new: Any) -> bool:
    """Would any schema reject ``new`` where ``old`` was valid? (None and int/float swaps may be fine.)"""
    if new is None:
        return False
    number = (int, float)
    if isinstance(old, bool) or isinstance(new, bool):
        return isinstance(new, (list, dict)) or (isinstance(old, bool) and isinstance(new, str))
    if isinstance(old, number):
        return isinstance(new, (str, list, dict))
    if isinstance(old, str):
        return isinstance(new, (list, dict))
    if isinstance(old, (dict, list)):
        return not isinstance(new, type(old)) and not (isinstance(old, list) and new == {})
    return False


DEEP = "DEEP-NESTING-GOES-HERE"


@st.composite
def value_mutation(draw: st.DrawFn, data: dict[str, Any]) -> FuzzCase:
    """Set, delete or rename one node of ``data``."""
    path = draw(st.sampled_from(paths(data)))
    parent, key = _get(data, path[:-1]), path[-1]
    old = parent[key]
    kind = draw(st.sampled_from(["delete", "retype", "range", "nonfinite", "markup", "unicode", "deep",
                                 "rename"]))
    mutated = copy.deepcopy(data)
    target = _get(mutated, path[:-1])
    label = f"{kind} {'.'.join(map(str, path))}"
    if kind == "delete":
        del target[key]
        return FuzzCase(label, dump(mutated))
    if kind == "rename":
        if not isinstance(target, dict):
            return FuzzCase(label + " (list item dropped)", dump(_drop(mutated, path)))
        new_key = draw(st.sampled_from(MARKUP + UNICODE))
        target[new_key] = target.pop(key)
        return FuzzCase(f"{label} -> {new_key[:20]!r}", dump(mutated))
    choices = {"retype": RETYPES, "range": OUT_OF_RANGE, "nonfinite": NONFINITE, "markup": MARKUP,
               "unicode": UNICODE}
    if kind == "deep":  # spliced into the text: the YAML emitter itself recurses
        depth = draw(st.integers(50, 2500))
        target[key] = DEEP
        text = dump(mutated).replace(DEEP, "[" * depth + "1" + "]" * depth)
        return FuzzCase(f"{label} = list nested {depth} deep", text, expect="fail")
    new = draw(st.sampled_from(choices[kind]))
    target[key] = new
    must = kind == "nonfinite" or (kind in ("retype", "markup", "unicode") and _incompatible(old, new))
    return FuzzCase(f"{label} = {str(new)[:40]!r}", dump(mutated), expect="fail" if must else "either")


def _drop(data: dict[str, Any], path: tuple[Any, ...]) -> dict[str, Any]:
    del _get(data, path[:-1])[path[-1]]
    return data


SCALAR_LINE = re.compile(r"^( *)(- )?([A-Za-z_][\w-]*): (\S.*)$")


@st.composite
def duplicate_key(draw: st.DrawFn, data: dict[str, Any]) -> FuzzCase:
    """Repeat one ``key: value`` line of the YAML text (same mapping, maybe another value)."""
    lines = dump(data).splitlines()
    candidates = [i for i, ln in enumerate(lines) if SCALAR_LINE.match(ln)]
    i = draw(st.sampled_from(candidates))
    indent, dash, key, value = SCALAR_LINE.match(lines[i]).groups()  # type: ignore[union-attr]
    pad = indent + ("  " if dash else "")
    again = draw(st.sampled_from([value, "1", "0.5", "'x'"]))
    lines.insert(i + 1, f"{pad}{key}: {again}")
    return FuzzCase(f"duplicate key {key!r} (line {i + 2})", "\n".join(lines) + "\n", expect="fail")


@st.composite
def alias_bomb(draw: st.DrawFn, data: dict[str, Any]) -> FuzzCase:
    """A small billion-laughs: nested aliases (10^levels items) used as the value of one field."""
    levels = draw(st.integers(2, 4))
    bomb = ["x_bomb:", "  - &b0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for k in range(1, levels + 1):
        bomb.append(f"  - &b{k} [" + ", ".join([f"*b{k - 1}"] * 10) + "]")
    lines = dump(data).splitlines()
    candidates = [i for i, ln in enumerate(lines) if SCALAR_LINE.match(ln)]
    i = draw(st.sampled_from(candidates))
    indent, dash, key, _ = SCALAR_LINE.match(lines[i]).groups()  # type: ignore[union-attr]
    lines[i] = f"{indent}{dash or ''}{key}: *b{levels}"
    return FuzzCase(f"alias bomb 10^{levels + 1} at {key!r}", "\n".join(bomb + lines) + "\n", expect="fail")


TOP_LEVEL: tuple[str | bytes, ...] = ("", "---\n", "[]\n", "- 1\n- 2\n", "42\n", "'text'\n", "null\n",
                                      ".nan\n", "a: 1\n---\nb: 2\n", "{\n", "\t- x\n", "!!python/object:os.system x\n",
                                      b"\xff\xfe\x00garbage\x00", b"\x00\x01\x02")


@st.composite
def text_mutation(draw: st.DrawFn, data: dict[str, Any]) -> FuzzCase:
    """Whole-text damage: wrong top-level type, truncation, a tab, garbage bytes in the middle."""
    text = dump(data)
    kind = draw(st.sampled_from(["top", "truncate", "garbage", "tab"]))
    if kind == "top":
        top = draw(st.sampled_from(TOP_LEVEL))
        return FuzzCase(f"top level {top[:20]!r}", top, expect="fail")
    cut = draw(st.integers(0, len(text) - 1))
    if kind == "truncate":
        return FuzzCase(f"truncated at {cut}", text[:cut])
    if kind == "tab":
        return FuzzCase(f"tab at {cut}", text[:cut] + "\t" + text[cut:])
    junk = draw(st.binary(min_size=1, max_size=20))
    return FuzzCase(f"garbage {junk!r} at {cut}", text[:cut].encode() + b"\xff" + junk + text[cut:].encode(),
                    expect="fail")


def scenario_cases(data: dict[str, Any], files: dict[str, bytes] | None = None) -> st.SearchStrategy[FuzzCase]:
    """Any mutation of ``data`` (which reads the data ``files``), run with --out or with the default run
    folder (runs/<name>-...)."""
    mutation = st.one_of(value_mutation(data), value_mutation(data), value_mutation(data),
                         duplicate_key(data), alias_bomb(data), text_mutation(data))
    return st.builds(lambda c, out: replace(c, label=c.label + ("" if out else " [no --out]"), use_out=out,
                                            files=dict(files or {})),
                     mutation, st.booleans())
