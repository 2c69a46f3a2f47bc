"""The run-folder writer (issue 8): never delete a user's file, --overwrite replaces only run files, OS
errors are one message (exit 2), one run per folder (lock), leftovers of killed runs are recognised by
their owner file and removed, and an interrupted write leaves nothing."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sim import output
from sim.output import OWNER_FILE, RUN_FILES, TMP_PREFIX, Interrupted, reserve_out_dir
from tests.sim.conftest import REPO, small_scenario
from tests.sim.test_cli_safety import assert_one_error_line, cli


@pytest.fixture
def scenario(write_scenario) -> Path:  # type: ignore[no-untyped-def]
    return write_scenario(small_scenario(num_queries=40))  # type: ignore[no-any-return]


def llmsim_leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith((TMP_PREFIX, output.LOCK_PREFIX)))


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_rerun_refused_without_overwrite_and_user_files_survive_it(scenario: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert cli(capsys, "run", str(scenario), "--out", str(out), "-q")[0] == 0
    (out / "notes.txt").write_text("mine")
    before = (out / "run_info.json").read_bytes()
    assert_one_error_line(*cli(capsys, "run", str(scenario), "--out", str(out)), str(out), "--overwrite")
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "run_info.json").read_bytes() == before

    code, stdout, _ = cli(capsys, "run", str(scenario), "--out", str(out), "--overwrite", "--seed", "9")
    assert code == 0
    assert (out / "notes.txt").read_text() == "mine"
    assert json.loads((out / "summary.json").read_text())["seed"] == 9
    assert "notes.txt" not in stdout.splitlines()[-1]  # the "wrote" line lists run files only
    assert sorted(p.name for p in out.iterdir()) == sorted([*RUN_FILES, "notes.txt"])
    assert llmsim_leftovers(tmp_path) == []


def test_overwrite_removes_run_files_this_run_does_not_write(scenario: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert cli(capsys, "run", str(scenario), "--out", str(out), "-q")[0] == 0
    (out / "notes.txt").write_text("mine")
    code, _, err = cli(capsys, "run", str(scenario), "--out", str(out), "--overwrite", "-q",
                       "--set", "outputs.requests=false", "--set", "outputs.batches=false")
    assert code == 0, err
    kept = set(RUN_FILES) - {"requests.parquet", "batches.parquet"}
    assert sorted(p.name for p in out.iterdir()) == sorted([*kept, "notes.txt"])
    assert "summary.json" in kept and "requests.parquet" in RUN_FILES


def test_overwrite_never_adopts_a_folder_that_is_not_a_run(scenario: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "requests.parquet").write_text("my own table")
    res = cli(capsys, "run", str(scenario), "--out", str(mine), "--overwrite")
    assert_one_error_line(*res, "not an llmsim run folder")
    assert [p.name for p in mine.iterdir()] == ["requests.parquet"]
    assert (mine / "requests.parquet").read_text() == "my own table"


def test_existing_empty_folder_and_missing_parents(scenario: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli(capsys, "run", str(scenario), "--out", str(empty), "-q")[0] == 0
    assert (empty / "summary.json").is_file()
    deep = tmp_path / "a" / "b" / "run"
    assert cli(capsys, "run", str(scenario), "--out", str(deep), "-q")[0] == 0
    assert (deep / "summary.json").is_file() and llmsim_leftovers(deep.parent) == []


def test_failed_run_removes_the_parents_it_created(write_scenario, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    bad = write_scenario(small_scenario(num_queries=None, duration_s=0.001))  # no arrivals: fails in prepare
    res = cli(capsys, "run", str(bad), "--out", str(tmp_path / "a" / "b" / "run"))
    assert_one_error_line(*res, "no arrivals")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scenario.yaml"]


def test_os_error_while_writing_is_one_message(monkeypatch: pytest.MonkeyPatch, scenario: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    def full_disk(cols: Any, path: Any) -> None:
        Path(path).write_bytes(b"PAR1 truncated")
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(output, "write_parquet", full_disk)
    out = tmp_path / "run"
    res = cli(capsys, "run", str(scenario), "--out", str(out))
    assert_one_error_line(*res, str(out), "cannot write the run folder: No space left on device")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scenario.yaml"]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_while_writing_leaves_nothing(monkeypatch: pytest.MonkeyPatch, scenario: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str], signum: int) -> None:
    def interrupted(cols: Any, path: Any) -> None:
        Path(path).write_bytes(b"PAR1 truncated")
        raise Interrupted(signum)

    monkeypatch.setattr(output, "write_parquet", interrupted)
    code, stdout, err = cli(capsys, "run", str(scenario), "--out", str(tmp_path / "run"))
    assert (code, stdout, err) == (128 + signum, "", "interrupted: nothing was written\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scenario.yaml"]


def test_interrupt_while_overwriting_keeps_the_old_run(monkeypatch: pytest.MonkeyPatch, scenario: Path,
                                                       tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert cli(capsys, "run", str(scenario), "--out", str(out), "-q")[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def interrupted(cols: Any, path: Any) -> None:
        raise Interrupted(signal.SIGTERM)

    monkeypatch.setattr(output, "write_parquet", interrupted)
    assert cli(capsys, "run", str(scenario), "--out", str(out), "--overwrite", "--seed", "5")[0] == 143
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert llmsim_leftovers(tmp_path) == []


def test_second_run_into_a_locked_folder_fails(scenario: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    with reserve_out_dir(out):  # as if another run were simulating into it
        res = cli(capsys, "run", str(scenario), "--out", str(out))
        assert_one_error_line(*res, str(out), f"another llmsim run (pid {os.getpid()}) is writing to this folder")
        # another process is refused too (flock is per open file, and per process)
        proc = subprocess.run([sys.executable, "-m", "sim", "run", str(scenario), "--out", str(out)],
                              capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
        assert proc.returncode == 2 and "another llmsim run" in proc.stderr, proc.stderr
    assert not out.exists() and llmsim_leftovers(tmp_path) == []
    assert cli(capsys, "run", str(scenario), "--out", str(out), "-q")[0] == 0  # released


def test_stale_lock_file_does_not_block(scenario: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    lock = output._lock_file(out)
    lock.write_text(f"{dead_pid()}\n")  # left behind by a killed run (its flock died with it)
    assert cli(capsys, "run", str(scenario), "--out", str(out), "-q")[0] == 0
    assert not lock.exists()


def _fake_tmp(out: Path, suffix: str, owner: dict[str, Any] | None) -> Path:
    tmp = out.parent / f"{TMP_PREFIX}{output._tag(out)}-{suffix}"
    tmp.mkdir()
    (tmp / "requests.parquet").write_bytes(b"PAR1 truncated")
    if owner is not None:
        (tmp / OWNER_FILE).write_text(json.dumps(owner))
    return tmp


def test_temp_folders_of_killed_runs_are_removed_and_nothing_else(scenario: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    host = socket.gethostname()
    killed = _fake_tmp(out, "dead", {"pid": dead_pid(), "host": host, "out": str(out)})
    unmarked = _fake_tmp(out, "nomark", None)
    alive = _fake_tmp(out, "alive", {"pid": os.getpid(), "host": host, "out": str(out)})
    elsewhere = _fake_tmp(out, "host", {"pid": dead_pid(), "host": host + "-other", "out": str(out)})
    other_out = _fake_tmp(out, "other", {"pid": dead_pid(), "host": host, "out": str(tmp_path / "x")})
    assert cli(capsys, "run", str(scenario), "--out", str(out), "-q")[0] == 0
    assert not killed.exists()
    for kept in (unmarked, alive, elsewhere, other_out):
        assert (kept / "requests.parquet").exists()


def test_write_run_alone_locks_and_refuses_like_the_cli(tmp_path: Path) -> None:
    """Library callers of write_run (compare, sweep) get the same rules without reserve_out_dir."""
    import yaml

    from sim.config.load import parse_scenario
    from sim.errors import InputError
    from sim.runner import simulate

    sc = parse_scenario(yaml.safe_dump(small_scenario(num_queries=20)), file="t.yaml")
    res = simulate(sc)
    out = tmp_path / "run"
    output.write_run(out, res, sc.model_dump(mode="json"), {})
    (out / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="--overwrite"):
        output.write_run(out, res, sc.model_dump(mode="json"), {})
    output.write_run(out, res, sc.model_dump(mode="json"), {"again": True}, overwrite=True, requests=False)
    assert json.loads((out / "run_info.json").read_text()) == {"again": True}
    assert (out / "notes.txt").read_text() == "mine" and not (out / "requests.parquet").exists()
    assert llmsim_leftovers(tmp_path) == []


def test_broken_symlink_out_is_refused_and_kept(scenario: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "nowhere")
    assert_one_error_line(*cli(capsys, "run", str(scenario), "--out", str(link)), str(link), "broken symbolic link")
    assert link.is_symlink()


def test_os_error_from_inside_the_run_names_its_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    import sim.runner

    def denied(*a: Any, **k: Any) -> None:
        raise PermissionError(13, "Permission denied", "/data/prices.csv")

    monkeypatch.setattr(sim.runner, "simulate", denied)
    res = cli(capsys, "run", "--out", str(tmp_path / "run"))
    assert_one_error_line(*res, "/data/prices.csv: Permission denied")
    assert list(tmp_path.iterdir()) == []
