"""Real run and experiment folders for the report tests, built the way ``llmsim compare`` / ``sweep``
write them: one run folder per (policy, seed) via sim.output.write_run, then manifest.json and
results.parquet (one flattened summary per run). Small runs (150 queries) keep this to a few seconds."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from reports.tables import MANIFEST_FILE, RESULTS_FILE, flatten_summary
from sim.config.load import parse_scenario, read_scenario_text
from sim.output import write_run
from sim.runner import run

QUICKSTART = Path(__file__).resolve().parents[2] / "sim" / "scenarios" / "quickstart.yaml"
BASE_SETS = ["num_queries=150", "router.window_s=1", "router.budget_per_query=0.003"]


def make_run(out: Path, sets: list[str]) -> dict[str, Any]:
    """Simulate quickstart with ``sets`` and write its run folder; return the summary."""
    sc = parse_scenario(read_scenario_text(QUICKSTART), file=QUICKSTART, base_dir=QUICKSTART.parent,
                        overrides=BASE_SETS + sets)
    result = run(sc)
    write_run(out, result, sc.model_dump(mode="json"), {"llmsim_version": "test"})
    occupancy = getattr(result, "occupancy", None)
    if occupancy is not None and not (out / "occupancy.parquet").exists():  # until write_run writes it
        occupancy.to_parquet(out / "occupancy.parquet", index=False)
    return result.summary


def make_experiment(folder: Path, kind: str, configs: list[tuple[str, dict[str, Any], list[str]]],
                    seeds: list[int], baseline: str | None) -> Path:
    """``configs``: (policy label, {param column: value}, --set overrides) per configuration."""
    rows = []
    for label, params, sets in configs:
        for seed in seeds:
            run_dir = f"runs/{hashlib.sha1(f'{label}{params}{seed}'.encode()).hexdigest()[:10]}"
            summary = make_run(folder / run_dir, [*sets, f"seed={seed}"])
            # the label last: the summary's own "policy" is the bare name, without inline parameters
            rows.append({**flatten_summary(summary), "run_id": run_dir[5:], "run_dir": run_dir, "policy": label,
                         "seed": seed, **{f"param.{k}": v for k, v in params.items()}})
    grid: dict[str, list[Any]] = {}
    for _, params, _ in configs:
        for k, v in params.items():
            grid.setdefault(k, []).append(v) if v not in grid.get(k, []) else None
    manifest = {"kind": kind, "command": f"llmsim {kind} quickstart.yaml (test fixture)", "llmsim_version": "test",
                "scenario": "quickstart", "seeds": seeds, "policies": list(dict.fromkeys(c[0] for c in configs)),
                "baseline": baseline, "grid": grid, "match_spend": None}
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    pd.DataFrame(rows).to_parquet(folder / RESULTS_FILE, index=False)
    return folder


@pytest.fixture(scope="session")
def compare_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configs = [
        ("threshold_greedy", {}, ["router.policy=threshold_greedy", "router.params={alpha: 0.75}"]),
        ("cheapest", {}, ["router.policy=cheapest", "router.params={}"]),
        ("lagrangian", {}, ["router.policy=lagrangian", "router.params={}"]),
    ]
    return make_experiment(tmp_path_factory.mktemp("compare"), "compare", configs, [1, 2], "cheapest")


@pytest.fixture(scope="session")
def sweep_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configs = [(f"threshold_greedy:alpha={a}", {"router.params.alpha": a},
                ["router.policy=threshold_greedy", f"router.params={{alpha: {a}}}"]) for a in (0.5, 0.7, 0.9)]
    return make_experiment(tmp_path_factory.mktemp("sweep"), "sweep", configs, [1, 2], None)


@pytest.fixture()
def run_folder(tmp_path: Path) -> Path:
    out = tmp_path / "run"
    make_run(out, ["seed=3"])
    return out
