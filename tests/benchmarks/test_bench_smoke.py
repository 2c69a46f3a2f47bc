"""Smoke runs of the issue-14 benchmarks at tiny sizes: they run to the end, exit 0, and both sides
simulate every request of the workload they were given (the timings themselves are not checked: the
benchmarks are run by hand, on a quiet machine, and print ratios measured side by side)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TRACE = REPO.parent / "shared/data/traces/AzureLLMInferenceTrace_conv.csv"


def _run(*args: str) -> str:
    proc = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def _completed(out: str, label: str) -> list[int]:
    """The 'completed' column of every table row starting with ``label``."""
    rows = [line for line in out.splitlines() if line.startswith(label)]
    return [int(re.findall(r"([\d,]+)\s+\d+ms$", r)[0].replace(",", "")) for r in rows]


def _scale_row(out: str, label: str) -> tuple[int, int]:
    """(requests, completed) of the scale table's row starting with ``label`` (a 44-character column)."""
    line = next(line for line in out.splitlines() if line.startswith(label))
    fields = line[44:].split()
    return int(fields[0].replace(",", "")), int(fields[4].replace(",", ""))


def test_scale_smoke() -> None:
    out = _run("benchmarks/scale.py", "--n", "300", "--outputs", "off", "--trace-rows", "3000",
               "--trace-need", "200")
    assert _scale_row(out, "quickstart-like, outputs off") == (300, 300)
    assert _scale_row(out, "trace file of 3,000 rows") == (200, 200)
    assert _scale_row(out, "trace file of 200 rows") == (200, 200)
    assert "cost of the 2,800 unused rows" in out


def test_vs_fleet_sim_says_skipped_without_the_package() -> None:
    """With fleet_sim unimportable (a None entry in sys.modules blocks the import) it says how to
    install it and exits 0 without running anything."""
    code = ("import runpy, sys; sys.modules['fleet_sim'] = None; sys.path.insert(0, 'benchmarks'); "
            "sys.argv = ['vs_fleet_sim.py']; runpy.run_path('benchmarks/vs_fleet_sim.py', run_name='__main__')")
    out = _run("-c", code)
    assert "skipped" in out and "pip install vllm-sr-sim" in out
    assert "requests/s" not in out


@pytest.mark.shared_data
@pytest.mark.skipif(not TRACE.exists(), reason="needs ../shared/data")
@pytest.mark.skipif(importlib.util.find_spec("fleet_sim") is None, reason="needs pip install vllm-sr-sim")
def test_vs_fleet_sim_smoke() -> None:
    out = _run("benchmarks/vs_fleet_sim.py", "--repeats", "1", "--rows", "150", "--copies", "2")
    assert _completed(out, "llmsim") == [150, 300]
    assert _completed(out, "fleet_sim") == [150, 300]
    assert out.count("ratio llmsim / fleet_sim") == 2


def test_phases_smoke() -> None:
    """benchmarks/phases.py: one row per phase, in order, each with a wall time and two memory readings."""
    out = _run("benchmarks/phases.py", "--n", "200")
    rows = [line.split() for line in out.splitlines()
            if line.split() and line.split()[0] in ("imports", "prepare", "engine", "summarise", "write")]
    assert [r[0] for r in rows] == ["imports", "prepare", "engine", "summarise", "write"]
    # the phase's own peak is at least the RSS it ends with
    assert all(len(r) == 4 and float(r[1]) >= 0 and float(r[3]) >= float(r[2]) > 0 for r in rows)
