"""Bad dataset and price files from the CLI robustness review (findings 4, 6, 11, 12, 15 and 16): each is
one error naming the file and the line (or the scenario field), and the CLI exits 2; valid files load as
before."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from sim.config import schema
from sim.config.prices import PRICE_MAX, PRICE_MIN, read_price_file
from sim.config.schema import DatasetPool
from sim.datasets import load_dcrouter, load_long_table, tokens
from sim.datasets.pool import accepted_options, load_pool
from sim.errors import DataError, InputWarning, ScenarioError
from tests.sim.conftest import cli, small_scenario

PRICE_HEADER = "model,price_in_per_mtok,price_out_per_mtok\n"
MODELS = ["small", "big"]


def _run_cli(*args: str) -> tuple[int, str]:
    result = cli(*args)
    assert "Traceback" not in result.output
    return result.exit_code, result.output


# --- Findings 4 and 11: prices_file ------------------------------------------------------------------


def test_price_range_is_the_schema_range() -> None:
    assert (PRICE_MIN, PRICE_MAX) == (0.0, 10000.0)
    adapter = __import__("pydantic").TypeAdapter(schema.PricePerMTok)
    adapter.validate_python(PRICE_MAX)
    with pytest.raises(Exception, match="less than or equal"):
        adapter.validate_python(PRICE_MAX * 1.0001)


def test_non_utf8_price_file_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "prices.csv"
    path.write_bytes((PRICE_HEADER + "small,0.1,0.2\nbig,1,2\n").encode() + "# café\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"prices.csv: line 4: not UTF-8 text"):
        read_price_file(path, MODELS)


def test_over_long_price_field_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "prices.csv"
    path.write_text(PRICE_HEADER + "small,0.1,0.2\nbig,1," + "9" * 200_000 + "\n")
    with pytest.raises(DataError, match=r"prices.csv: line 3: malformed CSV \(field larger than field limit"):
        read_price_file(path, MODELS)


def test_price_file_with_bom_is_read(tmp_path: Path) -> None:
    path = tmp_path / "prices.csv"
    path.write_text("\ufeff" + PRICE_HEADER + "small,0.1,0.2\nbig,1,2\n", encoding="utf-8")
    assert read_price_file(path, MODELS) == {"small": (0.1, 0.2), "big": (1.0, 2.0)}


@pytest.mark.parametrize(("cell", "column"), [("1e10", "price_in_per_mtok"), ("1.7e308", "price_in_per_mtok"),
                                              ("-1", "price_in_per_mtok"), ("10000.5", "price_out_per_mtok"),
                                              ("nan", "price_out_per_mtok"), ("", "price_out_per_mtok")])
def test_prices_outside_the_schema_range_are_refused(tmp_path: Path, cell: str, column: str) -> None:
    path = tmp_path / "prices.csv"
    row = f"big,{cell},2\n" if column == "price_in_per_mtok" else f"big,1,{cell}\n"
    path.write_text(PRICE_HEADER + "small,0.1,0.2\n" + row)
    with pytest.raises(DataError) as err:
        read_price_file(path, MODELS)
    msg = str(err.value)
    assert msg.startswith(f"{path}: line 3, column {column}: expected a price in USD per million tokens "
                          f"from 0 to 10000, got {cell!r}")


def test_valid_price_files_read_as_before(tmp_path: Path) -> None:
    path = tmp_path / "prices.csv"
    path.write_text(PRICE_HEADER + "small,0,0\n\nbig,10000,1e4\n")
    assert read_price_file(path, MODELS) == {"small": (0.0, 0.0), "big": (10000.0, 10000.0)}
    path.write_text(PRICE_HEADER + "small,0.1,0.2\nbig,1,2\nsmall,3,4\n")
    with pytest.raises(DataError, match=r"line 4, column model: duplicate row .*\(lines 2 and 4\)"):
        read_price_file(path, MODELS)


def _priced_scenario(tmp_path: Path, prices: bytes) -> Path:
    data = small_scenario(num_queries=20, prices_file="prices.csv")
    for m in data["models"]:
        del m["price_in_per_mtok"], m["price_out_per_mtok"]
    (tmp_path / "prices.csv").write_bytes(prices)
    path = tmp_path / "pr.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(("prices", "needle"), [
    (PRICE_HEADER.encode() + b"small,0.1,0.2\nbig,1,2\n# caf\xe9\n", "prices.csv: line 4: not UTF-8 text"),
    ((PRICE_HEADER + "small,0.1,0.2\nbig,1," + "9" * 200_000 + "\n").encode(), "prices.csv: line 3: malformed CSV"),
    ((PRICE_HEADER + "small,1e10,1e10\nbig,1,2\n").encode(), "prices.csv: line 2, column price_in_per_mtok"),
])
def test_cli_refuses_bad_price_files(tmp_path: Path, prices: bytes, needle: str) -> None:
    code, out = _run_cli("validate", str(_priced_scenario(tmp_path, prices)))
    assert code == 2 and needle in out, out


def test_cli_accepts_price_file_with_bom(tmp_path: Path) -> None:
    prices = ("\ufeff" + PRICE_HEADER + "small,0.1,0.2\nbig,1,2\n").encode()
    code, out = _run_cli("validate", str(_priced_scenario(tmp_path, prices)))
    assert code == 0, out


# --- dcrouter files -----------------------------------------------------------------------------------


def _dc_items(n: int = 100, question: str | None = None) -> list[dict[str, Any]]:
    return [{"question": question if question is not None else f"question number {i} " + "x" * i,
             "scores": {"small": float(i % 2), "big": 1.0}} for i in range(n)]


def _write_dc(tmp_path: Path, items: list[dict[str, Any]], name: str = "dc.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(items))
    return path


# --- Finding 6: integers over Python's 4300-digit limit in a dcrouter score ----------------------------


def test_huge_integer_score_names_file_line_and_model(tmp_path: Path) -> None:
    path = tmp_path / "dc.json"
    items = json.dumps(_dc_items(3), indent=1)
    path.write_text(items.replace('"big": 1.0', '"big": ' + "9" * 5000, 1))
    with pytest.raises(DataError) as err:
        load_dcrouter(path)
    line = items.splitlines().index(next(t for t in items.splitlines() if '"big": 1.0' in t)) + 1
    msg = str(err.value)
    assert msg.startswith(f"{path}: line {line}: 'big' is an integer of 5000 digits; expected a score in [0, 1]")
    assert len(msg) < 400


# --- Finding 12: workload.pool.options ---------------------------------------------------------------


def _pool_scenario(tmp_path: Path, pool: dict[str, Any]) -> Path:
    data = small_scenario(num_queries=30)
    data["workload"]["pool"] = {"type": "dataset", **pool}
    path = tmp_path / "ds.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _long_table(tmp_path: Path) -> Path:
    rows = [{"query_id": f"q{i}", "task": "t", "model": m, "score": float((i + j) % 2)}
            for i in range(40) for j, m in enumerate(MODELS)]
    path = tmp_path / "lt.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


BAD_TOKENS = [(-1, "-1"), (0, "0"), (1.5, "1.5"), (1e12, "1000000000000.0"), ("x", "'x'"), (None, "null"),
              (True, "True"), (10**12, "1000000000000")]


@pytest.mark.parametrize(("value", "shown"), BAD_TOKENS)
@pytest.mark.parametrize(("kind", "option"), [("dcrouter", "output_tokens"), ("long_table", "default_prompt_tokens"),
                                              ("long_table", "default_output_tokens")])
def test_cli_refuses_bad_token_options(tmp_path: Path, kind: str, option: str, value: Any, shown: str) -> None:
    path = _write_dc(tmp_path, _dc_items()) if kind == "dcrouter" else _long_table(tmp_path)
    code, out = _run_cli("validate", str(_pool_scenario(tmp_path, {"kind": kind, "path": path.name,
                                                                   "options": {option: value}})))
    assert code == 2, out
    assert f"ds.yaml: workload.pool.options.{option}: expected a positive integer token count " \
           f"(1 to 10,000,000), got {shown}" in " ".join(out.split())


@pytest.mark.parametrize(("kind", "accepted"), [
    ("dcrouter", "task, output_tokens"),
    ("long_table", "missing, default_prompt_tokens, default_output_tokens, on_duplicate, on_missing_score"),
])
def test_cli_refuses_unknown_options_listing_the_accepted(tmp_path: Path, kind: str, accepted: str) -> None:
    path = _write_dc(tmp_path, _dc_items()) if kind == "dcrouter" else _long_table(tmp_path)
    code, out = _run_cli("validate", str(_pool_scenario(tmp_path, {"kind": kind, "path": path.name,
                                                                   "options": {"bogus": 1}})))
    assert code == 2, out
    assert f"workload.pool.options.bogus: unknown option 'bogus' for the {kind} loader; its options are: " \
           f"{accepted}" in " ".join(out.split())


def test_cli_refuses_a_bad_choice_option(tmp_path: Path) -> None:
    path = _write_dc(tmp_path, _dc_items())
    code, out = _run_cli("validate", str(_pool_scenario(tmp_path, {"kind": "dcrouter", "path": path.name,
                                                                   "options": {"task": "x"}})))
    assert code == 2 and "workload.pool.options.task: expected one of heuristic, single, got 'x'" in out, out


def test_library_loaders_refuse_bad_token_counts(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"output_tokens: expected a positive integer token count"):
        load_dcrouter(_write_dc(tmp_path, _dc_items()), output_tokens=-1)
    with pytest.raises(ValueError, match=r"default_prompt_tokens: expected a positive integer"):
        load_long_table(_long_table(tmp_path), default_prompt_tokens=0)
    assert tokens.MAX_TOKENS == schema.MAX_TOKENS


def test_valid_options_load_as_before(tmp_path: Path) -> None:
    dc = _write_dc(tmp_path, _dc_items())
    qs = load_dcrouter(dc, output_tokens=np.int64(77), task="single")
    assert qs.output_tokens.min() == qs.output_tokens.max() == 77 and qs.task_names == ("dcrouter",)
    lt = load_long_table(_long_table(tmp_path), default_prompt_tokens=9, default_output_tokens=11)
    assert set(lt.prompt_tokens.tolist()) == {9} and set(lt.output_tokens.ravel().tolist()) == {11}
    pool = DatasetPool(type="dataset", kind="dcrouter", path=str(dc), options={"output_tokens": 5, "task": "single"})
    train, test = load_pool(pool, MODELS, seed=1, n_arrivals=30)
    assert train.n + test.n == 100 and set(test.output_tokens.ravel().tolist()) == {5}
    # the pool's own row fields spelled as options at their default are nothing to pass to a strict loader
    pool = DatasetPool(type="dataset", kind="dcrouter", path=str(dc), options={"on_duplicate": "error"})
    assert load_pool(pool, MODELS, seed=1, n_arrivals=30)[1].n == test.n
    assert accepted_options("mmlu_pro") == ["models", "max_queries", "seed", "missing"]


def test_valid_option_scenario_validates(tmp_path: Path) -> None:
    path = _write_dc(tmp_path, _dc_items())
    code, out = _run_cli("validate", str(_pool_scenario(tmp_path, {"kind": "dcrouter", "path": path.name,
                                                                   "options": {"output_tokens": 64}})))
    assert code == 0, out


# --- Finding 15: a dcrouter train split emptied by prompt de-duplication ------------------------------


@pytest.mark.parametrize("question", ["same", ""])
def test_train_part_emptied_by_repeats_names_the_dataset(tmp_path: Path, question: str) -> None:
    dc = _write_dc(tmp_path, _dc_items(question=question))
    pool = DatasetPool(type="dataset", kind="dcrouter", path=str(dc))
    with pytest.warns(InputWarning) as caught:
        train, test = load_pool(pool, MODELS, seed=1, n_arrivals=30)
    assert train.n == 0 and test.n == 30
    text = [str(w.message) for w in caught if "training queries" in str(w.message)]
    assert text and text[0].startswith(f"{dc}: all 70 training queries repeat a prompt of the test part")


def test_distinct_prompts_give_no_such_warning(tmp_path: Path) -> None:
    dc = _write_dc(tmp_path, _dc_items())
    pool = DatasetPool(type="dataset", kind="dcrouter", path=str(dc))
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputWarning)
        train, test = load_pool(pool, MODELS, seed=1, n_arrivals=30)
    assert (train.n, test.n) == (70, 30)


# --- Finding 16: a directory where a dataset file is expected ----------------------------------------


def test_directory_as_dataset_file_says_so(tmp_path: Path) -> None:
    (tmp_path / "d.csv").mkdir()
    with pytest.raises(DataError, match=r"d.csv: is a directory; expected a .csv or .parquet file"):
        load_long_table(tmp_path / "d.csv")
    with pytest.raises(DataError, match=r"file not found \(expected a .csv or .parquet file\)"):
        load_long_table(tmp_path / "missing.csv")
    code, out = _run_cli("validate", str(_pool_scenario(tmp_path, {"kind": "long_table", "path": "."})))
    assert code == 2 and "is a directory; expected a .csv or .parquet file" in out and "not found" not in out, out


def test_cli_dataset_problems_are_scenario_errors(tmp_path: Path) -> None:
    """A bad option is the scenario's fault (ScenarioError), a bad file the data's (DataError)."""
    dc = _write_dc(tmp_path, _dc_items())
    pool = DatasetPool(type="dataset", kind="dcrouter", path=str(dc), options={"output_tokens": 0})
    with pytest.raises(ScenarioError, match="workload.pool.options.output_tokens"):
        load_pool(pool, MODELS, seed=1, n_arrivals=30)


def test_an_emptied_train_part_is_a_data_error_for_a_trained_predictor(tmp_path: Path) -> None:
    """task_mean needs training queries: the run stops with the dataset named, not the predictor blamed;
    noisy_oracle (no training) still runs on the same data."""
    dc = _write_dc(tmp_path, _dc_items(question="same"))
    path = _pool_scenario(tmp_path, {"kind": "dcrouter", "path": dc.name})
    data = yaml.safe_load(path.read_text())
    data["router"]["predictor"] = {"name": "task_mean"}
    path.write_text(yaml.safe_dump(data))
    code, out = _run_cli("validate", str(path))
    assert code == 2, out
    assert str(dc) in out and "no training queries are left" in out
    data["router"]["predictor"] = {"name": "noisy_oracle"}
    path.write_text(yaml.safe_dump(data))
    code, out = _run_cli("validate", str(path))
    assert code == 0, out


def test_a_directory_as_trace_file_says_so(tmp_path: Path) -> None:
    (tmp_path / "tdir").mkdir()
    data = small_scenario(num_queries=30)
    data["workload"]["arrivals"] = {"type": "trace", "path": "tdir"}
    path = tmp_path / "tr.yaml"
    path.write_text(yaml.safe_dump(data))
    code, out = _run_cli("validate", str(path))
    assert code == 2, out
    assert "tdir is a directory; expected a trace file" in out and "not found" not in out
