"""``llmsim report`` never replaces a file of a report name that it did not write.

A run or experiment folder may hold the user's own ``report.md`` or ``comparison.csv``; the report
refuses (exit 2, nothing written) instead of replacing them, and still regenerates its own files.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.sim.conftest import SCENARIOS, cli

REPORT_FILES = ("report.html", "report.md", "comparison.csv", "aiq.csv")


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("own") / "run"
    res = cli("run", str(SCENARIOS / "quickstart.yaml"), "--set", "num_queries=20", "--out", str(out), "-q")
    assert res.exit_code == 0, res.output
    return out


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def test_its_own_report_is_regenerated(run_folder: Path) -> None:
    first = cli("report", str(run_folder))
    assert first.exit_code == 0, first.output
    before = _snapshot(run_folder)
    again = cli("report", str(run_folder))
    assert again.exit_code == 0, again.output
    assert _snapshot(run_folder) == before  # same folder, same report, replaced in place


@pytest.mark.parametrize(("name", "text"), [
    ("report.md", "my notes\n"),
    ("report.html", "<html><title>mine</title></html>\n"),
    ("comparison.csv", "my,data\n1,2\n"),
    ("aiq.csv", "x\n"),
])
def test_a_foreign_file_is_kept_and_nothing_is_written(run_folder: Path, tmp_path: Path, name: str,
                                                       text: str) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    for p in run_folder.iterdir():
        if p.is_file() and p.name not in REPORT_FILES:
            (folder / p.name).write_bytes(p.read_bytes())
    (folder / name).write_text(text, encoding="utf-8")
    before = _snapshot(folder)
    res = cli("report", str(folder))
    assert res.exit_code == 2, res.output
    assert "error:" in res.output and name in res.output and "Traceback" not in res.output
    assert _snapshot(folder) == before  # the user's file intact, no other report file written
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]


def test_identical_content_is_always_replaceable(tmp_path: Path) -> None:
    """An empty table's CSV has no header to recognise; the same bytes as llmsim would write are still
    llmsim's (a rerun of report must not refuse its own earlier file), anything else with no header is not."""
    from reports.build import _check_replaceable
    from reports.errors import ReportError

    csv = tmp_path / "aiq.csv"
    csv.write_text("\n")
    _check_replaceable(csv, "\n")
    csv.write_text("mine\n")
    with pytest.raises(ReportError, match="not a file llmsim report wrote"):
        _check_replaceable(csv, "\n")
    big = "x,y\n" + "1,2\n" * 3000  # longer than the 4 KiB head that is read first
    csv.write_text(big)
    _check_replaceable(csv, big)
    csv.write_text(big + "3,4\n")
    _check_replaceable(csv, big)  # not identical, but its header is the one llmsim writes


def test_a_csv_sharing_only_the_first_column_is_not_taken(tmp_path: Path) -> None:
    """comparison.csv starts ``config,metric,n``: a user's table that only starts with ``config`` stays."""
    from reports.build import _check_replaceable
    from reports.errors import ReportError

    csv = tmp_path / "comparison.csv"
    csv.write_text("config,value\na,1\n")
    with pytest.raises(ReportError):
        _check_replaceable(csv, "config,metric,n,mean\nx,accuracy,3,0.5\n")
    csv.write_text("config,metric,n,mean\nold,accuracy,3,0.4\n")
    _check_replaceable(csv, "config,metric,n,mean\nx,accuracy,3,0.5\n")


def test_atomic_writes_follow_the_umask_and_leave_no_sibling(tmp_path: Path) -> None:
    """The renamed temporary file keeps its mode: it must be the user's usual one (0666 less the umask),
    not a private 0600, and nothing but the target is left."""
    import os

    from reports.atomic import write_atomic

    mask = os.umask(0o022)
    try:
        write_atomic(tmp_path / "t.csv", lambda p: p.write_text("a,b\n", encoding="utf-8"))
    finally:
        os.umask(mask)
    assert (tmp_path / "t.csv").stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["t.csv"]
