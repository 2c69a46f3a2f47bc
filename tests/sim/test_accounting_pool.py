"""The pool fields reach the run (needs sim/workload/build.py to load through sim.datasets.pool.load_pool)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sim.config.load import load_scenario
from sim.errors import ScenarioError
from sim.runner import prepare, run

from .test_accounting import rb_frame, rb_scenario


def test_split_files_and_row_fields_reach_the_run(tmp_path, write_scenario):
    folder = tmp_path / "rb"
    folder.mkdir()
    df = rb_frame()
    train, test = df.iloc[:160], pd.concat([df.iloc[160:], df.iloc[160:163]], ignore_index=True)
    test.loc[4, "rb-small"] = np.nan
    train.to_parquet(folder / "arc_train.parquet")
    test.to_csv(folder / "arc_test.csv", index=False)
    data = rb_scenario(tmp_path)
    data["workload"]["pool"].update(path=str(folder), split="files", on_duplicate="first",
                                    on_missing_score="drop")
    sc = load_scenario(write_scenario(data))
    wl = prepare(sc).workload
    test_ids = set(df["sample_id"].iloc[160:])
    assert set(wl.queries.query_ids) <= test_ids and wl.train is not None and wl.train.n == 160
    res = run(sc)
    assert res.summary["data"] == {"rows_dropped_duplicate": 3, "rows_dropped_missing_score": 1}


def test_one_query_test_split_is_refused(tmp_path, write_scenario):
    data = rb_scenario(tmp_path)
    data["workload"]["pool"]["test_fraction"] = 1e-6
    with pytest.raises(ScenarioError, match="workload.pool.test_fraction"):
        prepare(load_scenario(write_scenario(data)))


def test_a_list_of_files_is_a_routerbench_path(tmp_path, write_scenario):
    """path: [train file, test file] (relative to the scenario) with split: files, as the data is published."""
    df = rb_frame()
    df.iloc[:160].to_csv(tmp_path / "mbpp_train.csv", index=False)
    df.iloc[160:].to_parquet(tmp_path / "mbpp_test.parquet")
    data = rb_scenario(tmp_path)
    data["workload"]["pool"].update(path=["mbpp_train.csv", "mbpp_test.parquet"], split="files")
    sc = load_scenario(write_scenario(data))
    assert all(p.startswith(str(tmp_path)) for p in sc.workload.pool.path)  # resolved for the run folder
    wl = prepare(sc).workload
    assert set(wl.queries.query_ids) <= set(df["sample_id"].iloc[160:]) and wl.train.n == 160


def test_a_listed_file_that_is_missing_is_named(tmp_path, write_scenario):
    from sim.errors import InputError

    df = rb_frame()
    df.to_csv(tmp_path / "a_train.csv", index=False)
    data = rb_scenario(tmp_path)
    data["workload"]["pool"].update(path=["a_train.csv", "nope_test.csv"], split="files")
    with pytest.raises(InputError, match=r"workload\.pool\.path\[1\].*nope_test\.csv"):
        load_scenario(write_scenario(data))
    data["workload"]["pool"].update(kind="long_table", path=["a_train.csv"])
    with pytest.raises(InputError, match="routerbench loader only"):
        load_scenario(write_scenario(data))


@pytest.mark.parametrize(("field", "value", "where"), [
    ("options", {"tokens_per_char": float("inf")}, "workload.pool.options.tokens_per_char"),
    ("tasks", {"arc": 1e12}, "workload.pool.tasks"),
])
def test_pool_numbers_are_finite_and_bounded(tmp_path, write_scenario, field, value, where):
    from sim.errors import InputError

    data = rb_scenario(tmp_path)
    data["workload"]["pool"][field] = value
    with pytest.raises(InputError, match=where.replace(".", r"\.")):
        load_scenario(write_scenario(data))
