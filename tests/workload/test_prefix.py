"""Prefix-block hashes: the ragged store against a list-of-lists reference, and Mooncake ``hash_ids``
loading (order kept per row through sorting and replay windows, bad values named by line)."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sim.errors import DataError
from sim.workload.prefix import PrefixHashes
from sim.workload.traces import load_azure_csv, load_mooncake_jsonl, replay

TRACES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "traces"
MOONCAKE = TRACES / "mooncake_conversation_trace.jsonl.gz"


def _ragged(rows: list[list[int]]) -> PrefixHashes:
    flat = np.array([h for r in rows for h in r], dtype=np.int64)
    return PrefixHashes.from_lengths(flat, np.array([len(r) for r in rows], dtype=np.int64))


def _rows(p: PrefixHashes) -> list[tuple[int, ...]]:
    return [p.row(i) for i in range(p.n)]


def _random_rows(rng: np.random.Generator, n: int) -> list[list[int]]:
    """Ragged rows with empty rows and shared leading hashes, like conversation turns."""
    return [rng.integers(0, 50, size=int(rng.integers(0, 6))).tolist() for _ in range(n)]


# --- The ragged store -----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_take_and_slice_match_a_list_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    rows = _random_rows(rng, int(rng.integers(1, 40)))
    p = _ragged(rows)
    assert _rows(p) == [tuple(r) for r in rows] and p.n == len(rows)
    idx = rng.integers(0, len(rows), size=60)  # any order, with repeats
    assert _rows(p.take(idx)) == [tuple(rows[i]) for i in idx]
    mask = rng.random(len(rows)) < 0.5
    assert _rows(p.take(mask)) == [tuple(r) for r, keep in zip(rows, mask, strict=True) if keep]
    perm = rng.permutation(len(rows))
    assert _rows(p.take(perm).take(np.argsort(perm))) == _rows(p)
    lo, hi = sorted(rng.integers(0, len(rows) + 1, size=2).tolist())
    assert _rows(p.slice(lo, hi)) == [tuple(r) for r in rows[lo:hi]]
    assert p.slice(hi, lo).n == 0 and p.take(np.zeros(0, np.int64)).n == 0


def test_rows_are_tuples_of_python_ints_and_storage_is_compact() -> None:
    p = _ragged([[5, 6, 7], [], [5, 9]])
    assert p.row(0) == (5, 6, 7) and p.row(1) == () and all(type(h) is int for h in p.row(2))
    assert p.nbytes == 8 * 5 + 8 * 4  # 8 bytes per hash + 8 per row offset (+1)
    with pytest.raises(IndexError):
        p.take(np.array([3]))


@pytest.mark.parametrize(
    "values, offsets",
    [([1, 2], [0, 1]), ([1, -2], [0, 2]), ([1, 2], [1, 2]), ([1, 2], [0, 2, 1, 2]), ([1.0], [0, 1])],
    ids=["short-offsets", "negative-hash", "offset-not-0", "decreasing", "float"],
)
def test_inconsistent_arrays_are_refused(values: list[Any], offsets: list[int]) -> None:
    with pytest.raises(ValueError, match="PrefixHashes"):
        PrefixHashes(np.array(values), np.array(offsets, dtype=np.int64))


# --- Mooncake hash_ids ----------------------------------------------------------------------------


def _line(t: float, n_in: int, n_out: int, hashes: Any = None) -> str:
    obj: dict[str, Any] = {"timestamp": t, "input_length": n_in, "output_length": n_out}
    if hashes is not None:
        obj["hash_ids"] = hashes
    return json.dumps(obj) + "\n"


def _write(tmp_path: Path, lines: list[str], name: str = "t.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(lines), encoding="utf-8")
    return path


ROWS = [  # (timestamp ms, input_length, output_length, hash_ids): ceil(input / 512) hashes, shared heads
    (0, 1000, 10, [0, 1]),
    (0, 1500, 20, [0, 1, 2]),
    (3000, 512, 30, [3]),
    (3000, 2000, 40, [0, 1, 2, 4]),
    (6500, 1, 50, [5]),
    (9000, 0, 60, []),
]


def test_hash_ids_load_in_row_order(tmp_path: Path) -> None:
    a = load_mooncake_jsonl(_write(tmp_path, [_line(*r) for r in ROWS]))
    assert a.prefix is not None and a.prefix.block_tokens == 512
    assert _rows(a.prefix) == [tuple(r[3]) for r in ROWS]
    assert a.prompt_tokens is not None and np.array_equal(a.prompt_tokens, [r[1] for r in ROWS])


def test_sorting_an_unsorted_trace_keeps_each_rows_hashes(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    perm = rng.permutation(len(ROWS))
    path = _write(tmp_path, [_line(*ROWS[i]) for i in perm])
    with pytest.raises(DataError, match="earlier than"):
        load_mooncake_jsonl(path)
    a = load_mooncake_jsonl(path, sort=True)
    assert a.prefix is not None and a.prompt_tokens is not None
    # Each arrival's hashes are those of the row with its prompt length (lengths are unique here).
    by_prompt = {r[1]: tuple(r[3]) for r in ROWS}
    assert _rows(a.prefix) == [by_prompt[int(p)] for p in a.prompt_tokens]
    assert np.array_equal(a.times, np.sort([ROWS[i][0] for i in perm]) / 1000.0)


def test_replay_window_keeps_hashes_with_their_requests(tmp_path: Path) -> None:
    a = load_mooncake_jsonl(_write(tmp_path, [_line(*r) for r in ROWS]))
    w = replay(a, time_scale=2.0, start_s=1.0, duration_s=6.0, max_queries=2)  # rows 2 and 3
    assert w.prefix is not None and _rows(w.prefix) == [tuple(ROWS[2][3]), tuple(ROWS[3][3])]
    assert w.prompt_tokens is not None and np.array_equal(w.prompt_tokens, [ROWS[2][1], ROWS[3][1]])
    empty = replay(a, start_s=100.0).prefix
    assert empty is not None and empty.n == 0


def test_traces_without_hashes_have_no_prefix(tmp_path: Path) -> None:
    a = load_mooncake_jsonl(_write(tmp_path, [_line(*r[:3]) for r in ROWS]))
    assert a.prefix is None and replay(a).prefix is None
    csv = tmp_path / "azure.csv"
    csv.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03.98,100,10\n", encoding="utf-8")
    assert load_azure_csv(csv).prefix is None


@pytest.mark.parametrize(
    "hashes, expected",
    [
        ("0,1", "hash_ids = '0,1'"),
        ([0, -1], "hash_ids = [0, -1]"),
        ([0, 1.0], "hash_ids = [0, 1.0]"),
        ([True], "hash_ids = [True]"),
        ([[0]], "hash_ids = [[0]]"),
        ([2**63], "hash_ids = [9223372036854775808]"),
        ({"0": 1}, "hash_ids = {'0': 1}"),
        ([0, 1, 2, 3, 4], "hash_ids has 5 hashes but input_length = 1500 spans 3 blocks"),
    ],
    ids=["string", "negative", "float", "bool", "nested", "over-int64", "object", "too-many"],
)
def test_bad_hash_ids_name_file_and_line(tmp_path: Path, hashes: Any, expected: str) -> None:
    lines = [_line(*r) for r in ROWS[:2]] + ["\n", _line(10, 1500, 5, hashes)]
    path = _write(tmp_path, lines, "bad.jsonl")
    with pytest.raises(DataError) as info:
        load_mooncake_jsonl(path)
    assert info.value.where == "line 4" and info.value.file == str(path)
    assert expected in str(info.value)


def test_one_spare_hash_is_accepted_two_are_not(tmp_path: Path) -> None:
    ok = load_mooncake_jsonl(_write(tmp_path, [_line(0, 1024, 1, [7, 8, 9])]))  # 2 blocks + 1 spare
    assert ok.prefix is not None and ok.prefix.row(0) == (7, 8, 9)
    with pytest.raises(DataError, match="expected at most 3"):
        load_mooncake_jsonl(_write(tmp_path, [_line(0, 1024, 1, [7, 8, 9, 10])], "b.jsonl"))


def test_the_block_size_sets_the_hash_count_bound(tmp_path: Path) -> None:
    path = _write(tmp_path, [_line(0, 1000, 1, [1, 2, 3, 4])])  # 4 blocks of 256, 2 of 512
    small = load_mooncake_jsonl(path, block_tokens=256)
    assert small.prefix is not None and small.prefix.block_tokens == 256 and small.prefix.row(0) == (1, 2, 3, 4)
    with pytest.raises(DataError, match="spans 2 blocks of 512 tokens; expected at most 3"):
        load_mooncake_jsonl(path)
    with pytest.raises(ValueError, match="block_tokens"):
        load_mooncake_jsonl(path, block_tokens=0)


@pytest.mark.parametrize("first_has", [True, False])
def test_hash_ids_on_some_rows_only_is_an_error(tmp_path: Path, first_has: bool) -> None:
    with_h, without = _line(0, 100, 1, [1]), _line(0, 100, 1)
    lines = [with_h, with_h, without] if first_has else [without, without, with_h]
    with pytest.raises(DataError, match="line 1 has") as info:
        load_mooncake_jsonl(_write(tmp_path, lines))
    assert info.value.where == "line 3"


@pytest.mark.shared_data
@pytest.mark.skipif(not MOONCAKE.exists(), reason="shared Mooncake trace not present")
def test_real_trace_hashes_are_exact_and_one_per_block() -> None:
    with gzip.open(MOONCAKE, "rt") as f:
        rows = [json.loads(line) for line in f]
    a = load_mooncake_jsonl(MOONCAKE)
    assert a.prefix is not None and a.prefix.n == len(rows)
    assert np.array_equal(a.prefix.values, [h for r in rows for h in r["hash_ids"]])
    # The documented relation: exactly ceil(input_length / 512) hashes on every row.
    assert np.array_equal(a.prefix.lengths, [math.ceil(r["input_length"] / 512) for r in rows])
    assert a.prefix.nbytes == 8 * (a.prefix.values.size + a.n + 1)
