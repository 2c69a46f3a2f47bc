"""Run folders: what counts as one, and a replacement that fails leaves the previous run whole.

``--overwrite`` replaces the run files of a folder llmsim wrote. A file named ``summary.json`` is not
enough to make a folder llmsim's (its scenario.yaml and tables would be replaced), and a replacement
that fails half-way (a run file's name taken by a folder, a disk error) must not leave a folder that
mixes two runs.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

import sim.output as output
from tests.sim.conftest import SCENARIOS, cli

QUICK = str(SCENARIOS / "quickstart.yaml")


def _run(out: Path, *extra: str) -> object:
    return cli("run", QUICK, "--set", "num_queries=20", "--out", str(out), "-q", *extra)


def _digest(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (relative path → sha256), hidden ones included."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _failing_replace(monkeypatch: pytest.MonkeyPatch, fails: Callable[[int, str], bool]) -> dict[str, int]:
    """``os.replace`` in sim.output raising ENOSPC on the calls ``fails(call number, destination)`` picks."""
    real = os.replace
    calls = {"n": 0}

    def flaky(src: object, dst: object) -> None:
        calls["n"] += 1
        if fails(calls["n"], str(dst)):
            raise OSError(28, "No space left on device", str(dst))
        real(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(output.os, "replace", flaky)
    return calls


@pytest.mark.parametrize("text", ["MY SUMMARY\n", '{"mine": 1}\n', "[1, 2]\n"])
def test_a_file_named_summary_json_does_not_make_a_run_folder(tmp_path: Path, text: str) -> None:
    out = tmp_path / "u"
    out.mkdir()
    (out / "summary.json").write_text(text)
    (out / "scenario.yaml").write_text("my: scenario\n")
    before = _digest(out)
    res = _run(out, "--overwrite")
    assert res.exit_code == 2, res.output  # type: ignore[attr-defined]
    assert "not an llmsim run folder" in res.output  # type: ignore[attr-defined]
    assert _digest(out) == before


def test_a_run_cut_short_before_its_summary_is_still_a_run_folder(tmp_path: Path) -> None:
    """summary.json moves last: a commit killed just before leaves llmsim's run_info.json without it."""
    out = tmp_path / "r"
    assert _run(out).exit_code == 0  # type: ignore[attr-defined]
    (out / "summary.json").unlink()
    assert output.is_run_folder(out)
    res = _run(out, "--overwrite")
    assert res.exit_code == 0, res.output  # type: ignore[attr-defined]
    assert json.loads((out / "summary.json").read_text())["seed"] == 7


def test_a_folder_in_place_of_a_run_file_is_refused_before_anything_changes(tmp_path: Path) -> None:
    out = tmp_path / "rr"
    assert _run(out).exit_code == 0  # type: ignore[attr-defined]
    (out / "batches.parquet").unlink()
    (out / "batches.parquet").mkdir()
    (out / "batches.parquet" / "mine.txt").write_text("keep\n")
    before = _digest(out)
    res = _run(out, "--overwrite", "--seed", "8")
    assert res.exit_code == 2, res.output  # type: ignore[attr-defined]
    assert "batches.parquet" in res.output and ".llmsim-tmp" not in res.output  # type: ignore[attr-defined]
    assert _digest(out) == before
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".llmsim-tmp")]


def test_a_commit_that_fails_half_way_puts_the_previous_run_back(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The 9th ``os.replace`` of the commit (a new file moving in, after the old ones moved aside)
    fails: the previous run's files are all back, byte for byte, and no temporary folder is left."""
    out = tmp_path / "rb"
    assert _run(out).exit_code == 0  # type: ignore[attr-defined]
    (out / "notes.txt").write_text("mine\n")
    before = _digest(out)
    calls = _failing_replace(monkeypatch, lambda n, dst: n == 9)
    res = _run(out, "--overwrite", "--seed", "8")
    monkeypatch.undo()
    assert res.exit_code == 2, res.output  # type: ignore[attr-defined]
    assert "No space left on device" in res.output  # type: ignore[attr-defined]
    assert calls["n"] >= 9
    assert _digest(out) == before
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".llmsim-tmp")]
    again = _run(out, "--overwrite", "--seed", "8")  # and the folder still takes a new run
    assert again.exit_code == 0, again.output  # type: ignore[attr-defined]
    assert json.loads((out / "summary.json").read_text())["seed"] == 8
    assert (out / "notes.txt").read_text() == "mine\n"
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".llmsim-tmp")]


def test_a_rollback_that_cannot_put_a_file_back_keeps_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The commit fails, then putting one previous file back fails too: that file is never deleted (it
    stays in the temporary folder the error names), the others are back in place."""
    out = tmp_path / "rk"
    assert _run(out).exit_code == 0  # type: ignore[attr-defined]
    before = _digest(out)
    _failing_replace(monkeypatch, lambda n, dst: n == 9 or (n > 9 and dst.endswith("requests.parquet")))
    res = _run(out, "--overwrite", "--seed", "8")
    monkeypatch.undo()
    assert res.exit_code == 2, res.output  # type: ignore[attr-defined]
    assert "could not put back the previous run's requests.parquet" in res.output  # type: ignore[attr-defined]
    kept = [p for p in out.parent.rglob("requests.parquet") if p.parent.name == ".previous"]
    assert len(kept) == 1
    assert hashlib.sha256(kept[0].read_bytes()).hexdigest() == before["requests.parquet"]
    after = _digest(out)
    assert {k: v for k, v in after.items() if k != "requests.parquet"} == \
        {k: v for k, v in before.items() if k != "requests.parquet"}
