"""Parse the experiment arguments: ``--policies a,b:k=v`` and ``--grid PATH=v1,v2 | PATH=start:stop:step``.

Values are YAML scalars, as ``--set`` takes them, so ``lam=31.5`` is a float and ``on_budget=reject`` a
string. Errors are :class:`~sim.errors.InputError` naming the argument and the offending part.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import yaml

from sim.errors import InputError

MAX_GRID_VALUES = 10_000


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters: an option's value may be thousands of characters long."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class PolicySpec:
    """A policy as the user wrote it (``label``) and what it means: a registered name and parameters."""

    label: str
    name: str
    params: dict[str, Any] = field(default_factory=dict)
    #: The option the policy came from, named by errors in it; "" for the scenario's own policy, whose
    #: errors are located in the scenario file.
    option: str = "--policies"

    def overrides(self) -> list[str]:
        """``--set`` overrides that make a scenario use this policy (its params replace the scenario's)."""
        from sim.config.load import Override

        label = f"{self.option} {clip(self.label, 80)}" if self.option else ""
        items = [f"router.policy={self.name}",
                 "router.params=" + yaml.safe_dump(self.params, default_flow_style=True).strip()]
        return [Override(item, label) for item in items]


def _scalar(raw: str, where: str) -> Any:
    """A value as ``--set`` reads it (the scenario loader's YAML rules: 1e-4 is a number, depth and
    alias limits)."""
    from sim.config.load import BadInteger, compose_checked

    try:
        return compose_checked(raw)[1]
    except BadInteger as exc:  # e.g. more digits than Python converts: named, not an internal error
        raise InputError(f"value {clip(raw, 40)!r}: {exc.problem}", where=where) from None
    except yaml.YAMLError:
        raise InputError(f"value {raw[:80]!r} is not a valid YAML value", where=where) from None


def parse_policies(text: str) -> list[PolicySpec]:
    """``"lagrangian,utility_greedy:lam=31.5,robust:kappa=1:gamma=2"`` → one spec per comma-separated item;
    parameters follow the name after ``:``, one ``key=value`` per ``:``."""
    specs: list[PolicySpec] = []
    for item in (s.strip() for s in text.split(",")):
        if not item:
            raise InputError(f"empty policy name in {text!r} (expected NAME[:key=value...],...)", where="--policies")
        name, *parts = item.split(":")
        params: dict[str, Any] = {}
        for part in parts:
            key, sep, raw = part.partition("=")
            if not sep or not key.strip():
                raise InputError(f"{item!r}: expected key=value after ':', got {part!r}", where="--policies")
            params[key.strip()] = _scalar(raw, f"--policies {clip(item, 80)}")
        specs.append(PolicySpec(label=item, name=name.strip(), params=params))
    labels = [s.label for s in specs]
    dupes = sorted({x for x in labels if labels.count(x) > 1})
    if dupes:
        raise InputError(f"policy listed twice: {', '.join(dupes)}", where="--policies")
    return specs


def _range(path: str, raw: str) -> list[Any]:
    """``start:stop:step``, stop included when the steps land on it (within float rounding)."""
    where = f"--grid {path}"
    try:
        start, stop, step = (float(x) for x in raw.split(":"))
    except ValueError:
        raise InputError(f"expected start:stop:step numbers, got {raw!r}", where=where) from None
    if not all(math.isfinite(x) for x in (start, stop, step)) or step == 0 or (stop - start) / step < 0:
        raise InputError(f"{raw!r}: step must be non-zero and lead from start to stop", where=where)
    count = int(math.floor((stop - start) / step + 1e-9)) + 1
    if count > MAX_GRID_VALUES:
        raise InputError(f"{raw!r} gives {count:,} values; at most {MAX_GRID_VALUES:,}", where=where)
    values = [start + k * step for k in range(count)]
    as_int = all(float(x).is_integer() for x in (start, stop, step))
    return [int(round(v)) if as_int else round(v, 12) for v in values]


def parse_grid(items: list[str]) -> dict[str, list[Any]]:
    """``["router.window_s=0,1,2", "router.min_quality=0.6:0.9:0.1"]`` → {path: values}, in order."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        path, sep, raw = item.partition("=")
        path = path.strip()
        if not sep or not path or not raw.strip():
            raise InputError(f"expected PATH=v1,v2,... or PATH=start:stop:step, got {item!r}", where="--grid")
        if path in grid:
            raise InputError(f"{path} is given twice", where="--grid")
        if raw.count(":") == 2 and "," not in raw:
            grid[path] = _range(path, raw)
        else:
            grid[path] = [_scalar(v.strip(), f"--grid {path}") for v in raw.split(",")]
        if len(set(map(repr, grid[path]))) != len(grid[path]):
            raise InputError(f"{raw!r} repeats a value", where=f"--grid {path}")
    return grid


def scenario_policy(source: Any, sets: list[str]) -> PolicySpec:
    """The scenario's own policy with its own parameters (``sweep`` without ``--policies``)."""
    from sim.config.load import parse_scenario

    sc = parse_scenario(source.text, file=source.file, base_dir=source.base_dir, overrides=sets)
    return PolicySpec(sc.router.policy, sc.router.policy, dict(sc.router.params), option="")
