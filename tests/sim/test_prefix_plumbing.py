"""Mooncake ``hash_ids`` travel from the trace file to every engine Request's ``prefix``: in order, each
with its own request (through windows, time scaling, both routing paths and pickling), None for sources
without hashes, and a bad value is one error line naming file and line, exit code 2."""

from __future__ import annotations

import gzip
import json
import math
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

import sim.dispatcher
from sim.cli import app
from sim.config import load_scenario
from sim.engine.request import Request
from sim.errors import DataError
from sim.runner import prepare, simulate
from tests.sim.conftest import SCENARIOS, small_scenario

MOONCAKE = SCENARIOS.parents[1] / "shared" / "data" / "traces" / "mooncake_conversation_trace.jsonl.gz"


def _trace_rows(n: int, seed: int) -> list[dict[str, Any]]:
    """Conversation-like rows: ticks of 1-4 requests every 2 s, ceil(input / 512) hashes each; about
    half continue an earlier row's prompt (sharing its leading hashes), as follow-up turns do."""
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    next_hash, t = 0, 0
    while len(rows) < n:
        for _ in range(int(rng.integers(1, 5))):
            length = int(rng.integers(1, 4000))
            blocks = math.ceil(length / 512)
            head: list[int] = []
            if rows and rng.random() < 0.5:
                parent = rows[int(rng.integers(len(rows)))]["hash_ids"]
                head = parent[: int(rng.integers(0, min(len(parent), blocks - 1) + 1))]  # >= 1 fresh
            fresh = list(range(next_hash, next_hash + blocks - len(head)))
            next_hash += len(fresh)
            rows.append({"timestamp": t, "input_length": length, "output_length": int(rng.integers(1, 300)),
                         "hash_ids": head + fresh})
        t += 2000
    return rows[:n]


def _write_trace(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _scenario(write_scenario: Any, trace: Path, window_s: float = 0.0, **arrivals: Any) -> Any:
    data = small_scenario(num_queries=None, duration_s=None)
    data.pop("num_queries")
    data.pop("duration_s")
    data["workload"]["arrivals"] = {"type": "trace", "path": str(trace), **arrivals}
    data["router"]["window_s"] = window_s
    return load_scenario(write_scenario(data))


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> list[Request]:
    """Every Request the dispatcher creates, in creation order."""
    made: list[Request] = []

    class Recording(Request):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(sim.dispatcher, "Request", Recording)
    return made


@pytest.mark.parametrize(
    "window_s, arrivals, first, last",
    [
        (0.0, {}, 0, 60),  # every row; Δ = 0 routes query by query (the precomputed fast path)
        (1.5, {}, 0, 60),  # windows of several queries: the batch path
        (0.0, {"start_s": 6.0, "time_scale": 2.0}, None, None),  # a window cut from the trace's clock
    ],
    ids=["single", "batched", "window"],
)
def test_each_request_carries_its_own_rows_hashes_in_order(
    write_scenario: Any, tmp_path: Path, captured: list[Request], window_s: float, arrivals: dict[str, Any],
    first: int | None, last: int | None,
) -> None:
    rows = _trace_rows(60, seed=1)
    sc = _scenario(write_scenario, _write_trace(tmp_path / "t.jsonl", rows), window_s, **arrivals)
    if first is None:  # rows from start_s on: the replay keeps the trace's own gaps, scaled
        first = next(i for i, r in enumerate(rows) if r["timestamp"] >= 6000)
        last = len(rows)
    expected = rows[first:last]
    result = simulate(sc)
    assert result.summary["queries"]["arrived"] == len(expected)
    by_rid = {r.rid: r for r in captured}
    assert len(captured) == len(by_rid) == len(expected)  # one Request per query, all routed here
    for rid, row in enumerate(expected):
        req = by_rid[rid]
        assert req.prompt_tokens == row["input_length"]
        assert req.prefix == tuple(row["hash_ids"]) and isinstance(req.prefix, tuple)
    # The fixture is one a mix-up would fail: rows share leading hashes, yet no two rows are equal.
    flat = [h for row in expected for h in row["hash_ids"]]
    assert len(set(flat)) < len(flat)
    assert len({tuple(row["hash_ids"]) for row in expected}) == len(expected)


def test_sources_without_hashes_give_prefix_none(write_scenario: Any, tmp_path: Path,
                                                  captured: list[Request]) -> None:
    rows = _trace_rows(20, seed=2)
    trace = _write_trace(tmp_path / "t.jsonl", rows)
    # The pool's prompt lengths replace the trace's: the hashes would describe a prompt never sent.
    simulate(_scenario(write_scenario, trace, use_trace_tokens=False))
    assert len(captured) == 20 and all(r.prefix is None for r in captured)
    captured.clear()
    csv = tmp_path / "azure.csv"
    csv.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n" + "".join(
        f"2023-11-16 18:17:{10 + i:02d}.0000000,{100 + i},{5 + i}\n" for i in range(15)), encoding="utf-8")
    simulate(_scenario(write_scenario, csv))
    assert len(captured) == 15 and all(r.prefix is None for r in captured)
    captured.clear()
    simulate(load_scenario(write_scenario(small_scenario(num_queries=25))))  # generated arrivals
    assert len(captured) == 25 and all(r.prefix is None for r in captured)


def test_prefixes_are_deterministic_and_survive_pickling(write_scenario: Any, tmp_path: Path,
                                                         captured: list[Request]) -> None:
    sc = _scenario(write_scenario, _write_trace(tmp_path / "t.jsonl", _trace_rows(40, seed=3)), 1.0)
    a, b = prepare(sc), prepare(sc)
    assert a.workload.prefix is not None and b.workload.prefix is not None
    assert np.array_equal(a.workload.prefix.values, b.workload.prefix.values)
    assert np.array_equal(a.workload.prefix.offsets, b.workload.prefix.offsets)
    first = simulate(sc, prepared=a)
    seen = [(r.rid, r.prefix, r.instance, r.finish_time) for r in captured]
    captured.clear()
    second = simulate(sc, prepared=pickle.loads(pickle.dumps(b)))  # as a sweep worker receives it
    assert [(r.rid, r.prefix, r.instance, r.finish_time) for r in captured] == seen
    assert first.summary == second.summary


def test_the_scenarios_block_size_bounds_the_hashes(write_scenario: Any, tmp_path: Path,
                                                   captured: list[Request]) -> None:
    rows = [{"timestamp": 0, "input_length": 1000, "output_length": 5, "hash_ids": [4, 5, 6, 7]}]
    trace = _write_trace(tmp_path / "t.jsonl", rows)  # 4 blocks of 256 tokens, 2 of 512
    prepared = prepare(_scenario(write_scenario, trace, prefix_block_tokens=256))
    assert prepared.workload.prefix is not None and prepared.workload.prefix.block_tokens == 256
    simulate(_scenario(write_scenario, trace, prefix_block_tokens=256), prepared=prepared)
    assert [r.prefix for r in captured] == [(4, 5, 6, 7)]
    with pytest.raises(DataError, match="spans 2 blocks of 512 tokens") as info:
        prepare(_scenario(write_scenario, trace))
    assert info.value.where == "line 1" and info.value.file == str(trace)


@pytest.mark.parametrize("command", ["validate", "run"])
def test_bad_hash_ids_exit_2_naming_file_and_line(write_scenario: Any, tmp_path: Path, command: str) -> None:
    rows = _trace_rows(10, seed=4)
    rows[6]["hash_ids"] = [1, -2]
    trace = _write_trace(tmp_path / "bad.jsonl", rows)
    data = small_scenario()
    data.pop("num_queries")
    data["workload"]["arrivals"] = {"type": "trace", "path": str(trace)}
    path = write_scenario(data)
    out = tmp_path / "out"
    args = [command, str(path)] + (["--out", str(out)] if command == "run" else [])
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert f"{trace}: line 7: hash_ids = [1, -2]; expected a list of non-negative integers" in result.output
    assert not out.exists()


@pytest.mark.shared_data
@pytest.mark.skipif(not MOONCAKE.exists(), reason="shared Mooncake trace not present")
def test_shipped_mooncake_scenario_validates_and_carries_every_hash() -> None:
    path = SCENARIOS / "mooncake_prefix.yaml"
    result = CliRunner().invoke(app, ["validate", str(path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    sc = load_scenario(path)
    assert all(d.prefix_cache and d.scheduler == "paged" for d in sc.deployments)
    prefix = prepare(sc).workload.prefix
    with gzip.open(MOONCAKE, "rt") as f:
        rows = [json.loads(line)["hash_ids"] for line in f]
    assert prefix is not None and prefix.n == len(rows) == 12_031
    assert np.array_equal(prefix.values, [h for r in rows for h in r])
    assert np.array_equal(prefix.lengths, [len(r) for r in rows])
