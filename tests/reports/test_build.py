"""write_report on real run, compare and sweep folders: the files it writes, what they say, figures
skipped (not crashing) when optional tables are missing, and clear errors on folders it cannot read."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from plotly.offline import get_plotlyjs

from reports.build import write_report
from reports.errors import ReportError

OUTPUTS = ("report.html", "report.md", "comparison.csv", "aiq.csv")


def _copy(folder: Path, tmp_path: Path) -> Path:
    """A private copy without any report another test wrote into the shared fixture folder."""
    return Path(shutil.copytree(folder, tmp_path / folder.name, ignore=shutil.ignore_patterns(*OUTPUTS)))


def test_compare_report_files_and_content(compare_folder: Path, tmp_path: Path) -> None:
    folder = _copy(compare_folder, tmp_path)
    written = write_report(folder)
    assert [p.name for p in written] == list(OUTPUTS) and all(p.exists() for p in written)
    md = (folder / "report.md").read_text(encoding="utf-8")
    assert "pair each run with the baseline's run of the same seed (common random numbers" in md
    assert "llmsim compare quickstart.yaml (test fixture)" in md and "| seeds | 1, 2 |" in md
    assert "| lagrangian | accuracy | 2 |" in md and "skipped" not in md
    comp = pd.read_csv(folder / "comparison.csv")
    assert set(comp["config"]) == {"threshold_greedy", "cheapest", "lagrangian"}
    assert comp.loc[comp["config"] == "cheapest", "diff_vs_baseline"].isna().all()
    assert comp.loc[comp["config"] != "cheapest", "pairs"].eq(2).all()
    acc = comp[(comp["metric"] == "accuracy") & (comp["config"] == "lagrangian")].iloc[0]
    res = pd.read_parquet(folder / "results.parquet")
    assert acc["mean"] == pytest.approx(res.loc[res["policy"] == "lagrangian", "accuracy"].mean())
    assert len(pd.read_csv(folder / "aiq.csv")) == 3
    html = (folder / "report.html").read_text(encoding="utf-8")
    assert html.count(get_plotlyjs()[:500]) == 1  # plotly.js embedded once, inline
    assert "<script src=" not in html  # nothing fetched from the network
    assert html.count('<div class="figure"') == 7  # frontier, share, latency, budget, occupancy × 3


def test_sweep_report_has_controllability_figure_and_a_curve_per_policy(sweep_folder: Path, tmp_path: Path) -> None:
    folder = _copy(sweep_folder, tmp_path)
    write_report(folder)
    md = (folder / "report.md").read_text(encoding="utf-8")
    assert "Accuracy and cost vs quality target α" in md
    assert "threshold_greedy:alpha=0.7 (alpha=0.7)" in md
    aiq = pd.read_csv(folder / "aiq.csv")
    assert list(aiq["policy"]) == ["threshold_greedy"] and aiq["points"].iloc[0] == 3
    assert "No baseline" in md


def test_single_run_folder_report(run_folder: Path) -> None:
    write_report(run_folder)
    md = (run_folder / "report.md").read_text(encoding="utf-8")
    assert "## Summary" in md and "n = 1 (one seed): no interval" in md
    assert "llmsim run" in md and "scenario.yaml --seed 3" in md
    comp = pd.read_csv(run_folder / "comparison.csv")
    assert comp["n"].eq(1).all() and comp["ci_lo"].isna().all()
    assert '<div class="figure"' in (run_folder / "report.html").read_text(encoding="utf-8")


def test_missing_optional_tables_skip_their_figures(compare_folder: Path, tmp_path: Path) -> None:
    folder = _copy(compare_folder, tmp_path)
    for run in (folder / "runs").iterdir():
        (run / "occupancy.parquet").unlink(missing_ok=True)
        (run / "batches.parquet").unlink()
        req = pd.read_parquet(run / "requests.parquet")
        req.drop(columns=["difficulty"], errors="ignore").to_parquet(run / "requests.parquet", index=False)
    write_report(folder)
    md = (folder / "report.md").read_text(encoding="utf-8")
    assert "**Routing share by difficulty** — skipped: no requests table with a difficulty column" in md
    assert "skipped: no occupancy table" in md and "Spend per batch against the budget** — skipped" in md
    assert "**Latency distributions** (`latency-cdf`" in md


def test_missing_run_folder_is_a_note_not_a_crash(compare_folder: Path, tmp_path: Path) -> None:
    folder = _copy(compare_folder, tmp_path)
    res = pd.read_parquet(folder / "results.parquet")
    shutil.rmtree(folder / res["run_dir"].iloc[0])
    write_report(folder)
    md = (folder / "report.md").read_text(encoding="utf-8")
    assert "## Notes" in md and f"not found: {res['run_dir'].iloc[0]}" in md


def test_matched_spend_rows_are_reported(compare_folder: Path, tmp_path: Path) -> None:
    folder = _copy(compare_folder, tmp_path)
    pd.DataFrame([{"policy": "threshold_greedy", "seed": 1, "knob": "router.params.alpha", "knob_value": 0.61,
                   "spend_usd": 0.0101, "target_spend_usd": 0.0100, "accuracy": 0.7, "reached": True, "note": ""},
                  {"policy": "lagrangian", "seed": 1, "knob": "router.budget_per_query", "knob_value": 0.0,
                   "spend_usd": 0.2, "target_spend_usd": 0.01, "accuracy": 0.8, "reached": False,
                   "note": "target below the cheapest setting"}]).to_parquet(folder / "matched_spend.parquet")
    write_report(folder)  # the manifest does not say match_spend: a stale table is not this experiment's
    assert "## Matched spend" not in (folder / "report.md").read_text(encoding="utf-8")
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    (folder / "manifest.json").write_text(json.dumps({**manifest, "match_spend": "threshold_greedy"}))
    write_report(folder)
    md = (folder / "report.md").read_text(encoding="utf-8")
    assert "## Matched spend" in md and "target below the cheapest setting" in md and "| 70.00 % |" in md
    assert "| lagrangian | router.budget_per_query = 0 | 0.2000 $ | 80.00 % |" in md  # the summary table


def _expect_error(folder: Path, match: str) -> ReportError:
    with pytest.raises(ReportError, match=match) as info:
        write_report(folder)
    if folder.is_dir():
        assert not any((folder / name).exists() for name in OUTPUTS)  # no partial output
    return info.value


def test_unreportable_folders_name_the_file_and_what_was_expected(tmp_path: Path) -> None:
    err = _expect_error(tmp_path / "nope", "not a folder")
    assert err.file == str(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    _expect_error(empty, "neither manifest.json nor summary.json")


@pytest.mark.parametrize(
    ("manifest", "results", "match"),
    [
        ('{"kind": "compare",\n "seeds": [1,', None, r"manifest.json: line 2: not valid JSON"),
        ('{"kind": "tournament"}', None, r"manifest.json: kind: expected one of compare, sweep"),
        ('{"kind": "sweep", "grid": [1]}', None, r"manifest.json: grid: expected a dict"),
        ('{"kind": "compare"}', None, r"results.parquet: file not found"),
        ('{"kind": "compare"}', pd.DataFrame({"policy": ["a"], "accuracy": [0.5]}), r"missing column\(s\) seed"),
        ('{"kind": "compare"}', pd.DataFrame({"policy": ["a", "b"], "seed": ["1", "x"]}),
         r"results.parquet: row 1, seed: expected an integer seed"),
    ],
)
def test_bad_experiment_folders(tmp_path: Path, manifest: str, results: pd.DataFrame | None, match: str) -> None:
    (tmp_path / "manifest.json").write_text(manifest, encoding="utf-8")
    if results is not None:
        results.to_parquet(tmp_path / "results.parquet")
    _expect_error(tmp_path, match)


def test_two_runs_of_one_configuration_and_seed_are_refused(compare_folder: Path, tmp_path: Path) -> None:
    folder = _copy(compare_folder, tmp_path)
    res = pd.read_parquet(folder / "results.parquet")
    pd.concat([res, res.iloc[[0]]]).to_parquet(folder / "results.parquet", index=False)
    _expect_error(folder, r"results.parquet: row 6: two runs of threshold_greedy with seed 1")


def test_a_results_table_with_few_columns_still_reports(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text('{"kind": "compare", "baseline": "a"}', encoding="utf-8")
    pd.DataFrame({"policy": ["a", "b", "a", "b"], "seed": [1, 1, 2, 2], "accuracy": [0.5, 0.6, 0.55, 0.7]}
                 ).to_parquet(tmp_path / "results.parquet")
    write_report(tmp_path)
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "Not computed: the results table has no cost.total_usd" in md
    assert "**Cost–accuracy frontier** — skipped: results table lacks column(s) cost.total_usd" in md
    assert "| b | accuracy | 2 | 65.00 % |" in md and "+12.50 pp" in md


def test_corrupt_summary_is_an_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "summary.json").write_text(json.dumps({"accuracy": 0.5}), encoding="utf-8")
    err = _expect_error(tmp_path, "summary.json: policy: missing field")
    assert err.where == "policy"


def test_references_section_has_the_oracle_and_the_best_single_model(compare_folder: Path, tmp_path: Path) -> None:
    folder = _copy(compare_folder, tmp_path)
    write_report(folder)
    md = (folder / "report.md").read_text(encoding="utf-8")
    res = pd.read_parquet(folder / "results.parquet").drop_duplicates("seed")
    oracle = 100 * res["references.oracle_accuracy"].mean()
    assert "## References" in md
    assert f"| oracle (best model per query) | 2 | {oracle:.2f} % |" in md
    assert f"| best single model ({res['references.best_single_model'].iloc[0]}) | 2 |" in md
