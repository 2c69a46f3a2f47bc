"""Review findings #6 (config part) and #14.

#6: an integer too long for Python to convert (over 4300 digits) in scenario YAML, ``--set``, ``--grid`` or
an inline ``--policies`` value is one ``error:`` line naming the file and field or the option (exit 2),
not an internal error. #14: an error in a value an option set names that option, not the line of the
scenario file whose value the option replaced; errors in the file's own values keep their line.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sim.config.load import parse_scenario
from sim.errors import InputError
from tests.sim.conftest import run_main, small_scenario

HUGE = "9" * 5000


cli = run_main  # (exit code, stdout, stderr) of the console script


def assert_one_error(res: tuple[int, str, str], *needles: str, absent: tuple[str, ...] = ()) -> str:
    code, out, err = res
    assert code == 2, err
    assert out == "" and "Traceback" not in err and "internal error" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert len(err) < 1000, "a 5000-digit value must not be echoed whole"
    for needle in needles:
        assert needle in err, f"{needle!r} not in {err!r}"
    for needle in absent:
        assert needle not in err, f"{needle!r} in {err!r}"
    return err


@pytest.fixture
def scenario(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(small_scenario(num_queries=50), sort_keys=False), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------ #6: huge integers
@pytest.mark.parametrize("literal", [HUGE, "0x" + "f" * 5000, "-" + HUGE])
def test_a_huge_integer_in_the_file_names_its_line_and_field(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                            literal: str) -> None:
    path = tmp_path / "big.yaml"
    path.write_text(yaml.safe_dump(small_scenario(), sort_keys=False).replace("seed: 3", f"seed: {literal}"))
    line = next(i for i, ln in enumerate(path.read_text().splitlines(), 1) if ln.startswith("seed:"))
    assert_one_error(cli(capsys, "validate", str(path)), f"big.yaml: line {line}, column 7: seed: integer too large")


def test_a_huge_integer_deep_in_the_file_names_its_field(tmp_path: Path) -> None:
    data = small_scenario()
    text = yaml.safe_dump(data, sort_keys=False).replace("max_seqs: 16", f"max_seqs: {HUGE}")
    with pytest.raises(InputError, match=r"deployments\[1\]\.max_seqs: integer too large"):
        parse_scenario(text, file="t.yaml")


def test_a_huge_set_value_names_the_option(scenario: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert_one_error(cli(capsys, "validate", str(scenario), "--set", f"seed={HUGE}"),
                     "--set seed: integer too large")


def test_a_huge_grid_value_names_the_option(scenario: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sw"
    assert_one_error(cli(capsys, "sweep", str(scenario), "--grid", f"deployments.0.max_seqs=16,{HUGE}",
                         "--out", str(out)), "--grid deployments.0.max_seqs", "integer too large")
    assert not out.exists()


def test_a_huge_inline_policy_value_names_the_option(scenario: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cmp"
    assert_one_error(cli(capsys, "compare", str(scenario), "--policies", f"cheapest,random:seed={HUGE}",
                         "--out", str(out)), "--policies random:seed=999", "integer too large")
    assert not out.exists()


def test_a_bad_int_tag_is_a_clear_error() -> None:
    text = yaml.safe_dump(small_scenario(), sort_keys=False).replace("seed: 3", "seed: !!int abc")
    with pytest.raises(InputError, match=r"t.yaml: line \d+, column 7: seed: 'abc' is not an integer"):
        parse_scenario(text, file="t.yaml")


def test_long_but_printable_integers_still_reach_the_schema(scenario: Path) -> None:
    with pytest.raises(InputError, match=r"seed \(from --set seed\): Input should be less than"):
        parse_scenario(scenario.read_text(), file=scenario, overrides=[f"seed={'9' * 4000}"])


# ---------------------------------------------------------------------- #14: errors name the option
def test_an_unknown_set_key_names_the_option_not_a_line(scenario: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert_one_error(cli(capsys, "validate", str(scenario), "--set", "nope=1"),
                     "nope (from --set nope): unknown key", absent=("line ",))


def test_a_bad_set_value_names_the_option_not_the_files_line(scenario: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert_one_error(cli(capsys, "validate", str(scenario), "--set", 'router.params={alpha: " 1"}'),
                     "router.params.alpha (from --set router.params)", absent=("line ",))
    assert_one_error(cli(capsys, "validate", str(scenario), "--set", "deployments.1.max_seqs=-1"),
                     "deployments[1].max_seqs (from --set deployments.1.max_seqs)", absent=("line ",))


def test_a_consistency_error_in_an_overridden_field_names_the_option(
        scenario: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert_one_error(cli(capsys, "run", str(scenario), "--policy", "nope", "--out", str(scenario.parent / "o")),
                     "router.policy (from --policy): unknown policy 'nope'", absent=("line ",))


def test_a_policies_error_names_that_option(scenario: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert_one_error(cli(capsys, "compare", str(scenario), "--policies", "cheapest,nope", "--out",
                         str(tmp_path / "c")), "router.policy (from --policies nope): unknown policy 'nope'",
                     absent=("line ",))


def test_an_override_remembers_its_option() -> None:
    from sim.config.load import Override

    text = yaml.safe_dump(small_scenario(), sort_keys=False)
    with pytest.raises(InputError, match=r"router.policy \(from --policy\): unknown policy 'nope'"):
        parse_scenario(text, file="t.yaml", overrides=[Override("router.policy=nope", "--policy")])
    with pytest.raises(InputError, match=r"--grid deployments.9.max_seqs: '9' does not name"):
        parse_scenario(text, file="t.yaml", overrides=[Override("deployments.9.max_seqs=1",
                                                                "--grid deployments.9.max_seqs")])


def test_errors_in_the_files_own_values_keep_their_line(tmp_path: Path) -> None:
    from sim.config.load import Override

    data = small_scenario()
    data["router"]["window_s"] = "x"
    text = yaml.safe_dump(data, sort_keys=False)
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if "window_s" in ln)
    with pytest.raises(InputError, match=rf"line {line}: router.window_s: Input should be a valid number"):
        parse_scenario(text, file="t.yaml", overrides=["seed=5"])  # an unrelated override changes nothing
    with pytest.raises(InputError, match=rf"line {line}: router.window_s"):  # a value the file gave back
        parse_scenario(text, file="t.yaml", overrides=[Override("router.window_s=x", "")])
