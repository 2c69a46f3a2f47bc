"""Command-line arguments from the robustness review: empty paths, endless scenario files, a ``--set``
that would replace every compared policy, and errors naming the option a bad value came from."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sim.cli import main
from tests.sim.conftest import SCENARIOS

QUICK = str(SCENARIOS / "quickstart.yaml")


def _llmsim(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    cap = capsys.readouterr()
    return int(exc.value.code or 0), cap.out + cap.err


@pytest.mark.parametrize("args", [["run", ""], ["validate", " "], ["report", ""], ["calibrate", ""],
                                  ["compare", "", "--policies", "cheapest"], ["sweep", QUICK, "--out", ""]])
def test_an_empty_path_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch, args: list[str]) -> None:
    monkeypatch.chdir(tmp_path)
    code, text = _llmsim(capsys, *args)
    assert code == 2, text
    assert "expected a path, got an empty string" in text and "Traceback" not in text
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
def test_an_endless_scenario_file_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    code, text = _llmsim(capsys, "validate", "/dev/zero")
    assert code == 2, text
    assert "/dev/zero" in text and "larger than 16 MiB" in text


def test_set_router_policy_with_policies_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "c"
    code, text = _llmsim(capsys, "compare", QUICK, "--policies", "cheapest,random", "--set", "router.policy=milp",
                         "--out", str(out), "-q")
    assert code == 2, text
    assert "--set router.policy" in text and "--policies" in text
    assert not out.exists()


def test_policy_and_seed_errors_name_their_option(capsys: pytest.CaptureFixture[str]) -> None:
    code, text = _llmsim(capsys, "validate", QUICK, "--policy", "nope")
    assert code == 2 and "(from --policy)" in text and "line " not in text, text
    code, text = _llmsim(capsys, "validate", QUICK, "--seed", "-1")
    assert code == 2 and "(from --seed)" in text, text
