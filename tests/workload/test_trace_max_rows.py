"""Reading only the rows a run needs (issue 14: 10 k rows of a 1 M-row trace parsed the whole file): the
first ``max_rows`` rows load exactly as the full file cut to them; a run by count replays them, and its
result (tables built lazily) pickles with its tables."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import yaml

from sim.config.load import parse_scenario
from sim.runner import simulate
from sim.workload.traces import load_azure_csv
from tests.sim.conftest import small_scenario


def trace(tmp_path: Path, n: int = 500) -> Path:
    rng = np.random.default_rng(1)
    ns = np.cumsum(rng.exponential(0.3e9, n)).astype(np.int64)
    stamps = np.datetime64("2024-01-01T00:00:00", "ns") + ns.astype("timedelta64[ns]")
    rows = [f"{str(t).replace('T', ' ')[:27]},{int(p)},{int(o)}"
            for t, p, o in zip(stamps, rng.integers(10, 2000, n), rng.integers(1, 400, n), strict=True)]
    path = tmp_path / "t.csv"
    path.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n" + "\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize("k", [1, 7, 250, 500, 900])
def test_first_rows_equal_the_full_load_cut(tmp_path: Path, k: int) -> None:
    path = trace(tmp_path)
    full, part = load_azure_csv(path), load_azure_csv(path, max_rows=k)
    m = min(k, full.n)
    assert part.n == m
    assert np.array_equal(part.times, full.times[:m])
    assert np.array_equal(part.prompt_tokens, full.prompt_tokens[:m])
    assert np.array_equal(part.output_tokens, full.output_tokens[:m])


def test_a_run_by_count_is_the_same_and_its_result_pickles(tmp_path: Path) -> None:
    path = trace(tmp_path)
    data = small_scenario(num_queries=120)
    data["workload"]["arrivals"] = {"type": "trace", "path": str(path), "format": "azure", "use_trace_tokens": True}
    sc = parse_scenario(yaml.safe_dump(data), file="t.yaml")
    res = simulate(sc)
    assert res.summary["queries"]["arrived"] == 120
    again = pickle.loads(pickle.dumps(res))  # the tables are built lazily: pickling builds them
    assert again.requests.equals(res.requests) and again.batches.equals(res.batches)
    assert again.summary == res.summary
