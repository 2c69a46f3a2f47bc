"""Input files behind the accounting (issue 8): zone-aware trace timestamps, duplicate price rows,
non-UTF-8 data files, long tables with duplicate rows and empty scores."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sim.config.prices import read_price_file
from sim.datasets import load_long_table
from sim.datasets.validate import read_table
from sim.errors import DataError
from sim.workload.traces import load_azure_csv

HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens\n"


def test_azure_z_and_offsets_are_utc_without_warnings(tmp_path: Path) -> None:
    path = tmp_path / "z.csv"
    path.write_text(
        HEADER
        + "2023-11-16 18:15:46.6805900Z,10,5\n"
        + "2023-11-16T18:15:47.0000000Z,11,6\n"
        + "2023-11-16 19:15:48+01:00,12,7\n"  # 18:15:48 UTC
        + "2023-11-16 18:15:49,13,8\n"  # naive: taken as it is
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "parsing timezone aware datetimes" must not leak
        a = load_azure_csv(path)
    np.testing.assert_allclose(a.times, [0.0, 0.31941, 1.31941, 2.31941], atol=1e-9)


def test_azure_z_timestamps_print_nothing_on_stderr(tmp_path: Path) -> None:
    path = tmp_path / "z.csv"
    path.write_text(HEADER + "2023-11-16 18:15:46.6805900Z,10,5\n2023-11-16 18:15:47.0Z,10,5\n")
    code = f"from sim.workload.traces import load_azure_csv; load_azure_csv({str(path)!r})"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stderr == ""


def test_azure_bad_zone_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(HEADER + "2023-11-16 18:15:46Z,10,5\n2023-11-16 18:15:47+25:99x,10,5\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DataError, match=r"bad.csv: line 3: TIMESTAMP"):
            load_azure_csv(path)


def test_price_file_duplicate_model_names_both_lines(tmp_path: Path) -> None:
    path = tmp_path / "prices.csv"
    path.write_text("model,price_in_per_mtok,price_out_per_mtok\na,1,2\nb,1,2\na,3,4\n")
    with pytest.raises(DataError) as err:
        read_price_file(path, ["a", "b"])
    msg = str(err.value)
    assert "prices.csv" in msg and "line 4" in msg and "lines 2 and 4" in msg and "'a'" in msg


def test_non_utf8_table_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(b"query_id,task,model,score\nq1,a,m,1\nq2,\xff\xfe,m,0\n")
    with pytest.raises(DataError, match=r"t.csv: line 3: not UTF-8"):
        read_table(path)


def _long(rows: list[tuple[str, str, float | None]]) -> pd.DataFrame:
    return pd.DataFrame([{"query_id": q, "task": "t", "model": m, "score": s} for q, m, s in rows])


def test_long_table_row_options(tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    _long([("q1", "a", 1.0), ("q1", "b", 0.0), ("q1", "a", 0.0), ("q2", "a", None), ("q2", "b", 1.0),
           ("q3", "a", 1.0), ("q3", "b", 1.0)]).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"row 3, column model"):
        load_long_table(path, on_missing_score="drop")
    with pytest.raises(DataError, match=r"row 4, column score"):
        load_long_table(path, on_duplicate="first")
    qs = load_long_table(path, on_duplicate="first", on_missing_score="drop", missing="drop_query")
    assert list(qs.query_ids) == ["q1", "q3"] and qs.quality[0].tolist() == [1.0, 0.0]  # first q1/a kept
    assert qs.data_report == {"rows_dropped_duplicate": 1, "rows_dropped_missing_score": 1}


def test_empty_and_ragged_csv_tables_name_a_line(tmp_path):
    from pathlib import Path

    from sim.datasets.validate import read_table

    empty, ragged = tmp_path / "e.csv", tmp_path / "r.csv"
    empty.write_text("")
    ragged.write_text("a,b\n1,2\n1,2,3,4\n")
    with pytest.raises(DataError, match=r"e\.csv: line 1: the file is empty"):
        read_table(Path(empty))
    with pytest.raises(DataError, match=r"r\.csv: line 3: not a well-formed CSV"):
        read_table(Path(ragged))
