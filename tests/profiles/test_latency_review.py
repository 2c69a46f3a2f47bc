"""Latency-model review (findings 3-5): calibration-table problems reported instead of silently mis-read
(a column named twice, the Splitwise ``tensor_parallel`` spelling, repeated rows, under-determined fits,
a table that leaves nothing to fit)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest

from sim.engine.latency import LatencyProfile
from sim.errors import DataError
from sim.profiles.calibrate import calibrate_file
from sim.profiles.tables import read_groups

TRUE = LatencyProfile(
    prefill_base_s=0.02,
    prefill_per_token_s=1.5e-4,
    prefill_per_token2_s=3e-9,
    decode_base_s=0.03,
    decode_per_seq_s=2e-4,
    decode_per_ctx_token_s=4e-7,
)


def _write(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


# ----------------------------------------------------------------------------- findings 3-5: tables
def test_a_column_named_twice_is_one_error_on_line_1(tmp_path: Path) -> None:
    header = ["model", "phase", "batch", "ctx_per_seq", "total_ctx", "tokens", "ms", "ms"]
    path = _write(tmp_path / "d.csv", header, [["m", "decode", 1, 100, 100, 1, 10.0, 10000.0]])
    with pytest.raises(DataError, match=r"line 1, column 'ms'.*more than once") as exc:
        read_groups(path)
    assert str(path) in str(exc.value)


def _iteration_rows(tp_values: tuple[int, ...]) -> list[list[Any]]:
    rows = []
    for tp in tp_values:
        for n, c in ((1, 256), (8, 1024), (32, 4096)):
            rows.append(["m", "H100", "decode", n, c, n * c, n, 1e3 * TRUE.iteration_time(n, n * c) / tp, tp])
    return rows


def test_tensor_parallel_column_splits_groups_like_tp(tmp_path: Path) -> None:
    header = ["model", "gpu", "phase", "batch", "ctx_per_seq", "total_ctx", "tokens", "ms", "tensor_parallel"]
    _, groups = read_groups(_write(tmp_path / "t.csv", header, _iteration_rows((1, 4))))
    assert sorted(g.tp for g in groups) == [1, 4]


def test_tp_and_tensor_parallel_together_are_ambiguous(tmp_path: Path) -> None:
    header = ["model", "gpu", "phase", "batch", "ctx_per_seq", "total_ctx", "tokens", "ms", "tensor_parallel", "tp"]
    rows = [r + [r[-1]] for r in _iteration_rows((1,))]
    with pytest.raises(DataError, match=r"line 1, column 'tensor_parallel'"):
        read_groups(_write(tmp_path / "t.csv", header, rows))


def test_duplicate_and_underdetermined_rows_are_noted(tmp_path: Path) -> None:
    header = ["phase", "batch", "ctx_per_seq", "total_ctx", "tokens", "ms"]
    rows = [["decode", 4, 512, 2048, 4, 20.0]] * 3
    _, (g,) = read_groups(_write(tmp_path / "i.csv", header, rows))
    assert any("2 row(s) exactly repeat" in n for n in g.notes)
    assert any("decode rows do not vary" in n and "rank 1" in n for n in g.notes)
    canon = [["decode", "", 4, 2048, 0.02]] * 2 + [["prefill", p, "", "", TRUE.prefill_time(p)] for p in (64, 512)]
    _, (c,) = read_groups(_write(tmp_path / "c.csv", ["kind", "prompt_tokens", "batch_size", "context_tokens",
                                                        "time_s"], canon))
    assert any("1 row(s) exactly repeat" in n for n in c.notes)
    assert any(n.startswith("prefill rows do not vary") for n in c.notes)


def test_well_determined_groups_get_no_such_note(tmp_path: Path) -> None:
    header = ["model", "gpu", "phase", "batch", "ctx_per_seq", "total_ctx", "tokens", "ms", "tp"]
    _, (g,) = read_groups(_write(tmp_path / "t.csv", header, _iteration_rows((1,))))
    assert not any("repeat" in n or "do not vary" in n for n in g.notes)


def test_nothing_fitted_is_an_error(tmp_path: Path) -> None:
    header = ["phase", "batch", "ctx_per_seq", "total_ctx", "tokens", "ms"]
    path = _write(tmp_path / "s.csv", header, [["prefill", 1, 128, 128, 128, 5.0]])
    with pytest.raises(DataError, match="no group has rows left to fit") as exc:
        calibrate_file(path)
    assert str(path) in str(exc.value) and "under 512 tokens" in str(exc.value)
