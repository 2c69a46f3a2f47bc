"""compare / sweep / whatif folders: no partial output on bad input, foreign folders refused, damaged
runs of a resumed sweep redone, file-system errors as one message.

Trace contents are read by the workers, after the experiment folder exists; a bad trace must still end
with exit 2 and nothing written (the folder was this command's), and a resumed folder must not crash
on a run folder a killed or edited sweep left damaged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from sim.cli import main
from tests.sim.conftest import SCENARIOS

GOOD = "TIMESTAMP,ContextTokens,GeneratedTokens\n" + "".join(
    f"2023-11-16 18:17:{i:02d}.9799600,{100 + i},{20 + i}\n" for i in range(20))
BAD = "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:00,100,20\nyesterday,100,20\n"


def _llmsim(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """``llmsim ARGS`` through the console script's entry (exit code, stdout + stderr)."""
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    cap = capsys.readouterr()
    return int(exc.value.code or 0), cap.out + cap.err


@pytest.fixture
def traced(tmp_path: Path) -> Path:
    """Quickstart on a 20-row trace (good.csv; bad.csv beside it)."""
    (tmp_path / "good.csv").write_text(GOOD)
    (tmp_path / "bad.csv").write_text(BAD)
    data: dict[str, Any] = yaml.safe_load((SCENARIOS / "quickstart.yaml").read_text())
    data["num_queries"] = 20
    data["workload"]["arrivals"] = {"type": "trace", "path": "good.csv"}
    path = tmp_path / "tr.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.parametrize("command", [
    ["compare", "--policies", "cheapest,random", "--seeds", "1", "--set", "workload.arrivals.path=bad.csv"],
    ["sweep", "--grid", "workload.arrivals.path=good.csv,bad.csv"],
    ["whatif", "--set", "workload.arrivals.path=bad.csv", "--seeds", "1"],
])
def test_bad_data_found_by_the_workers_leaves_nothing(traced: Path, capsys: pytest.CaptureFixture[str],
                                                      command: list[str]) -> None:
    out = traced.parent / "new" / "deeper" / "exp"
    code, text = _llmsim(capsys, command[0], str(traced), *command[1:], "--jobs", "1", "-q", "--out", str(out))
    assert code == 2, text
    assert "bad.csv" in text and "line 3" in text and "Traceback" not in text
    assert not (traced.parent / "new").exists()  # the parents this command created went too


def test_a_resumed_folder_keeps_what_it_had(traced: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = traced.parent / "sw"
    code, text = _llmsim(capsys, "sweep", str(traced), "--grid", "router.params.alpha=0.6,0.8", "--jobs", "1",
                         "-q", "--out", str(out))
    assert code == 0, text
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    code, text = _llmsim(capsys, "sweep", str(traced), "--grid", "router.params.alpha=0.6,0.8", "--jobs", "1",
                         "-q", "--out", str(out), "--set", "workload.arrivals.path=bad.csv")
    assert code == 2, text
    assert set(before) <= {p.relative_to(out) for p in out.rglob("*")}


@pytest.mark.parametrize("command", ["compare", "sweep", "whatif"])
def test_an_empty_out_is_refused(traced: Path, capsys: pytest.CaptureFixture[str], command: str,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(traced.parent)
    before = sorted(traced.parent.iterdir())
    extra = {"compare": ["--policies", "cheapest"], "sweep": ["--grid", "seed_offset=0"],
             "whatif": ["--set", "num_queries=10"]}[command]
    code, text = _llmsim(capsys, command, str(traced), *extra, "--out", "")
    assert code == 2, text
    assert "--out" in text and "empty" in text
    assert sorted(traced.parent.iterdir()) == before


def test_a_foreign_manifest_is_not_taken_over(traced: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = traced.parent / "m"
    out.mkdir()
    (out / "manifest.json").write_text('{"kind": "compare"}\n')
    (out / "matched_spend.parquet").write_text("mine\n")
    (out / "results.csv").write_text("mine\n")
    code, text = _llmsim(capsys, "compare", str(traced), "--policies", "cheapest,random", "--seeds", "1",
                         "--jobs", "1", "-q", "--out", str(out))
    assert code == 2, text
    assert "manifest.json that llmsim did not write" in text
    assert (out / "matched_spend.parquet").read_text() == "mine\n" and (out / "results.csv").read_text() == "mine\n"


@pytest.mark.parametrize(("name", "damage"), [
    ("run_info.json", "[1]\n"), ("summary.json", "[1]\n"), ("summary.json", None), ("run_info.json", None),
])
def test_a_damaged_run_of_a_resumed_sweep_is_redone(traced: Path, capsys: pytest.CaptureFixture[str], name: str,
                                                    damage: str | None) -> None:
    out = traced.parent / "sw"
    args = ["sweep", str(traced), "--grid", "router.params.alpha=0.6,0.8", "--jobs", "1", "-q", "--out", str(out)]
    assert _llmsim(capsys, *args)[0] == 0
    results = (out / "results.csv").read_text()
    run = sorted((out / "runs").iterdir())[0]
    if damage is None:
        (run / name).unlink()
    else:
        (run / name).write_text(damage)
    code, text = _llmsim(capsys, *args)
    assert code == 0, text
    assert (out / "results.csv").read_text() == results  # the same numbers, the damaged run simulated again
    assert json.loads((run / "summary.json").read_text())["policy"] == "threshold_greedy"


def test_a_directory_in_place_of_a_table_is_one_error(traced: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = traced.parent / "sw"
    args = ["sweep", str(traced), "--grid", "router.params.alpha=0.6,0.8", "--jobs", "1", "-q", "--out", str(out)]
    assert _llmsim(capsys, *args)[0] == 0
    (out / "results.parquet").unlink()
    (out / "results.parquet").mkdir()
    code, text = _llmsim(capsys, *args)
    assert code == 2, text
    assert "results.parquet" in text and "internal error" not in text


def test_bad_data_removes_only_what_the_command_wrote(traced: Path, capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Files another process puts into the new folders while the command runs stay (and so do the
    folders holding them): only the experiment's own files and run folders go."""
    import sim.experiments.folder as folder_mod

    out = traced.parent / "new" / "exp"
    real = folder_mod.write_manifest

    def and_a_neighbour(folder: Path, *a: Any, **k: Any) -> None:
        real(folder, *a, **k)
        (traced.parent / "new" / "theirs.txt").write_text("not llmsim's\n")  # written during the run
        (folder / "notes.txt").write_text("the user's\n")

    monkeypatch.setattr(folder_mod, "write_manifest", and_a_neighbour)
    code, text = _llmsim(capsys, "sweep", str(traced), "--grid", "workload.arrivals.path=good.csv,bad.csv",
                         "--jobs", "1", "-q", "--out", str(out))
    assert code == 2, text
    assert (traced.parent / "new" / "theirs.txt").read_text() == "not llmsim's\n"
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]  # manifest, results, runs/ removed


def test_a_write_error_keeps_the_finished_runs(traced: Path, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Not bad input: a full disk while the report is written keeps every finished run, to resume."""
    import reports.build

    def full(*_: Any, **__: Any) -> None:
        raise OSError(28, "No space left on device", "report.html")

    monkeypatch.setattr(reports.build, "write_report", full)
    out = traced.parent / "fresh" / "exp"
    code, text = _llmsim(capsys, "compare", str(traced), "--policies", "cheapest,random", "--seeds", "1",
                         "--jobs", "1", "-q", "--out", str(out))
    assert code == 2, text
    assert "No space left on device" in text
    assert len(list((out / "runs").iterdir())) == 2 and (out / "results.parquet").exists()


def test_an_out_through_a_missing_folder_is_checked_as_it_resolves(traced: Path, capsys: pytest.CaptureFixture[str],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """``--out missing/..`` is the current folder: a folder of the user's files is refused untouched."""
    user = traced.parent / "userdir"
    user.mkdir()
    (user / "results.csv").write_text("user results\n")
    (user / "manifest.json").write_text('{"mine": 1}\n')
    monkeypatch.chdir(user)
    code, text = _llmsim(capsys, "compare", str(traced), "--policies", "cheapest", "--seeds", "1", "--jobs", "1",
                         "-q", "--out", "nothere/..")
    assert code == 2, text
    assert sorted(p.name for p in user.iterdir()) == ["manifest.json", "results.csv"]
    assert (user / "results.csv").read_text() == "user results\n"


def test_set_router_with_policies_is_refused(traced: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, text = _llmsim(capsys, "compare", str(traced), "--policies", "random", "--set", "router={policy: cheapest}",
                         "-q", "--out", str(traced.parent / "c"))
    assert code == 2 and "--set router" in text, text


def test_report_temp_files_are_fresh_not_followed(traced: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A symlink planted under a predictable temporary name must not be written through."""
    out = traced.parent / "r"
    from sim.cli import main

    with pytest.raises(SystemExit):
        main(["run", str(traced), "--out", str(out), "-q"])
    precious = traced.parent / "precious.txt"
    precious.write_text("keep\n")
    for name in ("report.md", "report.html", "comparison.csv", "aiq.csv"):
        (out / f".{name}.tmp").symlink_to(precious)
    capsys.readouterr()
    code, text = _llmsim(capsys, "report", str(out))
    assert code == 0, text
    assert precious.read_text() == "keep\n"
    assert (out / "report.md").read_text().startswith("# llmsim ")
