"""Bad trace files from the CLI robustness review (findings 3, 5, 6 and 16): each is one DataError naming
the file and the line, the same through both Azure readers, and the CLI exits 2; valid traces load as
before."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from sim.errors import DataError
from sim.workload.traces import (
    _azure_rows,
    _azure_timestamps,
    _csv_azure_rows,
    _plain_azure_rows,
    load_azure_csv,
    load_mooncake_jsonl,
)
from tests.sim.conftest import cli, small_scenario

HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens\n"
GOOD = ["2023-11-16 18:17:00.9799600", "2023-11-16 18:17:01.9799600", "2023-11-16 18:17:02.5000000"]


def _azure(tmp_path: Path, stamps: list[str], name: str = "t.csv") -> Path:
    path = tmp_path / name
    path.write_text(HEADER + "".join(f"{s},100,20\n" for s in stamps), encoding="utf-8")
    return path


def _error_both_ways(path: Path) -> str:
    """The loader's DataError, checked to be the same message through the plain and the csv reader."""
    messages = []
    for rows in (_plain_azure_rows(path), _csv_azure_rows(path, None)):
        assert rows is not None
        (stamps, _, _), lines = rows
        with pytest.raises(DataError) as err:
            _azure_timestamps(stamps, lines, path)
        messages.append(str(err.value))
    assert messages[0] == messages[1]
    with pytest.raises(DataError) as err:
        load_azure_csv(path)
    assert str(err.value) == messages[0]
    return messages[0]


# --- Finding 3: bare numbers, years outside datetime64[ns], impossible zone offsets --------------------


@pytest.mark.parametrize("stamps", [["0", "1", "2", "3"], ["1700000000", "1700000001"],
                                    ["1700000000000", "1700000000100"], ["2000", "2001"], ["0.0", "0.5"],
                                    ["1.7e9", "1.8e9"]])
def test_bare_number_timestamps_are_refused(tmp_path: Path, stamps: list[str]) -> None:
    msg = _error_both_ways(_azure(tmp_path, stamps))
    assert f"t.csv: line 2: TIMESTAMP = {stamps[0]!r}; a bare number" in msg
    assert "expected a datetime like" in msg and "epoch numbers are not the Azure format" in msg


def test_bare_number_after_valid_rows_names_its_line(tmp_path: Path) -> None:
    msg = _error_both_ways(_azure(tmp_path, [*GOOD, "5"]))
    assert "t.csv: line 5: TIMESTAMP = '5'; a bare number" in msg


@pytest.mark.parametrize(("stamp", "year"), [("1600-11-16 18:17:00.9799600", "1600"),
                                             ("3000-11-16 18:17:29.9799600", "3000"),
                                             ("1677-01-01 00:00:00", "1677"),
                                             ("2262-04-11 23:47:17", "2262"),
                                             ("0999-01-01", "0999"), ("99999-01-01", "99999")])
def test_years_outside_nanosecond_range_are_refused(tmp_path: Path, stamp: str, year: str) -> None:
    msg = _error_both_ways(_azure(tmp_path, [GOOD[0], stamp]))
    assert f"t.csv: line 3: TIMESTAMP = {stamp!r}; year {year} is outside 1677-09-21 .. 2262-04-11" in msg


@pytest.mark.parametrize("zone", ["+99:99", "-25:00", "+24:01", "+01:60", "+9999"])
def test_impossible_zone_offsets_are_refused(tmp_path: Path, zone: str) -> None:
    msg = _error_both_ways(_azure(tmp_path, [GOOD[0], GOOD[1] + zone]))
    assert f"t.csv: line 3: TIMESTAMP = '{GOOD[1] + zone}'; zone offset {zone} is not a UTC offset" in msg


def test_first_bad_line_wins_whatever_the_problem(tmp_path: Path) -> None:
    msg = _error_both_ways(_azure(tmp_path, [GOOD[0], "yesterday", "0", "3000-01-01"]))
    assert "line 3: TIMESTAMP = 'yesterday'; expected a datetime like" in msg


def test_prefix_reader_gives_the_same_error(tmp_path: Path) -> None:
    path = _azure(tmp_path, ["0", "1"])
    with pytest.raises(DataError, match=r"t.csv: line 2: TIMESTAMP = '0'; a bare number"):
        load_azure_csv(path, max_rows=1)


VALID = [  # (timestamp, its naive part, its UTC offset in minutes)
    (GOOD[0], GOOD[0], 0), ("2023-11-16 18:17:00+01:00", "2023-11-16 18:17:00", 60),
    ("2023-11-16 17:17:01Z", "2023-11-16 17:17:01", 0), ("2023-11-16 12:17:02-05:30", "2023-11-16 12:17:02", -330),
    ("2023-11-16 17:17:03+00", "2023-11-16 17:17:03", 0), ("2023-11-16 18:17:00+24:00", "2023-11-16 18:17:00", 1440),
    ("2023-11-17 18:17:00-2400", "2023-11-17 18:17:00", -1440), ("+2023-11-16 18:17:00", "2023-11-16 18:17:00", 0),
    ("2023-11-16T18:17:01", "2023-11-16T18:17:01", 0), ("2023-11-17", "2023-11-17", 0),
    ("1677-09-21 00:12:44", "1677-09-21 00:12:44", 0), ("1678-01-01 00:00:00", "1678-01-01", 0),
    ("2262-04-11 23:47:16.854775807", "2262-04-11 23:47:16.854775807", 0),
]


@pytest.mark.parametrize("rows", [VALID[:1], VALID[:5], VALID[5:10], VALID[10:], VALID])
def test_valid_timestamps_load_as_numpy_reads_them(tmp_path: Path, rows: list[tuple[str, str, int]]) -> None:
    path = _azure(tmp_path, [stamp for stamp, _, _ in rows])
    assert _plain_azure_rows(path) == _csv_azure_rows(path, None)
    (read, _, _), lines = _azure_rows(path)
    expected = [int(np.datetime64(naive, "ns").view(np.int64)) - minutes * 60 * 10**9 for _, naive, minutes in rows]
    assert _azure_timestamps(read, lines, path).tolist() == expected


def test_rows_centuries_apart_are_a_span_error_not_an_overflow(tmp_path: Path) -> None:
    path = _azure(tmp_path, ["1677-09-21 00:12:44", "2262-04-11 23:47:16.854775807"])
    with pytest.raises(DataError, match=r"t.csv: line 3: TIMESTAMP is 1.84e\+10 s after the first request"):
        load_azure_csv(path)


def test_the_published_format_loads_exactly(tmp_path: Path) -> None:
    a = load_azure_csv(_azure(tmp_path, GOOD))
    assert a.times.tolist() == [0.0, 1.0, 1.52004]
    assert a.prompt_tokens.tolist() == [100] * 3 and a.output_tokens.tolist() == [20] * 3


# --- Finding 5: a corrupt gzip Mooncake trace ---------------------------------------------------------


def _mooncake_rows(n: int = 30) -> str:
    return "".join(json.dumps({"timestamp": 100 * i, "input_length": 600, "output_length": 20}) + "\n"
                   for i in range(n))


def test_corrupt_gzip_mooncake_is_a_data_error(tmp_path: Path) -> None:
    data = bytearray(gzip.compress(_mooncake_rows().encode()))
    for i in range(20, 60):  # the review's corruption: bytes 20-60 XOR 0x55
        data[i] ^= 0x55
    path = tmp_path / "mc.jsonl.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"mc.jsonl.gz: line 1: unreadable gzip data \(Error -3"):
        load_mooncake_jsonl(path)


def test_good_gzip_mooncake_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "mc.jsonl.gz"
    path.write_bytes(gzip.compress(_mooncake_rows().encode()))
    a = load_mooncake_jsonl(path)
    assert a.n == 30 and np.allclose(a.times, np.arange(30) * 0.1)


# --- Finding 6: integers over Python's 4300-digit limit in a Mooncake line ----------------------------


@pytest.mark.parametrize(("key", "row", "expected"), [
    ("timestamp", '{"timestamp": %s, "input_length": 1, "output_length": 1}', "a finite number of milliseconds"),
    ("input_length", '{"timestamp": 5, "input_length": %s, "output_length": 1}', "a non-negative integer token"),
    ("hash_ids", '{"timestamp": 5, "input_length": 1, "output_length": 1, "hash_ids": [1, %s]}', "a list of"),
])
def test_huge_integer_in_mooncake_names_line_and_key(tmp_path: Path, key: str, row: str, expected: str) -> None:
    path = tmp_path / "mc.jsonl"
    path.write_text(_mooncake_rows(3) + row % ("9" * 5000) + "\n")
    with pytest.raises(DataError) as err:
        load_mooncake_jsonl(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: line 4: {key} is an integer of 5000 digits; expected {expected}")
    assert len(msg) < 400


# --- Finding 16 and end to end through the CLI --------------------------------------------------------


def test_directory_as_trace_says_so(tmp_path: Path) -> None:
    (tmp_path / "tdir").mkdir()
    for load in (load_azure_csv, load_mooncake_jsonl):
        with pytest.raises(DataError, match=r"tdir: is a directory; expected .* file"):
            load(tmp_path / "tdir")


def _trace_scenario(tmp_path: Path, trace: Path) -> Path:
    data = small_scenario(num_queries=4)
    data["workload"]["arrivals"] = {"type": "trace", "path": trace.name}
    path = tmp_path / "tr.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(("content", "needle"), [
    (HEADER + "0,100,20\n1,100,20\n2,100,20\n3,100,20\n", "rel.csv: line 2: TIMESTAMP = '0'; a bare number"),
    (HEADER + f"{GOOD[0]},1,1\n3000-11-16 18:17:29.9799600,1,1\n", "rel.csv: line 3: TIMESTAMP = '3000-11-16"),
    (HEADER + f"{GOOD[0]},1,1\n{GOOD[1]}+99:99,1,1\n", "rel.csv: line 3: TIMESTAMP = '2023-11-16 18:17:01.9799600+99:99'"),
])
def test_cli_refuses_bad_azure_timestamps(tmp_path: Path, content: str, needle: str) -> None:
    trace = tmp_path / "rel.csv"
    trace.write_text(content)
    result = cli("validate", str(_trace_scenario(tmp_path, trace)))
    assert result.exit_code == 2, result.output
    assert needle in result.output and "Traceback" not in result.output


def test_cli_refuses_corrupt_gzip_and_huge_integer(tmp_path: Path) -> None:
    data = bytearray(gzip.compress(_mooncake_rows().encode()))
    for i in range(20, 60):
        data[i] ^= 0x55
    (tmp_path / "mc.jsonl.gz").write_bytes(bytes(data))
    result = cli("validate", str(_trace_scenario(tmp_path, tmp_path / "mc.jsonl.gz")))
    assert result.exit_code == 2 and "mc.jsonl.gz: line 1: unreadable gzip data" in result.output, result.output
    (tmp_path / "mc.jsonl").write_text(_mooncake_rows(3) + '{"timestamp": %s}\n' % ("9" * 5000))
    result = cli("validate", str(_trace_scenario(tmp_path, tmp_path / "mc.jsonl")))
    assert result.exit_code == 2, result.output
    assert "mc.jsonl: line 4: timestamp is an integer of 5000 digits" in result.output


# --- Finding 17: a prefix cache on a Mooncake trace whose rows carry no hash_ids -----------------------


@pytest.mark.parametrize("hashes", [False, True])
def test_prefix_cache_on_a_trace_without_hashes_warns(tmp_path: Path, hashes: bool) -> None:
    rows = [{"timestamp": 100 * i, "input_length": 600, "output_length": 20} for i in range(30)]
    if hashes:
        for r in rows:
            r["hash_ids"] = [1, 2]
    (tmp_path / "mc.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = small_scenario(num_queries=30)
    data["workload"]["arrivals"] = {"type": "trace", "path": "mc.jsonl"}
    for d in data["deployments"]:
        d.update({"scheduler": "paged", "prefix_cache": True, "block_size": 16})
    path = tmp_path / "mc.yaml"
    path.write_text(yaml.safe_dump(data))
    result = cli("validate", str(path))
    assert result.exit_code == 0, result.output
    assert ("mc.jsonl has hash_ids, so nothing can hit the cache" in result.output) != hashes, result.output
    if not hashes:  # a data-layer warning names the scenario it is about
        assert f"warning: {path}: deployments[0].prefix_cache: set, but" in result.output, result.output
