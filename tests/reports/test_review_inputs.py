"""Review finding #8: ``llmsim report`` on hand-edited or foreign folders ends as one ``error:`` line
naming the file and the field (exit 2), never an internal error; a report that cannot be written leaves
no temporary file behind."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from reports.build import write_report
from reports.errors import ReportError
from reports.tables import MANIFEST_FILE, RESULTS_FILE
from tests.sim.conftest import run_main

cli = run_main  # (exit code, stdout, stderr) of the console script


def assert_one_error(res: tuple[int, str, str], *needles: str) -> None:
    code, out, err = res
    assert code == 2, err
    assert out == "" and "Traceback" not in err and "internal error" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for needle in needles:
        assert needle in err, f"{needle!r} not in {err!r}"


def _edit_manifest(folder: Path, **fields: Any) -> None:
    path = folder / MANIFEST_FILE
    manifest = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps({**manifest, **fields}), encoding="utf-8")


@pytest.fixture()
def sweep_copy(sweep_folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(sweep_folder, tmp_path / "sw"))


@pytest.mark.parametrize(("fields", "where"), [
    ({"at_spend": "x"}, "at_spend"),
    ({"at_spend": float("inf")}, "at_spend"),
    ({"baseline": [1]}, "baseline"),
    ({"match_spend": 3}, "match_spend"),
    ({"grid": {"a": 5}}, "grid.a"),
    ({"whatif": [1]}, "whatif"),
    ({"whatif": {"changes": 3}}, "whatif.changes"),
])
def test_manifest_fields_of_the_wrong_type_are_named(sweep_copy: Path, capsys: pytest.CaptureFixture[str],
                                                      fields: dict[str, Any], where: str) -> None:
    _edit_manifest(sweep_copy, **fields)
    assert_one_error(cli(capsys, "report", str(sweep_copy)), f"{MANIFEST_FILE}: {where}: expected")
    assert not (sweep_copy / "report.html").exists()


def test_a_string_metric_column_is_named_with_its_row(sweep_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = pd.read_parquet(sweep_copy / RESULTS_FILE)
    results["accuracy"] = "x"
    results.to_parquet(sweep_copy / RESULTS_FILE, index=False)
    assert_one_error(cli(capsys, "report", str(sweep_copy)), f"{RESULTS_FILE}: row 0, accuracy: expected a number")


def test_a_run_summary_with_a_text_seed_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "summary.json").write_text('{"policy": "x", "seed": "abc"}', encoding="utf-8")
    assert_one_error(cli(capsys, "report", str(folder)), "summary.json: seed: expected an integer seed")


def test_a_run_summary_with_a_text_metric_is_named(run_folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    summary = json.loads((run_folder / "summary.json").read_text(encoding="utf-8"))
    summary["cost"]["total_usd"] = "lots"
    (run_folder / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    assert_one_error(cli(capsys, "report", str(run_folder)), "summary.json: cost.total_usd: expected a number")


def test_valid_folders_still_report(sweep_copy: Path, run_folder: Path) -> None:
    """The checks accept what llmsim writes: null metrics, text fields (scenario, best single model)."""
    _edit_manifest(sweep_copy, at_spend=0.01, baseline=None, grid={"router.params.alpha": [0.5, 0.7, 0.9]})
    assert len(write_report(sweep_copy)) >= 4
    assert len(write_report(run_folder)) >= 4


def test_a_report_that_cannot_be_written_leaves_no_temp_file(run_folder: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    def replace(src: Any, dst: Any) -> None:
        raise IsADirectoryError(21, "Is a directory")

    import reports.atomic

    monkeypatch.setattr(reports.atomic.os, "replace", replace)  # the report's writes go through it
    with pytest.raises(ReportError, match="report.html: cannot write: Is a directory"):
        write_report(run_folder)
    assert not [p.name for p in run_folder.iterdir() if p.name.endswith(".tmp")]


def test_report_html_a_directory_is_one_error_and_no_temp_file(run_folder: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    (run_folder / "report.html").mkdir()
    assert_one_error(cli(capsys, "report", str(run_folder)), "report.html")
    assert not [p.name for p in run_folder.iterdir() if p.name.endswith(".tmp")]
