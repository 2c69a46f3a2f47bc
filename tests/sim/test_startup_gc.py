"""Start-up garbage collection (sim.startup, issue 14): the console script postpones the cyclic
collector while it imports and loads, then freezes what start-up built and collects as usual; an
in-process caller gets the interpreter back as it was; library use is untouched."""

from __future__ import annotations

import gc
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomllib

from sim import startup

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "scenarios" / "quickstart.yaml"


@pytest.fixture(autouse=True)
def _restore_gc() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    startup.end()
    gc.set_threshold(*before)


def test_defer_resume_end_cycle() -> None:
    before = gc.get_threshold()
    startup.resume()  # not deferred: nothing happens
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
    startup.defer()
    assert gc.get_threshold() == (startup.STARTUP_THRESHOLD, *before[1:])
    startup.defer()  # idempotent: the first saved thresholds are kept
    kept = [object() for _ in range(3)]
    startup.resume()
    assert gc.get_threshold() == before and gc.get_freeze_count() > 0
    startup.resume()  # once only
    startup.end()
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
    assert len(kept) == 3


def test_end_without_resume_restores_the_thresholds() -> None:
    before = gc.get_threshold()
    startup.defer()
    startup.end()
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def test_console_script_runs_the_cli_and_gives_the_interpreter_back(tmp_path: Path) -> None:
    """The entry point named in pyproject.toml, in process: it runs the run command (which freezes
    start-up's objects once the scenario is loaded) and leaves thresholds and freeze as they were."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["llmsim"] == "sim.__main__:main"
    from sim.__main__ import main

    seen: list[tuple[tuple[int, int, int], int]] = []
    real = startup.resume

    def spy() -> None:
        real()
        seen.append((gc.get_threshold(), gc.get_freeze_count()))

    before = gc.get_threshold()
    mp = pytest.MonkeyPatch()
    mp.setattr(startup, "resume", spy)
    try:
        with pytest.raises(SystemExit) as done:
            main(["run", str(QUICKSTART), "--out", str(tmp_path / "r"), "-q", "--set", "num_queries=200"])
    finally:
        mp.undo()
    assert done.value.code == 0
    assert (tmp_path / "r" / "summary.json").exists()
    assert seen and seen[0][0] == before and seen[0][1] > 0  # usual thresholds, start-up frozen, once loaded
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def test_python_dash_m_sim_is_the_command_line(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "sim", "validate", str(QUICKSTART)], capture_output=True, text=True,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    bad = subprocess.run([sys.executable, "-m", "sim", "run", "--bogus"], capture_output=True, text=True, cwd=tmp_path)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
