"""Bad input: one clear message naming the file and field path or line, exit code 2, no traceback,
no run folder."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from sim.cli import app
from tests.sim.conftest import small_scenario

runner = CliRunner()


def run_cli(args: list[str]) -> Any:
    return runner.invoke(app, args, catch_exceptions=False)


def assert_clean_failure(result: Any, *needles: str) -> None:
    text = result.output
    assert result.exit_code == 2, text
    assert "Traceback" not in text
    for needle in needles:
        assert needle in text, f"{needle!r} not in {text!r}"


def mutate(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    sc = copy.deepcopy(small_scenario())
    node: Any = sc
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    return sc


CASES = [
    # (mutation path, value, expected substrings in the message)
    (("workload", "arrivals", "rate"), -3, ["workload.arrivals.rate", "greater than 0", "line "]),
    (("deployments", 1, "tp"), "two", ["deployments[1].tp", "integer"]),
    (("deployments", 0, "colour"), "red", ["deployments[0].colour", "unknown key"]),
    (("router", "policy"), "bogus", ["router.policy", "unknown policy 'bogus'", "threshold_greedy"]),
    (("router", "params"), {"nope": 1}, ["router.params", "nope"]),
    (("deployments", 1, "tp"), 1, ["deployments[1]", "does not fit", "GiB"]),
    (("gpus", 0, "count"), 2, ["gpus[0].count", "inventory has 2"]),
    (("deployments", 0, "model"), "ghost", ["deployments[0].model", "unknown model 'ghost'"]),
    (("workload", "arrivals"), {"type": "trace", "path": "nowhere.csv"}, ["workload.arrivals.path", "not found"]),
    (("models", 0, "strength"), None, ["models[0].strength", "synthetic"]),
]


@pytest.mark.parametrize(("path", "value", "needles"), CASES, ids=[".".join(map(str, c[0])) for c in CASES])
def test_bad_scenario_fails_cleanly(write_scenario, tmp_path: Path, path, value, needles) -> None:  # type: ignore[no-untyped-def]
    scenario = write_scenario(mutate(path, value))
    out = tmp_path / "run"
    result = run_cli(["run", str(scenario), "--out", str(out)])
    assert_clean_failure(result, str(scenario), *needles)
    assert not out.exists()
    assert not any(p.name.startswith(".run.") for p in tmp_path.iterdir())


def test_malformed_yaml_names_the_line(write_scenario, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    scenario = write_scenario("name: x\nseed: 1\nmodels: [\n  {name: a\n")
    result = run_cli(["run", str(scenario), "--out", str(tmp_path / "r")])
    assert_clean_failure(result, str(scenario), "not valid YAML", "line ")


def test_missing_scenario_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    assert_clean_failure(run_cli(["run", str(missing)]), str(missing), "not found")


def test_top_level_not_a_mapping(write_scenario) -> None:  # type: ignore[no-untyped-def]
    scenario = write_scenario("- 1\n- 2\n")
    assert_clean_failure(run_cli(["validate", str(scenario)]), str(scenario), "mapping")


def test_bad_set_override(write_scenario, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    scenario = write_scenario(small_scenario())
    result = run_cli(["run", str(scenario), "--set", "router.window_s=-1", "--out", str(tmp_path / "r")])
    assert_clean_failure(result, "router.window_s", "greater than or equal to 0")
    assert_clean_failure(run_cli(["run", str(scenario), "--set", "oops"]), "--set expects KEY.PATH=VALUE")


def test_unknown_cli_option_exit_2() -> None:
    result = run_cli(["run", "--no-such-flag"])
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_out_dir_that_is_not_a_run_folder_is_refused(write_scenario, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    scenario = write_scenario(small_scenario())
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("do not delete")
    assert_clean_failure(run_cli(["run", str(scenario), "--out", str(precious)]), "not an llmsim run folder")
    assert (precious / "thesis.tex").read_text() == "do not delete"


def test_builtin_latency_profile(write_scenario, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from sim.config import load_scenario
    from sim.engine.build import build_cluster
    from sim.profiles import builtin_profile

    sc = small_scenario()
    sc["gpus"][0]["name"] = "A100-80GB"
    for m in sc["models"]:
        m["latency"] = {"A100-80GB": {"builtin": True}}
    for d in sc["deployments"]:
        d["gpu"] = "A100-80GB"
    loaded = load_scenario(write_scenario(sc))
    import simpy

    _, deps = build_cluster(simpy.Environment(), loaded, lambda r: None)
    assert deps[1].instances[0].profile == builtin_profile(70, "A100-80GB", 2)
    # coefficients next to builtin, and a GPU the table does not know, are clear errors
    sc["models"][0]["latency"]["A100-80GB"]["decode_base_s"] = 0.1
    assert_clean_failure(run_cli(["validate", str(write_scenario(sc))]), "models[0].latency.A100-80GB", "builtin")
    sc["models"][0]["latency"] = {"TPUv5": {"builtin": True}}
    sc["gpus"].append({"name": "TPUv5", "memory_gib": 95, "count": 2})
    sc["deployments"][0]["gpu"] = "TPUv5"
    assert_clean_failure(run_cli(["validate", str(write_scenario(sc))]), "deployments[0].gpu", "known GPUs")


def test_scenario_reference_is_current_and_complete() -> None:
    """docs/scenario-reference.md is generated from the schema; every field has a description."""
    from sim.config import schema
    from sim.config.reference import reference_markdown
    from tests.sim.conftest import REPO

    text = reference_markdown()
    assert (REPO / "docs" / "scenario-reference.md").read_text() == text, "run: llmsim schema > docs/..."
    for model in vars(schema).values():
        if isinstance(model, type) and issubclass(model, schema.Strict) and model is not schema.Strict:
            for name, field in model.model_fields.items():
                assert field.description, f"{model.__name__}.{name} has no description"
                assert f"`{name}`" in text
