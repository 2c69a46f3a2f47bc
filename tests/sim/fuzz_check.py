"""Run one fuzz case through the CLI, in-process, and list every way it broke the bad-input contract.

The contract (issue 8, "Hardening"): whatever the input, ``llmsim run`` ends with exit 0 (a run folder
holding summary.json) or exit 2 (one ``error:`` message naming the file at fault and a field path or
line, and nothing written); never a traceback. ``llmsim validate`` agrees with ``run`` on which inputs
are bad. Checks return a list of problems instead of asserting, so that an exploration script can
collect every distinct failure and the tests can show all of a case's problems at once.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from typer.testing import CliRunner, Result

from sim.cli import app

SCENARIO_FILE = "scenario.yaml"
OUT_DIR = "out"
CASE_TIMEOUT_S = 20.0  # a generous bound: a valid fuzz run takes well under a second
MAX_MESSAGE_CHARS = 2000
TOP_FIELDS = ("name", "description", "seed", "duration_s", "num_queries", "drain", "warmup_s",
              "prices_file", "gpus", "models", "deployments", "workload", "router", "outputs")
# A location: a line, a data row, a JSON item, a column or a query id, or a scenario field path followed by ':'.
LOCATION = re.compile(
    r"\b(line|row|item) \d+|\b(column|query) \S+|(?<![\w.])(" + "|".join(TOP_FIELDS) + r")(\[\d+\]|\.[^\s:]+)*:"
)
VALIDATE_MISMATCH = "validate disagrees with run"


@dataclass(frozen=True)
class FuzzCase:
    """One generated input. ``blame`` is the file an error must name (the scenario or a data file);
    ``expect`` is 'fail' (must exit 2), 'pass' (must exit 0) or 'either'."""

    label: str
    scenario: str | bytes
    files: dict[str, bytes] = field(default_factory=dict)
    blame: str = SCENARIO_FILE
    expect: str = "either"
    use_out: bool = True
    located: bool = True  # False: the error need not name a line or field (a binary file damaged as a whole)

    def __repr__(self) -> str:  # hypothesis prints the falsifying case: the label says what was done
        return f"FuzzCase({self.label!r}, files={sorted(self.files)}, expect={self.expect!r})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))  # hypothesis's pretty printer would otherwise print every field

    def text(self) -> str:
        """The scenario as text, for failure messages (long ones cut)."""
        s = self.scenario if isinstance(self.scenario, str) else repr(self.scenario)
        return s if len(s) < 4000 else s[:4000] + f"... ({len(s)} chars)"


class CaseTimeout(Exception):
    """Raised by SIGALRM inside a run that did not finish in :data:`CASE_TIMEOUT_S` (a hang)."""


@contextmanager
def _alarm(seconds: float) -> Iterator[None]:
    def handler(signum: int, frame: Any) -> None:
        raise CaseTimeout(f"no result after {seconds:g} s")

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` (hidden ones too) with its bytes (None for a folder)."""
    out: dict[str, bytes | None] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), root)] = None
        for f in filenames:
            p = os.path.join(dirpath, f)
            out[os.path.relpath(p, root)] = Path(p).read_bytes() if os.path.isfile(p) else b""
    return out


def _invoke(args: list[str]) -> Result:
    with _alarm(CASE_TIMEOUT_S):
        return CliRunner().invoke(app, args, catch_exceptions=True)


def _crash(result: Result) -> str | None:
    exc = result.exception
    if exc is None or isinstance(exc, SystemExit):
        return None
    return f"{type(exc).__name__}: {str(exc)[:300]}"


def error_message(result: Result) -> str:
    """The text from the first ``error:`` line to the end of stderr."""
    text = result.stderr
    i = text.find("error:")
    return text[i:] if i >= 0 else ""


def _check_error(result: Result, case: FuzzCase, work: Path, cmd: str) -> list[str]:
    problems = []
    stderr = result.stderr
    heads = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    if len(heads) != 1:
        problems.append(f"{cmd}: expected exactly one 'error:' line on stderr, got {len(heads)}: {stderr[:400]!r}")
    msg = error_message(result)
    if len(msg) >= MAX_MESSAGE_CHARS:
        problems.append(f"{cmd}: error message is {len(msg)} chars long: {msg[:200]!r}...")
    names = {case.blame, str(work / case.blame), str((work / case.blame).resolve())}
    if not any(n in msg for n in names):
        problems.append(f"{cmd}: error does not name the file at fault {case.blame!r}: {msg[:400]!r}")
    if case.located and not LOCATION.search(msg):
        problems.append(f"{cmd}: error names no field path, line, row or item: {msg[:400]!r}")
    return problems


def _number_problems(summary: dict[str, Any]) -> list[str]:
    """Physical sanity of a summary that a mutated-but-accepted scenario produced."""
    problems = []
    q = summary.get("queries", {})
    parts = sum(int(q.get(k, 0)) for k in ("completed", "rejected", "running", "pending"))
    if q.get("arrived") != parts:
        problems.append(f"summary: arrived {q.get('arrived')} != completed+rejected+running+pending {parts}")
    if sum(q.get("rejected_by_reason", {}).values()) != q.get("rejected"):
        problems.append(f"summary: rejected_by_reason {q.get('rejected_by_reason')} != rejected {q.get('rejected')}")
    for key in ("accuracy", "accuracy_of_completed"):
        v = summary.get(key)
        if v is not None and not 0.0 <= v <= 1.0:
            problems.append(f"summary: {key} = {v} outside [0, 1]")
    for key, v in summary.get("cost", {}).items():
        if v is not None and not (math.isfinite(v) and v >= 0):
            problems.append(f"summary: cost.{key} = {v} (expected finite and >= 0)")
    for kind, stats in summary.get("latency_s", {}).items():
        for stat, v in (stats or {}).items():
            if v is not None and not (math.isfinite(v) and v >= 0):
                problems.append(f"summary: latency_s.{kind}.{stat} = {v} (expected finite and >= 0)")
    return problems


def _check_success(before: dict[str, bytes | None], after: dict[str, bytes | None], case: FuzzCase) -> list[str]:
    new = sorted(set(after) - set(before))
    top = "work/" + (OUT_DIR if case.use_out else "runs") + "/"
    stray = [p for p in new if not (p + "/").startswith(top)]
    problems = [f"run: exit 0 wrote outside its run folder: {stray[:5]}"] if stray else []
    summaries = [p for p in new if p.endswith("/summary.json")]
    if len(summaries) != 1:
        return problems + [f"run: exit 0 but {len(summaries)} summary.json files were written: {new[:10]}"]
    if any(os.path.basename(os.path.dirname(p)).startswith(".") for p in new if p.endswith(".json")):
        problems.append(f"run: a temporary folder was left behind: {new[:10]}")
    summary = json.loads(after[summaries[0]] or b"{}")
    return problems + _number_problems(summary)


def check_case(case: FuzzCase) -> list[str]:
    """Run ``validate`` and ``run`` on the case in a fresh folder; every contract breach, as text."""
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="llmsim-fuzz-") as tmp:
        base = Path(tmp)
        work = base / "work"  # cwd of the run; ``base`` catches anything written next to it (../)
        work.mkdir()
        scenario = case.scenario.encode("utf-8") if isinstance(case.scenario, str) else case.scenario
        (work / SCENARIO_FILE).write_bytes(scenario)
        for rel, data in case.files.items():
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            (work / rel).write_bytes(data)
        before = _snapshot(base)
        os.chdir(work)
        try:
            checked = _invoke(["validate", SCENARIO_FILE])
            args = ["run", SCENARIO_FILE, "-q"] + (["--out", OUT_DIR] if case.use_out else [])
            ran = _invoke(args)
        finally:
            os.chdir(cwd)
        after = _snapshot(base)
        return _judge(case, checked, ran, before, after, work)


def _judge(case: FuzzCase, checked: Result, ran: Result, before: dict[str, bytes | None],
           after: dict[str, bytes | None], work: Path) -> list[str]:
    problems = []
    for cmd, result in (("validate", checked), ("run", ran)):
        crash = _crash(result)
        if crash:
            return [f"{cmd}: uncaught exception (traceback) {crash}"]
        if result.exit_code not in (0, 2):
            return [f"{cmd}: exit code {result.exit_code}"]
        if "Traceback" in result.output:
            problems.append(f"{cmd}: a traceback was printed")
        if result.exit_code == 2:
            problems += _check_error(result, case, work, cmd)
    if ran.exit_code == 2:
        changed = [p for p in set(before) | set(after) if before.get(p, b"?") != after.get(p, b"?")]
        if changed:
            problems.append(f"run: exit 2 but the folder changed: {sorted(changed)[:5]}")
    else:
        problems += _check_success(before, after, case)
    if case.expect == "fail" and ran.exit_code != 2:
        problems.append("run: invalid input accepted (exit 0)")
    if case.expect == "pass" and ran.exit_code != 0:
        problems.append(f"run: valid input refused: {error_message(ran)[:400]!r}")
    if checked.exit_code != ran.exit_code and "run folder" not in error_message(ran):
        problems.append(f"{VALIDATE_MISMATCH}: validate exit {checked.exit_code}, run exit {ran.exit_code} "
                        f"({error_message(ran)[:200]!r})")
    return problems
