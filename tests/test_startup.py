"""Start-up stays light (issue 14): ``llmsim validate`` on the default scenario imports neither
scipy.optimize, scipy.stats, scipy.sparse nor networkx — the batch policies, the allocation optimiser,
the kNN predictor and the profile fitter load them on first use — nor pandas, SimPy, the engine's
simulation side, the dispatcher or the metrics: validating runs :func:`sim.prepare.prepare` only, and a
synthetic workload reads no table. Nor does ``llmsim run`` import pandas (~0.27 s): its tables are
numpy columns written by pyarrow (sim.tables). Checked by module presence, not by time (timings live in
benchmarks/). And the lazy tables name exactly what the modules register."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

QUICKSTART = Path(__file__).resolve().parents[1] / "scenarios" / "quickstart.yaml"
HEAVY = ("scipy.optimize", "scipy.stats", "scipy.sparse", "networkx", "pandas", "simpy", "sim.dispatcher",
         "sim.metrics", "sim.engine.build", "sim.engine.cluster", "sim.engine.instance")


def test_validate_imports_no_heavy_module() -> None:
    code = (
        "import sys\n"
        "from sim.__main__ import main\n"  # the console script's entry point
        "sys.argv = ['llmsim', 'validate', 'scenarios/quickstart.yaml']\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout + out.stderr


def test_a_run_never_imports_pandas(tmp_path: Path) -> None:
    """``llmsim run`` writing every table, then ``llmsim validate``: pandas stays out of the process."""
    code = (
        "import sys\n"
        "from sim.cli import main\n"  # in process, twice (the console script exits after one command)
        "for argv in (['run', sys.argv[1], '--out', sys.argv[2], '-q', '--set', 'num_queries=300'],\n"
        "             ['validate', sys.argv[1]]):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit as e:\n"
        "        assert not e.code, e.code\n"
        "print('pandas' in sys.modules)\n"
    )
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-c", code, str(QUICKSTART), str(out)], capture_output=True, text=True,
                          cwd=tmp_path, check=True)
    assert done.stdout.strip().splitlines()[-1] == "False"
    assert {p.name for p in out.glob("*.parquet")} == {f"{t}.parquet" for t in ("requests", "batches", "instances", "occupancy")}


def test_lazy_policy_table_matches_the_batch_modules() -> None:
    from policies import registry

    for name, module in registry.LAZY.items():
        importlib.import_module(module)
        assert registry._REGISTRY[name].__module__ == module
    import policies.batch  # noqa: F401  every batch module
    batch = {n for n, c in registry._REGISTRY.items() if c.__module__.startswith("policies.batch")}
    assert batch == set(registry.LAZY)
    assert set(registry.available_policies()) == set(registry._REGISTRY)


def test_lazy_predictor_table_resolves() -> None:
    from sim.predictors import KNN, PREDICTORS

    assert PREDICTORS["knn"] is KNN
    assert sorted(PREDICTORS) == ["knn", "noisy_oracle", "task_mean"]
    for name in PREDICTORS:
        assert PREDICTORS[name].__name__.lower().replace("_", "") == name.replace("_", "") or name == "knn"
