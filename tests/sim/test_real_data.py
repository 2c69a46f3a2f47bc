"""Issue 5 end to end: real-data scenarios from the CLI, price resolution, calibrate, bad data files."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tests.sim.conftest import REPO, SCENARIOS, cli, small_scenario
from tests.sim.test_bad_input import assert_clean_failure

SHARED = (REPO / ".." / "shared" / "data").resolve()
needs_data = pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared data not found at {SHARED}")




@needs_data
@pytest.mark.shared_data
@pytest.mark.parametrize("name", ["mmlu_pro", "dcrouter_azure_conv"])
def test_real_data_scenario_runs_with_references(name: str, tmp_path: Path) -> None:
    out = tmp_path / name
    result = cli("run", str(SCENARIOS / f"{name}.yaml"), "--out", str(out))
    assert result.exit_code == 0, result.output
    s = json.loads((out / "summary.json").read_text())
    ref = s["references"]
    assert 0 < s["accuracy"] <= ref["oracle_accuracy"]
    assert ref["best_single_model_accuracy"] <= ref["oracle_accuracy"]
    assert s["queries"]["completed"] == s["queries"]["arrived"]
    scores = s["predictor_scores"]
    assert 0 < scores["brier"] < 0.25 and 0.5 < scores["auc"] <= 1
    assert "oracle / best single model" in result.output


@needs_data
@pytest.mark.shared_data
def test_trace_scenario_replays_the_trace_window_exactly(tmp_path: Path) -> None:
    out = tmp_path / "r"
    assert cli("run", str(SCENARIOS / "dcrouter_azure_conv.yaml"), "--out", str(out), "-q").exit_code == 0
    trace = pd.read_csv(SHARED / "traces" / "AzureLLMInferenceTrace_conv.csv")
    t = pd.to_datetime(trace.TIMESTAMP)
    rel = (t - t.iloc[0]).dt.total_seconds()
    expected = trace[rel < 900]
    req = pd.read_parquet(out / "requests.parquet")
    assert len(req) == len(expected)
    assert (req.prompt_tokens.to_numpy() == expected.ContextTokens.to_numpy()).all()
    assert abs(req.arrival_s.max() - rel[rel < 900].max()) < 1e-6


def test_unpriced_model_is_a_clear_error(write_scenario) -> None:  # type: ignore[no-untyped-def]
    sc = small_scenario()
    del sc["models"][1]["price_in_per_mtok"]
    path = write_scenario(sc)
    assert_clean_failure(cli("validate", str(path)), str(path), "models[1]", "no price for model 'big'")


def test_public_price_lookup_fills_missing_prices(write_scenario, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sc = small_scenario()
    big = sc["models"][1]
    del big["price_in_per_mtok"], big["price_out_per_mtok"]
    big["dataset_model"] = "gemini-1.5-pro"
    out = tmp_path / "run"
    assert cli("run", str(write_scenario(sc)), "--out", str(out), "-q").exit_code == 0
    resolved = (out / "scenario.yaml").read_text()
    assert "price_in_per_mtok: 1.25" in resolved and "price_out_per_mtok: 5.0" in resolved


def test_price_file_fills_and_rejects_unknown_models(write_scenario, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sc = small_scenario(prices_file="prices.csv")
    for m in sc["models"]:
        del m["price_in_per_mtok"], m["price_out_per_mtok"]
    (tmp_path / "prices.csv").write_text("model,price_in_per_mtok,price_out_per_mtok\nsmall,0.1,0.2\nbig,1,3\n")
    path = write_scenario(sc)
    assert cli("validate", str(path)).exit_code == 0
    (tmp_path / "prices.csv").write_text("model,price_in_per_mtok,price_out_per_mtok\nsmall,0.1,0.2\nbgi,1,3\n")
    assert_clean_failure(cli("validate", str(path)), "prices.csv", "line 3, column model", "unknown model 'bgi'")
    (tmp_path / "prices.csv").write_text("model,price_in_per_mtok,price_out_per_mtok\nsmall,cheap,0.2\n")
    assert_clean_failure(cli("validate", str(path)), "prices.csv", "line 2, column price_in_per_mtok")


def test_bad_dataset_file_through_the_cli(write_scenario, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    table = tmp_path / "scores.csv"
    rows = ["query_id,task,model,score,prompt"]
    for q in range(20):
        for m, score in (("small", 0), ("big", 1.5 if q == 7 else 1)):
            rows.append(f"q{q},qa,{m},{score},question {q}")
    table.write_text("\n".join(rows) + "\n")
    sc = small_scenario(workload={"arrivals": {"type": "poisson", "rate": 2.0},
                                  "pool": {"type": "dataset", "kind": "long_table", "path": "scores.csv"}})
    for m in sc["models"]:
        m.pop("strength")
    out = tmp_path / "out"
    result = cli("run", str(write_scenario(sc)), "--out", str(out))
    assert_clean_failure(result, "scores.csv", "score")
    assert not out.exists()


def test_dataset_scenario_with_long_table(write_scenario, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    table = tmp_path / "scores.csv"
    rows = ["query_id,task,model,score,prompt"]
    for q in range(60):
        for m, score in (("small", q % 2), ("big", 1)):
            rows.append(f"q{q},{'qa' if q < 30 else 'code'},{m},{score},question number {q} about topic {q % 5}")
    table.write_text("\n".join(rows) + "\n")
    sc = small_scenario(num_queries=50,
                        workload={"arrivals": {"type": "poisson", "rate": 2.0},
                                  "pool": {"type": "dataset", "kind": "long_table", "path": "scores.csv"}},
                        router={"policy": "oracle", "predictor": {"name": "knn", "params": {"k": 4}}})
    for m in sc["models"]:
        m.pop("strength")
    out = tmp_path / "out"
    result = cli("run", str(write_scenario(sc)), "--out", str(out), "-q")
    assert result.exit_code == 0, result.output
    s = json.loads((out / "summary.json").read_text())
    assert s["accuracy"] == pytest.approx(1.0)  # the oracle always picks a correct model here
    assert s["references"]["oracle_accuracy"] == pytest.approx(1.0)


@needs_data
@pytest.mark.shared_data
def test_calibrate_command_prints_fit(tmp_path: Path) -> None:
    result = cli("calibrate", str(SHARED / "gpu" / "splitwise_perf_model.csv"))
    assert result.exit_code == 0, result.output
    assert "decode_per_seq_s" in result.output and "%" in result.output


def test_calibrate_bad_csv(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("kind,prompt_tokens,time_s\nprefill,100,fast\n")
    assert_clean_failure(cli("calibrate", str(bad)), str(bad))
    assert_clean_failure(cli("calibrate", str(tmp_path / "missing.csv")), "missing.csv")
