"""Trace loading and replay: exact counts and rates on real and fixture files, DataError line numbers."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sim.errors import DataError
from sim.workload.arrivals import Arrivals
from sim.workload.traces import load_azure_csv, load_mooncake_jsonl, replay

TRACES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "traces"
AZURE_CODE = TRACES / "AzureLLMInferenceTrace_code.csv"
AZURE_CONV = TRACES / "AzureLLMInferenceTrace_conv.csv"
MOONCAKE = TRACES / "mooncake_conversation_trace.jsonl.gz"
HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens\n"


def _needs(path: Path) -> pytest.MarkDecorator:
    return pytest.mark.skipif(not path.exists(), reason=f"{path} not present (shared data)")


def _mean_rate(a: Arrivals) -> float:
    return (a.n - 1) / (a.times[-1] - a.times[0])


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- Real traces ----------------------------------------------------------------------------------


@pytest.mark.shared_data
@pytest.mark.parametrize(
    "path, count, prompt_median, output_median",
    [
        pytest.param(AZURE_CODE, 8_819, 1_469, 13, marks=_needs(AZURE_CODE), id="azure-code"),
        pytest.param(AZURE_CONV, 19_366, 1_020, 129, marks=_needs(AZURE_CONV), id="azure-conv"),
    ],
)
def test_azure_trace_count_rate_and_tokens_are_exact(
    path: Path, count: int, prompt_median: int, output_median: int
) -> None:
    a = load_azure_csv(path)
    ref = pd.read_csv(path)
    ns = pd.to_datetime(ref["TIMESTAMP"]).to_numpy().astype("datetime64[ns]").view(np.int64)
    assert a.n == count == len(ref)
    assert np.array_equal(a.times, (ns - ns[0]) / 1e9)
    assert np.array_equal(a.prompt_tokens, ref["ContextTokens"]) and np.array_equal(
        a.output_tokens, ref["GeneratedTokens"]
    )
    assert np.median(a.prompt_tokens) == prompt_median and np.median(a.output_tokens) == output_median
    r = replay(a)
    assert r.n == count and np.array_equal(r.times, a.times)
    assert _mean_rate(r) == _mean_rate(a) == (count - 1) / ((ns[-1] - ns[0]) / 1e9)
    fast = replay(a, time_scale=4.0)
    assert fast.n == count
    assert _mean_rate(fast) == pytest.approx(4.0 * _mean_rate(a), rel=1e-12)


@pytest.mark.shared_data
@_needs(MOONCAKE)
def test_mooncake_trace_count_rate_ticks() -> None:
    with gzip.open(MOONCAKE, "rt") as f:
        rows = [json.loads(line) for line in f]
    ms = np.array([r["timestamp"] for r in rows], dtype=np.float64)
    a = load_mooncake_jsonl(MOONCAKE)
    assert a.n == len(rows) == 12_031
    assert np.array_equal(a.times, (ms - ms[0]) / 1000.0)
    assert np.array_equal(a.group, np.arange(a.n))
    assert np.array_equal(a.prompt_tokens, [r["input_length"] for r in rows])
    ticks = load_mooncake_jsonl(MOONCAKE, group_same_timestamp=True)
    assert ticks.num_groups == len(np.unique(ms))
    sizes = np.bincount(ticks.group)
    assert sizes.min() >= 1 and sizes.max() <= 28  # README: 2–28 per tick (rare singletons)
    assert _mean_rate(replay(a)) == _mean_rate(a)
    assert _mean_rate(replay(a, time_scale=0.5)) == pytest.approx(0.5 * _mean_rate(a), rel=1e-12)


# --- Azure fixtures -------------------------------------------------------------------------------


def test_azure_keeps_100ns_ordering_and_relative_times(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "t.csv",
        HEADER + "2023-11-16 18:17:03.9799600,10,1\n"
        "2023-11-16 18:17:03.9799601,20,2\n"
        "2023-11-16 18:17:03.9799601,30,3\n"
        "2023-11-16 18:17:05.0000000,40,4\n\n",
    )
    a = load_azure_csv(path)
    assert a.n == 4
    assert np.array_equal(a.times, [0.0, 100 / 1e9, 100 / 1e9, 1_020_040_000 / 1e9])
    assert a.times[1] > a.times[0]  # 100 ns apart stays apart
    assert np.array_equal(a.group, np.arange(4))
    assert np.array_equal(a.prompt_tokens, [10, 20, 30, 40]) and np.array_equal(a.output_tokens, [1, 2, 3, 4])


def test_azure_accepts_reordered_and_extra_columns_and_bom(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text(
        "\ufeffGeneratedTokens,extra,TIMESTAMP,ContextTokens\n5,x,2023-01-01 00:00:00.5,7\n"
        "6,y,2023-01-01 00:00:01.5,8\n",
        encoding="utf-8",
    )
    a = load_azure_csv(path)
    assert np.array_equal(a.times, [0.0, 1.0])
    assert np.array_equal(a.prompt_tokens, [7, 8]) and np.array_equal(a.output_tokens, [5, 6])


GOOD = "2023-11-16 18:17:03.9799600,10,1\n"


@pytest.mark.parametrize(
    "text, where, expected",
    [
        ("", "line 1", "empty file"),
        ("TIMESTAMP,ContextTokens\n" + GOOD, "line 1", "missing column 'GeneratedTokens'"),
        (HEADER + GOOD + GOOD + "2023-11-16 18:17:04.0,ten,1\n", "line 4", "ContextTokens = 'ten'"),
        (HEADER + GOOD + "2023-11-16 18:17:04.0,10,-3\n", "line 3", "non-negative integer"),
        (HEADER + GOOD + "2023-11-16 18:17:04.0,10,1.5\n", "line 3", "GeneratedTokens = '1.5'"),
        (HEADER + GOOD + "16/11/2023 18:17,10,1\n", "line 3", "expected a datetime"),
        (HEADER + GOOD + "NaT,10,1\n", "line 3", "expected a datetime"),
        (HEADER + GOOD + "2023-11-16 18:17:04.0,10\n", "line 3", "2 fields; expected 3"),
        (HEADER + "\n" + GOOD + "2023-11-16 18:17:03.0,10,1\n", "line 4", "earlier than the previous"),
    ],
    ids=["empty", "missing-col", "non-numeric", "negative", "float", "bad-time", "nat", "short", "unsorted"],
)
def test_malformed_azure_csv_names_file_and_line(
    tmp_path: Path, text: str, where: str, expected: str
) -> None:
    path = _write(tmp_path, "bad.csv", text)
    with pytest.raises(DataError) as info:
        load_azure_csv(path)
    assert info.value.where == where and info.value.file == str(path)
    assert expected in str(info.value) and f"{path}: {where}: " in str(info.value)


def test_header_only_and_missing_file_are_data_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no data rows"):
        load_azure_csv(_write(tmp_path, "h.csv", HEADER))
    with pytest.raises(DataError, match="file not found") as info:
        load_azure_csv(tmp_path / "nope.csv")
    assert info.value.file == str(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="file not found"):
        load_mooncake_jsonl(tmp_path / "nope.jsonl")
    with pytest.raises(DataError, match="directory"):
        load_azure_csv(tmp_path)


def test_unsorted_azure_can_be_sorted_stably(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "u.csv",
        HEADER + "2023-01-01 00:00:02,1,1\n2023-01-01 00:00:01,2,2\n2023-01-01 00:00:02,3,3\n",
    )
    a = load_azure_csv(path, sort=True)
    assert np.array_equal(a.times, [0.0, 1.0, 1.0])
    assert np.array_equal(a.prompt_tokens, [2, 1, 3])  # ties keep file order


# --- Mooncake fixtures ----------------------------------------------------------------------------


def _mooncake_text(rows: list[tuple[float, int, int]]) -> str:
    """Rows with an extra key the loader ignores (hash_ids are all-or-nothing: see test_prefix.py)."""
    return "".join(
        json.dumps({"timestamp": t, "input_length": i, "output_length": o, "session": 1}) + "\n"
        for t, i, o in rows
    )


ROWS = [(0, 100, 10), (0, 200, 20), (3000, 300, 30), (3000, 400, 40), (3000, 500, 50), (6500, 600, 60)]


@pytest.mark.parametrize("gzipped", [False, True])
def test_mooncake_plain_and_gzip_agree(tmp_path: Path, gzipped: bool) -> None:
    text = _mooncake_text(ROWS)
    if gzipped:
        path = tmp_path / "t.jsonl.gz"
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path = _write(tmp_path, "t.jsonl", text)
    a = load_mooncake_jsonl(path)
    assert np.array_equal(a.times, [0, 0, 3, 3, 3, 6.5])
    assert np.array_equal(a.group, np.arange(6))
    assert np.array_equal(a.prompt_tokens, [100, 200, 300, 400, 500, 600])
    assert np.array_equal(a.output_tokens, [10, 20, 30, 40, 50, 60])
    ticks = load_mooncake_jsonl(path, group_same_timestamp=True)
    assert np.array_equal(ticks.group, [0, 0, 1, 1, 1, 2])


@pytest.mark.parametrize(
    "bad_line, expected",
    [
        ('{"timestamp": 1, "input_length": 5\n', "invalid JSON"),
        ('{"timestamp": 1, "input_length": 5}\n', "missing key 'output_length'"),
        ('{"timestamp": "1", "input_length": 5, "output_length": 1}\n', "timestamp = '1'"),
        ('{"timestamp": 1, "input_length": -5, "output_length": 1}\n', "non-negative integer"),
        ('{"timestamp": 1, "input_length": 5, "output_length": 1.5}\n', "output_length = 1.5"),
        ('{"timestamp": 1, "input_length": true, "output_length": 1}\n', "input_length = True"),
        ("[1, 2, 3]\n", "expected an object"),
        ('{"timestamp": -1, "input_length": 5, "output_length": 1}\n', "earlier than the previous"),
        ('{"timestamp": 1, "input_length": 5, "output_length": 1e308}\n', "at most 10,000,000"),
        ('{"timestamp": 1, "input_length": 10000001, "output_length": 1}\n', "input_length = 10000001"),
    ],
    ids=["json", "missing-key", "string-time", "negative", "float-tokens", "bool", "array", "unsorted", "huge-float",
         "huge-int"],
)
def test_malformed_mooncake_names_file_and_line(tmp_path: Path, bad_line: str, expected: str) -> None:
    path = _write(tmp_path, "bad.jsonl", _mooncake_text(ROWS[:2]) + "\n" + bad_line)
    with pytest.raises(DataError) as info:
        load_mooncake_jsonl(path)
    assert info.value.where == "line 4" and info.value.file == str(path)
    assert expected in str(info.value)


def test_corrupt_gzip_and_empty_jsonl_are_data_errors(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl.gz"
    path.write_bytes(gzip.compress(_mooncake_text(ROWS).encode())[:30])
    with pytest.raises(DataError, match="gzip"):
        load_mooncake_jsonl(path)
    with pytest.raises(DataError, match="no requests"):
        load_mooncake_jsonl(_write(tmp_path, "e.jsonl", "\n\n"))


# --- Replay ---------------------------------------------------------------------------------------


def _trace() -> Arrivals:
    times = np.array([0.0, 1.0, 1.0, 2.5, 4.0, 4.0, 7.0])
    return Arrivals(
        times=times,
        group=np.array([0, 1, 1, 2, 3, 3, 4]),
        prompt_tokens=np.arange(7, dtype=np.int64) * 10,
        output_tokens=np.arange(7, dtype=np.int64),
    )


def test_replay_defaults_reproduce_the_trace() -> None:
    a = _trace()
    r = replay(a)
    assert np.array_equal(r.times, a.times) and np.array_equal(r.group, a.group)
    assert np.array_equal(r.prompt_tokens, a.prompt_tokens) and r.times is not a.times


def test_replay_window_scale_and_cap() -> None:
    r = replay(_trace(), time_scale=2.0, start_s=1.0, duration_s=3.0)  # trace clock [1, 4)
    assert np.array_equal(r.times, [0.0, 0.0, 0.75])
    assert np.array_equal(r.group, [0, 0, 1]) and np.array_equal(r.output_tokens, [1, 2, 3])
    capped = replay(_trace(), start_s=0.5, max_queries=4)
    assert np.array_equal(capped.times, [0.5, 0.5, 2.0, 3.5]) and np.array_equal(capped.group, [0, 0, 1, 2])
    assert replay(_trace(), start_s=100.0).n == 0


@pytest.mark.parametrize(
    "kwargs",
    [{"time_scale": 0.0}, {"start_s": -1.0}, {"duration_s": -1.0}, {"max_queries": -1}],
)
def test_replay_rejects_bad_arguments(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        replay(_trace(), **kwargs)  # type: ignore[arg-type]
