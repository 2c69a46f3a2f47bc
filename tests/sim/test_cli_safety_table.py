"""The summary table never fails on a null or missing summary value (item 1 of issue 8): it shows "n/a"."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from reports.table import summary_markdown, summary_rows
from sim.config.load import parse_scenario
from sim.output import dumps_summary
from sim.runner import simulate
from tests.sim.conftest import small_scenario


@pytest.fixture(scope="module")
def real_summary() -> dict[str, Any]:
    """A real summary.json (budget set, so the budget row has all its fields), read back from JSON."""
    data = small_scenario(num_queries=60)
    data["router"] = {"policy": "cheapest", "window_s": 2.0, "budget_per_query": 0.0005}
    sc = parse_scenario(yaml.safe_dump(data), file="t.yaml")
    return json.loads(dumps_summary(simulate(sc).summary))


def _paths(d: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    if isinstance(d, dict):
        for k, v in d.items():
            yield prefix + (k,)
            yield from _paths(v, prefix + (k,))


def _leaves_to_none(d: Any) -> Any:
    return {k: _leaves_to_none(v) for k, v in d.items()} if isinstance(d, dict) else None


def _set(d: dict[str, Any], path: tuple[str, ...], value: Any, *, delete: bool = False) -> dict[str, Any]:
    out = copy.deepcopy(d)
    node = out
    for k in path[:-1]:
        node = node[k]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return out


def test_every_leaf_null_shows_na(real_summary: dict[str, Any]) -> None:
    nulls = _leaves_to_none(real_summary)
    nulls["budget"]["per_query_usd"] = 0.001  # so the budget row formats its (null) fields too
    nulls["budget"]["quality_floor"] = 0.7
    rows = dict(summary_rows(nulls))
    assert "n/a" in rows["accuracy"] and "n/a" in rows["TTFT p50 / p95 / p99"]
    assert rows["budget"].startswith("$0.0010/query; batches over: n/a of n/a predicted")
    assert rows["quality floor"] == "0.7; batches under floor: n/a of n/a predicted, n/a realised"
    assert "AUC n/a" in rows["predictor"]
    assert summary_markdown(nulls).count("n/a") > 20


def test_real_summary_has_no_na_and_no_floor_row(real_summary: dict[str, Any]) -> None:
    rows = dict(summary_rows(real_summary))
    assert "quality floor" not in rows  # no floor set
    assert "n/a" not in rows["budget"] and "n/a" not in rows["accuracy"]


@pytest.mark.parametrize("mode", ["null", "delete"])
def test_any_single_value_or_section_null_or_missing(real_summary: dict[str, Any], mode: str) -> None:
    for path in _paths(real_summary):
        broken = _set(real_summary, path, None, delete=mode == "delete")
        rows = summary_rows(broken)  # must not raise
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in rows), path


def test_auc_undefined_is_na(real_summary: dict[str, Any]) -> None:
    s = _set(real_summary, ("predictor_scores", "auc"), None)
    assert "AUC n/a" in dict(summary_rows(s))["predictor"]


def test_quality_floor_row_tolerates_absent_new_keys(real_summary: dict[str, Any]) -> None:
    s = _set(real_summary, ("budget", "quality_floor"), 0.65)
    s["budget"]["quality_floor_misses"] = 3
    s["budget"]["batches"] = 12
    s["budget"].pop("quality_floor_misses_realised", None)
    assert dict(summary_rows(s))["quality floor"] == "0.65; batches under floor: 3 of 12 predicted, n/a realised"
    s["budget"]["quality_floor_misses_realised"] = 5
    assert dict(summary_rows(s))["quality floor"].endswith("3 of 12 predicted, 5 realised")


def test_wrong_types_do_not_crash() -> None:
    assert dict(summary_rows({"queries": "oops", "models": {"m": None}, "latency_s": {"ttft": 3}}))
    assert summary_rows({})[0] == ("scenario / policy", "n/a / n/a (seed n/a)")


def test_dropped_dataset_rows_get_a_row_only_when_rows_were_dropped() -> None:
    from reports.table import summary_rows

    base = {"scenario": "s", "policy": "p", "seed": 1}
    assert not any(k == "dataset rows dropped" for k, _ in summary_rows(
        {**base, "data": {"rows_dropped_duplicate": 0, "rows_dropped_missing_score": 0}}))
    rows = dict(summary_rows({**base, "data": {"rows_dropped_duplicate": 3, "rows_dropped_missing_score": 1}}))
    assert rows["dataset rows dropped"] == "3 duplicate ids (on_duplicate), 1 missing scores (on_missing_score)"
