"""Start-up garbage collection (sim.startup, issue 14): the console script postpones the cyclic
collector while it imports and loads, then freezes what start-up built and collects as usual — before
any simulation, in every command that simulates (or reads a folder). In-process use (``sim.cli.main``,
``import sim``) leaves the collector alone."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomllib

from sim import startup

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "scenarios"
SHARED = ROOT.parent / "shared" / "data"


@pytest.fixture
def restore_gc() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)
    startup._saved = None


def test_defer_then_resume(restore_gc: None) -> None:
    before = gc.get_threshold()
    startup.resume()  # not deferred: nothing happens
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
    startup.defer()
    assert gc.get_threshold() == (max(startup.STARTUP_THRESHOLD, before[0]), *before[1:])
    startup.defer()  # idempotent: the first saved thresholds are kept
    startup.resume()
    assert gc.get_threshold() == before and gc.get_freeze_count() > 0
    frozen = gc.get_freeze_count()
    [object() for _ in range(10)]
    startup.resume()  # once only
    assert gc.get_freeze_count() == frozen


def test_collection_switched_off_stays_off(restore_gc: None) -> None:
    gc.set_threshold(0, 10, 10)
    startup.defer()
    assert gc.get_threshold() == (0, 10, 10)
    startup.resume()
    assert gc.get_threshold() == (0, 10, 10)


def test_in_process_cli_leaves_the_collector_alone(tmp_path: Path, restore_gc: None) -> None:
    from sim.cli import main

    before = gc.get_threshold()
    with pytest.raises(SystemExit) as done:
        main(["run", str(SCENARIOS / "quickstart.yaml"), "--out", str(tmp_path / "r"), "-q", "--set",
              "num_queries=100"])
    assert done.value.code == 0
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


#: Runs the console script's main with a spy: every SimPy environment created, every effective resume.
SPY = """
import gc, json, sys
import simpy
from sim import startup
log, argv = sys.argv[1], sys.argv[2:]
def note(**entry):
    with open(log, "a") as f:
        f.write(json.dumps(entry) + "\\n")
real_init, real_resume = simpy.Environment.__init__, startup.resume
def init(self, *a, **k):
    note(env=True, deferred=startup._saved is not None)
    real_init(self, *a, **k)
def resume():
    deferred = startup._saved is not None
    real_resume()
    if deferred:
        note(resume=True, threshold=gc.get_threshold(), frozen=gc.get_freeze_count())
simpy.Environment.__init__ = init
startup.resume = resume
note(default=gc.get_threshold())
sys.argv = ["llmsim", *argv]
from sim.__main__ import main
main()
"""

QUICK = str(SCENARIOS / "quickstart.yaml")
COMMANDS = {
    "run": ["run", QUICK, "--out", "{out}", "-q", "--set", "num_queries=150"],
    "validate": ["validate", QUICK],
    "compare": ["compare", QUICK, "--policies", "cheapest,threshold_greedy", "--seeds", "1", "--jobs", "1",
                "--set", "num_queries=100", "--out", "{out}", "-q"],
    "sweep": ["sweep", QUICK, "--grid", "router.window_s=0,1", "--jobs", "1", "--set", "num_queries=100",
              "--out", "{out}", "-q"],
    "whatif": ["whatif", QUICK, "--set", "num_queries=80", "--seeds", "1", "--jobs", "1", "--out", "{out}", "-q"],
    "plan": ["plan", str(SCENARIOS / "capacity_planning.yaml"), "--gpus", "H100-80GB=4,A100-80GB=2", "--seeds", "1",
             "--search-steps", "0", "--jobs", "1", "--set", "num_queries=200", "--out", "{out}", "-q"],
    "calibrate": ["calibrate", str(SHARED / "gpu" / "h200_torch_iteration_times.csv")],
}


def spy(tmp_path: Path, argv: list[str]) -> tuple[int, list[dict]]:  # type: ignore[type-arg]
    log = tmp_path / "log.jsonl"
    args = [a.replace("{out}", str(tmp_path / "out")) for a in argv]
    done = subprocess.run([sys.executable, "-c", SPY, str(log), *args], capture_output=True, text=True, cwd=tmp_path,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.returncode, [json.loads(line) for line in log.read_text().splitlines()]


def test_console_script_is_sim_main() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["llmsim"] == "sim.__main__:main"


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_resumes_before_it_simulates(tmp_path: Path, command: str) -> None:
    argv = COMMANDS[command]
    if command == "plan":
        argv = [a for a in argv if a not in ("--set", "num_queries=200")]
    if command == "calibrate" and not Path(argv[1]).exists():
        pytest.skip("../shared/data not present")
    _, log = spy(tmp_path, argv)
    default = log[0]["default"]
    resumed = [e for e in log if e.get("resume")]
    envs = [e for e in log if e.get("env")]
    assert len(resumed) == 1, log  # once, with the usual thresholds back and start-up frozen
    assert resumed[0]["threshold"] == default and resumed[0]["frozen"] > 0
    assert all(not e["deferred"] for e in envs)  # no simulation while collection is postponed
    assert envs or command == "validate"


def test_report_resumes_and_python_dash_m_sim_is_the_command_line(tmp_path: Path) -> None:
    run = tmp_path / "out"
    subprocess.run([sys.executable, "-m", "sim", "run", QUICK, "--out", str(run), "-q", "--set", "num_queries=100"],
                   check=True, capture_output=True, cwd=tmp_path)
    (tmp_path / "log.jsonl").unlink(missing_ok=True)
    _, log = spy(tmp_path, ["report", str(run)])
    assert len([e for e in log if e.get("resume")]) == 1
    bad = subprocess.run([sys.executable, "-m", "sim", "run", "--bogus"], capture_output=True, text=True, cwd=tmp_path)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "--bogus" in bad.stderr
