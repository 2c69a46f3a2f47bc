"""Digests of runs, to compare two builds of llmsim (the source checkout and the compiled install).

Run in-process by ``tests/engine/test_compiled.py`` and, as a script, by a Python started with ``-I`` outside
the checkout, so that its ``sim`` is the installed one: ``python -I compiled_digest.py VARIANTS.json``
prints the digests as JSON. Needs only llmsim and numpy (no pytest, no pandas).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
WALL_CLOCK = {"solve_time_s", "routing_time_s"}  # batches' timings of the routing code itself
N = 600

# (label, scenario file stem, overrides): dotted keys into the scenario; "deployments.*.key" sets every
# deployment's key (None removes it).
_RESERVE = {f"deployments.*.{k}": None for k in
            ("block_size", "max_num_batched_tokens", "chunked_prefill", "prefix_cache", "watermark")}


def variants() -> list[tuple[str, str, dict[str, Any]]]:
    out: list[tuple[str, str, dict[str, Any]]] = [(p.stem, p.stem, {}) for p in sorted(SCENARIOS.glob("*.yaml"))]
    for policy, window in [("least_loaded", 0.0), ("lagrangian", 0.0), ("milp", 2.0), ("round_robin", 0.0),
                           ("latency_aware", 0.0), ("threshold_greedy", 2.0), ("robust", 2.0)]:
        out.append((f"quickstart-{policy}-w{window}", "quickstart",
                    {"router.policy": policy, "router.params": {}, "router.window_s": window}))
    for sched in ("paged", "reserve"):
        for queue in ("per_instance", "shared"):
            upd: dict[str, Any] = {"deployments.*.scheduler": sched, "deployments.*.queue": queue}
            if sched == "reserve":
                upd.update(_RESERVE)
            out.append((f"quickstart-{sched}-{queue}", "quickstart", upd))
            out.append((f"quickstart-{sched}-{queue}-ll", "quickstart",
                        {**upd, "router.policy": "least_loaded", "router.params": {}}))
    out.append(("quickstart-maxqueue", "quickstart", {"deployments.*.max_queue": 4, "router.policy": "least_loaded",
                                                      "router.params": {}, "router.capacity": "slots_and_queue"}))
    for seed in (1, 2, 3):  # KV short enough to preempt; prompts in one step, or in chunks of <= 300 tokens
        out.append((f"memory_bound-s{seed}", "memory_bound", {"seed": seed}))
        out.append((f"memory_bound-s{seed}-chunks", "memory_bound",
                    {"seed": seed, "deployments.*.max_num_batched_tokens": 300}))
    return out


def _apply(d: dict[str, Any], upd: dict[str, Any]) -> None:
    for key, value in upd.items():
        parts = key.split(".")
        targets = d["deployments"] if parts[0] == "deployments" else [d]
        path = parts[2:] if parts[0] == "deployments" else parts
        for t in targets:
            for p in path[:-1]:
                t = t[p]
            if value is None:
                t.pop(path[-1], None)
            else:
                t[path[-1]] = value


def _table(cols: dict[str, Any]) -> str:
    h = hashlib.sha256()
    for name in sorted(cols):
        if name in WALL_CLOCK:
            continue
        a = np.asarray(cols[name])
        h.update(name.encode())
        h.update(repr(a.tolist()).encode() if a.dtype == object else a.dtype.str.encode() + a.tobytes())
    return h.hexdigest()


def digest(stem: str, upd: dict[str, Any]) -> dict[str, str]:
    """The run's summary (JSON text) and a hash per table; or the error it raised."""
    from sim.config import load_scenario
    from sim.results import TABLES
    from sim.runner import simulate

    try:
        sc = load_scenario(SCENARIOS / f"{stem}.yaml")
        d = sc.model_dump()
        d["num_queries"] = min(d.get("num_queries") or N, N)
        _apply(d, upd)
        res = simulate(type(sc).model_validate(d), base_dir=SCENARIOS)
    except Exception as exc:  # the same error from both builds is the same behaviour
        return {"error": f"{type(exc).__name__}: {exc}"}
    out = {"summary": json.dumps(res.summary, sort_keys=True, default=str)}
    out.update({name: _table(res.columns(name)) for name in TABLES})
    return out


def digests(chosen: list[tuple[str, str, dict[str, Any]]]) -> dict[str, dict[str, str]]:
    return {label: digest(stem, upd) for label, stem, upd in chosen}


if __name__ == "__main__":
    import sim.engine

    chosen = json.loads(Path(sys.argv[1]).read_text())
    print(json.dumps({"compiled": sim.engine.compiled(), "sim": str(Path(sim.engine.__file__).parent),
                      "digests": digests([tuple(v) for v in chosen])}))  # type: ignore[misc]
