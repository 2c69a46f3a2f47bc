"""File permissions: a scenario, trace, dataset or table the user may not read, and a run or experiment
folder they may not write. Each ends as one ``error:`` line naming the file, exit code 2, no traceback,
nothing written and nothing that was there changed (checked by checksum, mode and owner).

The CLI runs in a subprocess as an unprivileged user, for whom file modes mean something: as root, as
uid/gid 65534 (nobody) through ``setpriv``; otherwise as the current user (chmod alone then takes the
access away). As root, an interpreter installed under a folder others may not search (pyenv in /root) is
made reachable for that one process: a private mount namespace hides the folder behind an empty tmpfs and
binds the interpreter's prefix back at its own path, so nothing on disk changes. Where none of that
works the tests are skipped, saying why.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.sim.conftest import small_scenario

REPO = Path(__file__).resolve().parents[2]  # the checkout the subprocesses import (PYTHONPATH)
NOBODY = 65534
AS_ROOT = os.geteuid() == 0
DENIED = "Permission denied"

LOCKED = 0o555  # a folder we may list and enter, not write
SEALED = 0o600  # a folder we may not search (no x): nothing in it can even be looked up
UNREADABLE = 0o000


# ----------------------------------------------------------------------------------------- the runner
@dataclass(frozen=True)
class Cli:
    """``python -m sim ARGS`` as the unprivileged user, in a given folder."""

    prefix: list[str]
    env: dict[str, str]

    def __call__(self, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.prefix, sys.executable, "-m", "sim", *args], cwd=cwd, env=self.env,
                              capture_output=True, text=True, timeout=300, check=False)

    def ok(self, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
        res = self(cwd, *args)
        assert res.returncode == 0, res.stderr
        return res


def _hidden_behind(path: Path) -> Path | None:
    """The outermost folder above ``path`` that others may not search (pyenv's /root), or None."""
    for parent in reversed(path.parents):  # from / down
        if not parent.stat().st_mode & stat.S_IXOTH:
            return parent
    return None


def _namespace(stage: Path) -> list[str] | None:
    """A command prefix that runs its command in a private mount namespace where the interpreter and the
    checkout are reachable by others although a folder above them is not (an empty tmpfs over that
    folder, the needed subtrees bound back at their own paths); None when nothing is hidden."""
    wanted = {Path(os.path.realpath(p)) for p in (sys.prefix, sys.base_prefix, REPO)}
    keep = sorted(p for p in wanted if _hidden_behind(p) and not any(q in p.parents for q in wanted))
    blocked = sorted({b for p in keep if (b := _hidden_behind(p)) is not None})
    unshare = shutil.which("unshare")
    if not keep or unshare is None:
        return None
    lines = ["set -e"]
    for k, path in enumerate(keep):
        (stage / str(k)).mkdir(parents=True, exist_ok=True)
        lines.append(f"mount --bind {shlex.quote(str(path))} {shlex.quote(str(stage / str(k)))}")
    lines += [f"mount -t tmpfs -o mode=755 llmsim-test {shlex.quote(str(b))}" for b in blocked]
    for k, path in enumerate(keep):
        lines += [f"mkdir -p {shlex.quote(str(path))}",
                  f"mount --move {shlex.quote(str(stage / str(k)))} {shlex.quote(str(path))}"]
    lines.append('exec "$@"')
    return [unshare, "--mount", "--propagation", "private", "sh", "-c", "\n".join(lines), "sh"]


def _give_back(path: Path) -> None:
    """Undo what the tests took away, so the folder can be removed (a non-root owner needs it)."""
    if path.is_dir() and not path.is_symlink():
        path.chmod(0o700)
        for child in path.iterdir():
            _give_back(child)


@pytest.fixture(scope="module")
def base() -> Iterator[Path]:
    """A world-writable sticky folder every test's folder lives in (a root-only tmp_path is unreachable)."""
    path = Path(tempfile.mkdtemp(prefix="llmsim-permissions-"))
    path.chmod(0o1777)
    (path / "home").mkdir(mode=0o777)
    (path / "home").chmod(0o1777)
    yield path
    _give_back(path)
    shutil.rmtree(path)


@pytest.fixture(scope="module")
def llmsim(base: Path) -> Cli:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(base / "home"), "LC_ALL": "C",
           "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    probe = [sys.executable, "-c", "import sim.cli"]
    if not AS_ROOT:
        denied = base / "probe"
        denied.write_text("x")
        denied.chmod(UNREADABLE)
        if os.access(denied, os.R_OK):
            pytest.skip("this user reads files whatever their mode (a capability): permissions cannot be tested")
        return Cli([], env)
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root and setpriv (util-linux) is missing: cannot run llmsim as an unprivileged "
                    "user, the only one for whom file modes mean anything")
    drop = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--"]
    namespace = _namespace(base / ".stage")
    tried = []
    for prefix in [drop, *([[*namespace, *drop]] if namespace else [])]:
        res = subprocess.run([*prefix, *probe], env=env, capture_output=True, text=True, check=False)
        if res.returncode == 0:
            return Cli(prefix, env)
        tried.append((res.stderr.strip().splitlines() or [f"exit {res.returncode}"])[-1])
    pytest.skip(f"uid {NOBODY} cannot run this interpreter ({sys.executable}): {'; '.join(tried)}")


# ------------------------------------------------------------------------------------------- helpers
@pytest.fixture
def work(base: Path, request: pytest.FixtureRequest) -> Path:
    """This test's folder (world-writable, like /tmp), with a tiny scenario in it."""
    path = Path(tempfile.mkdtemp(prefix=f"{request.node.name[:40]}-", dir=base))
    path.chmod(0o1777)
    write_scenario(path / "scenario.yaml", small_scenario(num_queries=150))
    return path


def write_scenario(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    path.chmod(0o644)
    return path


def as_user(path: Path) -> Path:
    """Give ``path`` (recursively) to the user the CLI runs as: what that user wrote before."""
    if AS_ROOT:
        for p in [path, *path.rglob("*")]:
            os.chown(p, NOBODY, NOBODY, follow_symlinks=False)
    return path


def copy_of(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return as_user(dst)


def snapshot(folder: Path) -> dict[str, tuple[Any, ...]]:
    """Every path under ``folder``: mode, owner and content hash (size and mtime where we may not read;
    only the name where we may not even look, as a non-root user in a folder the test sealed)."""
    seen: dict[str, tuple[Any, ...]] = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            p = Path(root) / name
            try:
                st = p.lstat()
            except PermissionError:
                seen[str(p.relative_to(folder))] = ()
                continue
            content: Any = None
            if stat.S_ISREG(st.st_mode):
                try:
                    content = hashlib.sha256(p.read_bytes()).hexdigest()
                except PermissionError:
                    content = (st.st_size, st.st_mtime_ns)
            seen[str(p.relative_to(folder))] = (st.st_mode, st.st_uid, content)
    return seen


def refused(res: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Exit 2, nothing on stdout, stderr one ``error:`` line (``warning:`` lines may precede it) holding
    every needle, no traceback. Returns the error line."""
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2, res.stderr
    assert res.stdout == ""
    assert "Traceback" not in res.stderr
    assert lines and lines[-1].startswith("error: "), res.stderr
    assert all(line.startswith("warning: ") for line in lines[:-1]), res.stderr
    for needle in needles:
        assert needle in lines[-1], f"{needle!r} not in {lines[-1]!r}"
    return lines[-1]


def refused_untouched(llmsim: Cli, work: Path, *args: str, needles: tuple[str, ...]) -> str:
    """:func:`refused`, and every file and folder under ``work`` exactly as before."""
    before = snapshot(work)
    line = refused(llmsim(work, *args), *needles)
    assert snapshot(work) == before, line
    return line


def trace_scenario(folder: Path, trace: str) -> Path:
    """A scenario replaying an Azure-format trace at ``folder/trace`` (written here, 150 requests)."""
    rows = [f"2023-11-16 18:{15 + k // 240:02d}:{(k // 4) % 60:02d}.{k % 4 * 25:02d}00000,{200 + k},{20 + k % 7}"
            for k in range(150)]
    path = folder / trace
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n" + "\n".join(rows) + "\n")
    data = small_scenario(workload={"arrivals": {"type": "trace", "path": trace}, "pool": {"type": "synthetic"}})
    data.pop("num_queries")
    return write_scenario(folder / "trace.yaml", data)


COMMANDS: dict[str, tuple[str, ...]] = {  # each command with tiny sizes; the scenario goes after the name
    "run": ("--out", "out", "-q"),
    "validate": (),
    "compare": ("--policies", "threshold_greedy", "--seeds", "1", "--jobs", "1", "--out", "out", "-q"),
    "sweep": ("--grid", "router.params.alpha=0.5,0.7", "--jobs", "1", "--out", "out", "-q"),
    "whatif": ("--set", "router.window_s=1", "--seeds", "1", "--jobs", "1", "--out", "out", "-q"),
    "plan": ("--seeds", "1", "--search-steps", "0", "--jobs", "1", "--out", "out", "-q"),
}


def command(name: str, scenario: str) -> tuple[str, ...]:
    return (name, scenario, *COMMANDS[name])


# ------------------------------------------------------------------------------------- reading inputs
@pytest.mark.parametrize("name", list(COMMANDS))
def test_unreadable_scenario(llmsim: Cli, work: Path, name: str) -> None:
    (work / "scenario.yaml").chmod(UNREADABLE)
    refused_untouched(llmsim, work, *command(name, "scenario.yaml"),
                      needles=("scenario.yaml: cannot read the file", DENIED))


@pytest.mark.parametrize("name", ["run", "validate", "whatif"])
def test_scenario_in_a_folder_that_cannot_be_searched(llmsim: Cli, work: Path, name: str) -> None:
    """``exists()`` itself fails there (EACCES): before, validate crashed and whatif blamed its output."""
    inner = work / "sealed"
    inner.mkdir()
    shutil.copy(work / "scenario.yaml", inner / "scenario.yaml")
    inner.chmod(SEALED)
    refused_untouched(llmsim, work, *command(name, "sealed/scenario.yaml"),
                      needles=("sealed/scenario.yaml: cannot read the file", DENIED))


@pytest.mark.parametrize("args", [("run", "--out", "out", "-q"), ("validate",),
                                  ("compare", "--policies", "threshold_greedy,utility_greedy", "--seeds", "1",
                                   "--jobs", "2", "--out", "out", "-q"),
                                  ("whatif", "--set", "router.window_s=1", "--seeds", "1", "--out", "out", "-q")],
                         ids=["run", "validate", "compare", "whatif"])
def test_unreadable_trace(llmsim: Cli, work: Path, args: tuple[str, ...]) -> None:
    """Read by the workers in compare: the error comes back from them, and the folder the command had
    started (manifest.json) is removed again."""
    trace_scenario(work, "data/trace.csv")
    (work / "data" / "trace.csv").chmod(UNREADABLE)
    refused_untouched(llmsim, work, args[0], "trace.yaml", *args[1:],
                      needles=(f"{work}/data/trace.csv: cannot read the file: {DENIED}",))


def test_trace_in_a_folder_that_cannot_be_searched(llmsim: Cli, work: Path) -> None:
    """Found by the scenario's load-time checks, at the field (before: an internal error in validate)."""
    trace_scenario(work, "data/trace.csv")
    (work / "data").chmod(SEALED)
    refused_untouched(llmsim, work, "validate", "trace.yaml",
                      needles=("trace.yaml: ", "workload.arrivals.path: ",
                               f"cannot read {work}/data/trace.csv: {DENIED}"))


@pytest.mark.parametrize("name", ["run", "validate"])
def test_unreadable_dataset(llmsim: Cli, work: Path, name: str) -> None:
    rows = ["query_id,task,model,score"] + [f"q{q},qa,{m},{(q + k) % 2}" for q in range(200)
                                            for k, m in enumerate(("small", "big"))]
    (work / "scores.csv").write_text("\n".join(rows) + "\n")
    data = small_scenario(num_queries=100, workload={"arrivals": {"type": "poisson", "rate": 4.0},
                                                     "pool": {"type": "dataset", "kind": "long_table",
                                                              "path": "scores.csv"}})
    for model in data["models"]:
        model.pop("strength")
    write_scenario(work / "dataset.yaml", data)
    (work / "scores.csv").chmod(UNREADABLE)
    refused_untouched(llmsim, work, *command(name, "dataset.yaml"),
                      needles=(f"{work}/scores.csv: cannot read the file: {DENIED}",))


@pytest.mark.parametrize("mode", ["file", "folder"])
def test_calibrate_unreadable_table(llmsim: Cli, work: Path, mode: str) -> None:
    (work / "gpu").mkdir()
    table = work / "gpu" / "steps.csv"
    table.write_text("model,gpu,phase,batch,ctx_per_seq,total_ctx,tokens,ms\n"
                     "m,H200,decode,1,128,128,1,7.0\nm,H200,decode,8,128,1024,8,7.5\n")
    (table if mode == "file" else table.parent).chmod(UNREADABLE if mode == "file" else SEALED)
    refused_untouched(llmsim, work, "calibrate", "gpu/steps.csv",
                      needles=(f"gpu/steps.csv: cannot read the file: {DENIED}",))


# ------------------------------------------------------------------------------------ run: --out
@pytest.fixture(scope="module")
def a_run(llmsim: Cli, base: Path) -> Path:
    """A run folder written by the CLI's user (copied by each test that uses it)."""
    folder = Path(tempfile.mkdtemp(prefix="a-run-", dir=base))
    folder.chmod(0o1777)
    write_scenario(folder / "scenario.yaml", small_scenario(num_queries=150))
    llmsim.ok(folder, "run", "scenario.yaml", "--out", "run", "-q")
    return folder / "run"


@pytest.mark.parametrize("out", ["locked/run", "locked/new/run"])
def test_run_out_under_a_folder_that_is_not_writable(llmsim: Cli, work: Path, out: str) -> None:
    (work / "locked").mkdir()
    (work / "locked").chmod(LOCKED)
    refused_untouched(llmsim, work, "run", "scenario.yaml", "--out", out,
                      needles=(f"{out}: cannot create the run folder here", "locked is not a writable directory"))


def test_run_out_with_read_only_run_files(llmsim: Cli, work: Path, a_run: Path) -> None:
    """Refused without --overwrite; with it the run files (llmsim's own) are replaced, as a user's ``mv``
    would in a folder they may write, and the user's own file stays as it was."""
    run = copy_of(a_run, work / "run")
    (run / "notes.txt").write_text("mine")
    as_user(run / "notes.txt").chmod(0o444)
    for p in run.iterdir():
        p.chmod(0o444)
    refused_untouched(llmsim, work, "run", "scenario.yaml", "--seed", "9", "--out", "run",
                      needles=("run: already holds a run", "--overwrite"))
    notes = snapshot(run)["notes.txt"]
    llmsim.ok(work, "run", "scenario.yaml", "--seed", "9", "--out", "run", "--overwrite", "-q")
    assert json.loads((run / "summary.json").read_text())["seed"] == 9
    assert snapshot(run)["notes.txt"] == notes
    assert not [p for p in work.iterdir() if p.name.startswith(".llmsim-")]


@pytest.mark.parametrize("overwrite", [False, True])
def test_run_out_folder_not_writable(llmsim: Cli, work: Path, a_run: Path, overwrite: bool) -> None:
    """Refused before simulating, with the folder named (before: after the run, naming a temp file)."""
    run = copy_of(a_run, work / "run")
    run.chmod(LOCKED)
    flags = ("--overwrite",) if overwrite else ()
    refused_untouched(llmsim, work, "run", "scenario.yaml", "--out", "run", *flags,
                      needles=("run: is not writable" if overwrite else "run: already holds a run",))


def test_run_out_empty_folder_not_writable(llmsim: Cli, work: Path) -> None:
    (work / "empty").mkdir()
    as_user(work / "empty").chmod(LOCKED)
    refused_untouched(llmsim, work, "run", "scenario.yaml", "--out", "empty", "-q",
                      needles=("empty: is not writable",))


def test_run_out_folder_whose_summary_cannot_be_read(llmsim: Cli, work: Path, a_run: Path) -> None:
    """Refused, and told why (not "is not an llmsim run folder")."""
    run = copy_of(a_run, work / "run")
    for name in ("summary.json", "run_info.json"):
        (run / name).chmod(UNREADABLE)
    refused_untouched(llmsim, work, "run", "scenario.yaml", "--out", "run", "--overwrite",
                      needles=("run: exists, and its summary.json cannot be read", DENIED))


@pytest.mark.skipif(not AS_ROOT, reason="needs files of two owners (chown)")
def test_run_overwrite_that_cannot_replace_one_file_puts_the_others_back(llmsim: Cli, work: Path,
                                                                         a_run: Path) -> None:
    """In a sticky folder of another user, the run's summary.json of a third owner cannot be replaced:
    the files already moved aside go back, and the message names the run folder's file, not a temp one."""
    run = copy_of(a_run, work / "run")
    os.chown(run, 0, 0)
    os.chown(run / "summary.json", 0, 0)
    run.chmod(0o1777)
    line = refused_untouched(llmsim, work, "run", "scenario.yaml", "--seed", "9", "--out", "run", "--overwrite",
                             needles=("run: cannot write the run folder: Operation not permitted",
                                      f"({work}/run/summary.json)"))
    assert ".llmsim-tmp" not in line


# ------------------------------------------------------------------------------ experiment folders
@pytest.fixture(scope="module")
def a_compare(llmsim: Cli, base: Path) -> Path:
    """A compare folder written by the CLI's user (copied by each test that uses it)."""
    folder = Path(tempfile.mkdtemp(prefix="a-compare-", dir=base))
    folder.chmod(0o1777)
    write_scenario(folder / "scenario.yaml", small_scenario(num_queries=150))
    llmsim.ok(folder, "compare", "scenario.yaml", "--policies", "threshold_greedy", "--seeds", "1", "--jobs", "1",
              "--out", "cmp", "-q")
    return folder / "cmp"


@pytest.mark.parametrize("name", ["compare", "sweep", "whatif", "plan"])
def test_experiment_out_under_a_folder_that_is_not_writable(llmsim: Cli, work: Path, name: str) -> None:
    (work / "locked").mkdir()
    (work / "locked").chmod(LOCKED)
    args = [*command(name, "scenario.yaml")]
    args[args.index("out")] = "locked/new/out"
    refused_untouched(llmsim, work, *args, needles=("locked/new/out: cannot create the experiment folder here",
                                                    "locked is not a writable directory"))


@pytest.mark.parametrize("name", ["compare", "sweep", "whatif", "plan"])
def test_experiment_out_empty_folder_not_writable(llmsim: Cli, work: Path, name: str) -> None:
    (work / "out").mkdir()
    as_user(work / "out").chmod(LOCKED)
    refused_untouched(llmsim, work, *command(name, "scenario.yaml"), needles=("out: is not writable",))


def test_compare_into_its_folder_not_writable(llmsim: Cli, work: Path, a_compare: Path) -> None:
    """Refused before anything runs, naming the folder (before: a temporary manifest file's name)."""
    cmp = copy_of(a_compare, work / "cmp")
    cmp.chmod(LOCKED)
    refused_untouched(llmsim, work, "compare", "scenario.yaml", "--policies", "threshold_greedy", "--seeds", "2",
                      "--jobs", "1", "--out", "cmp", needles=("cmp: is not writable",))


def test_compare_into_its_folder_with_runs_not_writable(llmsim: Cli, work: Path, a_compare: Path) -> None:
    """Refused before the manifest is rewritten (before: the runs were simulated, then the first run
    folder was refused, leaving a manifest of a command that failed)."""
    cmp = copy_of(a_compare, work / "cmp")
    (cmp / "runs").chmod(LOCKED)
    refused_untouched(llmsim, work, "compare", "scenario.yaml", "--policies", "threshold_greedy", "--seeds", "2",
                      "--jobs", "1", "--out", "cmp", needles=("cmp: has a runs/ folder that is not writable",))


@pytest.mark.parametrize("name", ["compare", "plan"])
def test_experiment_folder_whose_manifest_cannot_be_read(llmsim: Cli, work: Path, a_compare: Path,
                                                         name: str) -> None:
    cmp = copy_of(a_compare, work / "out")
    (cmp / "manifest.json").chmod(UNREADABLE)
    refused_untouched(llmsim, work, *command(name, "scenario.yaml"),
                      needles=("out: cannot use the experiment folder", "manifest.json", DENIED))


def test_plan_rerun_replaces_its_read_only_plan_csv(llmsim: Cli, work: Path) -> None:
    """plan.csv is replaced through a temporary sibling like the folder's other files (before: written in
    place, so a read-only one failed the rerun at its very end, after every simulation)."""
    llmsim.ok(work, *command("plan", "scenario.yaml"))
    (work / "out" / "plan.csv").chmod(0o444)
    llmsim.ok(work, *command("plan", "scenario.yaml"))
    assert (work / "out" / "plan.csv").read_text().count("\n") > 1


# -------------------------------------------------------------------------------------------- report
def test_report_into_a_folder_that_is_not_writable(llmsim: Cli, work: Path, a_compare: Path) -> None:
    cmp = copy_of(a_compare, work / "cmp")
    cmp.chmod(LOCKED)
    refused_untouched(llmsim, work, "report", "cmp", needles=("cmp/report.html: cannot write", DENIED))


@pytest.mark.parametrize("name", ["results.parquet", "manifest.json"])
def test_report_with_an_unreadable_table(llmsim: Cli, work: Path, a_compare: Path, name: str) -> None:
    cmp = copy_of(a_compare, work / "cmp")
    (cmp / name).chmod(UNREADABLE)
    refused_untouched(llmsim, work, "report", "cmp", needles=(f"cmp/{name}: cannot read",))


def test_report_on_a_folder_that_cannot_be_searched(llmsim: Cli, work: Path, a_compare: Path) -> None:
    """The report builder's exists() fails there: before, an internal error (exit 1)."""
    cmp = copy_of(a_compare, work / "cmp")
    cmp.chmod(SEALED)
    refused_untouched(llmsim, work, "report", "cmp", needles=("cmp: cannot read the folder", DENIED))


def test_a_report_that_cannot_replace_one_file_puts_the_others_back(llmsim: Cli, work: Path,
                                                                    a_compare: Path) -> None:
    """All or none: in a sticky folder, the user's report.html can be replaced but another user's
    report.md cannot; the report fails on report.md and report.html is put back (before: a new HTML was
    left beside the old Markdown)."""
    cmp = copy_of(a_compare, work / "cmp")
    llmsim.ok(work, "report", "cmp")
    (cmp / "report.html").write_text((cmp / "report.html").read_text() + "<!-- the previous report -->")
    if not AS_ROOT:
        pytest.skip("needs a second owner (root) for the folder and report.md")
    for path in (cmp, cmp / "report.md"):  # (the folder's owner may rename anything in it, sticky or not)
        os.chown(path, 0, 0)
    cmp.chmod(0o1777)
    refused_untouched(llmsim, work, "report", "cmp", needles=("cmp/report.md: cannot write",))


def test_an_unreadable_report_is_refused_as_such(llmsim: Cli, work: Path, a_compare: Path) -> None:
    cmp = copy_of(a_compare, work / "cmp")
    llmsim.ok(work, "report", "cmp")
    (cmp / "report.md").chmod(UNREADABLE)
    refused_untouched(llmsim, work, "report", "cmp", needles=("cmp/report.md: exists and cannot be read", DENIED))


def test_report_on_a_run_folder_whose_summary_cannot_be_read(llmsim: Cli, work: Path, a_run: Path) -> None:
    run = copy_of(a_run, work / "run")
    (run / "summary.json").chmod(UNREADABLE)
    refused_untouched(llmsim, work, "report", "run", needles=("run/summary.json: cannot read",))
