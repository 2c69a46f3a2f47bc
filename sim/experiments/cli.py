"""``llmsim compare``, ``llmsim sweep`` and ``llmsim report``: thin commands over :mod:`sim.experiments`
and :mod:`reports` (load and validate everything, run, write the folder and its report, print a table).
Registered on the main app by :func:`register`."""

from __future__ import annotations

import os
import shlex
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.markup import escape
from rich.table import Table

from policies import PolicyError
from sim.console import err, fail, out, warnings_to_stderr
from sim.errors import InputError

ScenarioArg = Annotated[Path | None, typer.Argument(help="Scenario YAML (default: the embedded quickstart).")]
OutOpt = Annotated[Path | None, typer.Option("--out", help="Experiment folder (default: runs/<name>-<kind>).")]
SetsOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a field of every run: KEY.PATH=VALUE.")]
JobsOpt = Annotated[int | None, typer.Option("--jobs", help="Worker processes (default: the core count).")]
ExecOpt = Annotated[str, typer.Option("--executor", help="local (worker processes) or dask.")]
SchedOpt = Annotated[str | None, typer.Option("--scheduler", help="Dask scheduler address tcp://HOST:PORT "
                                                                 "(implies --executor dask).")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print only the experiment folder path.")]


def _executor(kind: str, jobs: int | None, scheduler: str | None) -> Any:
    from sim.experiments.execute import DaskExecutor, LocalExecutor

    n = jobs if jobs is not None else (os.cpu_count() or 1)
    if n < 1:
        raise InputError(f"--jobs must be at least 1, got {n}", where="--jobs")
    if scheduler is not None or kind == "dask":
        return DaskExecutor(n, scheduler)
    if kind != "local":
        raise InputError(f"--executor must be local or dask, got {kind!r}", where="--executor")
    return LocalExecutor(n)


class _SigTerm(Exception):
    pass


@contextmanager
def _interruptible() -> Iterator[None]:
    """SIGTERM behaves like Ctrl-C: completed runs stay, the command exits 143 (130 for Ctrl-C)."""
    def on_term(_signum: int, _frame: Any) -> None:
        raise _SigTerm

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _progress(total: int, label: str, enabled: bool) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

    # No refresh thread (auto_refresh=False): worker processes are forked, and a fork must not happen
    # while another thread holds a lock; the bar is redrawn on each finished run instead.
    bar = Progress("{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   "eta", TimeRemainingColumn(), console=err, transient=True, auto_refresh=False,
                   disable=not enabled or total == 0)
    task = bar.add_task(escape(label), total=total)

    def update(done: int) -> None:
        bar.update(task, completed=done)
        bar.refresh()

    return bar, update


def _command(kind: str, scenario: Path | None, options: dict[str, Any]) -> str:
    parts = ["llmsim", kind] + ([str(scenario)] if scenario else [])
    for flag, value in options.items():
        for v in value if isinstance(value, list) else [value]:
            if v is not None and v is not False:
                parts += [flag] if v is True else [flag, str(v)]
    return shlex.join(parts)


def _run(kind: str, folder: Path | None, exp: Any, executor: Any, command: str, extra: dict[str, Any],
         quiet: bool, after: Any = None) -> Path:
    """Run or resume ``exp`` into its folder, call ``after(results)``, write the report; the folder."""
    from reports.build import write_report
    from sim.experiments.folder import pending_runs, run_experiment

    folder = folder or Path("runs") / f"{exp.scenario_name}-{kind}"
    bar, update = _progress(pending_runs(folder, exp) if folder.exists() else len(exp.runs),
                            f"{kind} {exp.scenario_name}", not quiet)
    try:
        with bar:
            results = run_experiment(folder, exp, executor, command=command, extra=extra, on_done=update)
        if after is not None:
            after(folder, results)
    finally:
        executor.close()
    write_report(folder)
    return folder


def _interrupted(code: int, folder: Path | None) -> None:
    where = f" in {folder}" if folder else ""
    err.print(f"interrupted: the runs that had finished are kept{where}; rerun the same command to "
              "resume", highlight=False, markup=False)
    raise typer.Exit(code)


CONSOLE_METRICS = {"accuracy": "accuracy", "cost.total_usd": "token cost", "latency_s.ttft.p99": "TTFT p99",
                   "budget.batches_over_budget_realised": "batches over budget"}


def _pm(metric: str, mean: float, half: float, signed: bool = False) -> str:
    """``mean ± half-width`` in the metric's unit (the half-width of the 95 % interval)."""
    from reports.build import fmt

    text = fmt(metric, mean, signed)
    return text if not np.isfinite(half) else f"{text} ± {fmt(metric, half, signed).lstrip('+')}"


def _print_results(folder: Path, results: Any, baseline: str | None, quiet: bool) -> None:
    """Mean [95 % CI] per policy (and grid point) of the headline metrics, paired difference in accuracy."""
    if quiet:
        out.print(escape(str(folder)), highlight=False)
        return
    from reports.stats import compare_table

    params = [c for c in results.columns if c.startswith("param.")]
    results = results.assign(config=results["policy"].astype(str) + results[params].astype(str).apply(
        lambda r: "".join(f" {k[6:]}={v}" for k, v in r.items()), axis=1) if params else results["policy"])
    table = compare_table(results, list(CONSOLE_METRICS), baseline if not params else None, group="config")
    grid = Table("policy", *CONSOLE_METRICS.values(), "Δ accuracy vs " + (baseline or "—"),
                 title=escape(f"llmsim — {folder} (mean ± 95 % CI half-width over seeds)"),
                 title_justify="left")
    for config, rows in table.groupby("config", sort=False):
        cells = {r.metric: _pm(r.metric, r.mean, r.ci_hi - r.mean) for r in rows.itertuples()}
        acc = rows[rows["metric"] == "accuracy"].iloc[0]
        diff = _pm("accuracy", acc.diff_vs_baseline, acc.diff_ci_hi - acc.diff_vs_baseline, signed=True)
        grid.add_row(escape(str(config)), *(escape(cells.get(m, "n/a")) for m in CONSOLE_METRICS), escape(diff))
    _reference_rows(grid, results)
    out.print(grid)
    out.print(f"report: {escape(str(folder / 'report.html'))} (and report.md, results.csv)", highlight=False)


REFERENCES = {"oracle": ("references.oracle_accuracy", None),
              "best single model": ("references.best_single_model_accuracy",
                                                "references.best_single_model_cost_usd")}


def _reference_rows(grid: Table, results: Any) -> None:
    """The oracle's and the best single model's accuracy (and cost) on the same queries, per seed."""
    from reports.stats import mean_ci

    one_per_seed = results.drop_duplicates("seed")
    for label, (acc_col, cost_col) in REFERENCES.items():
        if acc_col not in one_per_seed:
            continue
        acc = mean_ci(one_per_seed[acc_col].astype(float).to_numpy())
        cost = mean_ci(one_per_seed[cost_col].astype(float).to_numpy()) if cost_col in one_per_seed else None
        name = one_per_seed.get("references.best_single_model")
        if cost_col and name is not None and name.nunique() == 1:
            label = f"best single: {name.iloc[0]}"
        grid.add_row(escape(label), _pm("accuracy", acc[0], acc[2] - acc[0]),
                     _pm("cost.total_usd", cost[0], cost[2] - cost[0]) if cost else "—", "", "", "",
                     style="dim")


def _guarded(folder: Path | None, body: Any) -> None:
    """Run ``body``; bad input → one message, exit 2; Ctrl-C → exit 130, SIGTERM → 143, runs kept."""
    try:
        with _interruptible(), warnings_to_stderr():
            body()
    except (InputError, PolicyError) as exc:
        fail(exc)
    except KeyboardInterrupt:
        _interrupted(130, folder)
    except _SigTerm:
        _interrupted(143, folder)


def compare(
    scenario: ScenarioArg = None,
    policies: Annotated[str, typer.Option(help="Comma-separated policies, parameters inline: "
                                                "lagrangian,utility_greedy:lam=31.5,robust:kappa=1:gamma=2")] = "",
    seeds: Annotated[int, typer.Option(help="Seeds per policy: the scenario's seed and the next N-1.")] = 3,
    baseline: Annotated[str | None, typer.Option(help="Policy the others are paired against (default: the "
                                                      "first).")] = None,
    match_spend: Annotated[str | None, typer.Option("--match-spend", help="Also report each policy's "
                                                    "accuracy at this policy's mean spend (bisecting its spend knob).")] = None,
    sets: SetsOpt = None,
    out_dir: OutOpt = None,
    jobs: JobsOpt = None,
    executor: ExecOpt = "local",
    scheduler: SchedOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Run several policies on identical workloads per seed; report means, CIs and paired differences."""
    def body() -> None:
        from sim.experiments.plan import plan_experiment, read_source
        from sim.experiments.specs import parse_policies

        if not policies:
            raise InputError("name the policies to compare, e.g. --policies threshold_greedy,lagrangian",
                             where="--policies")
        specs = parse_policies(policies)
        labels = [p.label for p in specs]
        base = baseline or labels[0]
        for flag, name in (("--baseline", base), ("--match-spend", match_spend)):
            if name is not None and name not in labels:
                raise InputError(f"{name!r} is not one of --policies ({', '.join(labels)})", where=flag)
        exp = plan_experiment("compare", read_source(scenario), specs, seeds, sets=list(sets or []))
        command = _command("compare", scenario, {"--policies": policies, "--seeds": seeds, "--baseline": baseline,
                                                 "--match-spend": match_spend, "--set": list(sets or [])})
        ex = _executor(executor, jobs, scheduler)
        after = None if match_spend is None else _match_after(exp, match_spend, ex)
        folder = _run("compare", out_dir, exp, ex, command, {"baseline": base, "match_spend": match_spend},
                      quiet, after)
        from reports.tables import read_experiment

        _print_results(folder, read_experiment(folder), base, quiet)

    _guarded(out_dir, body)


def _match_after(exp: Any, reference: str, executor: Any) -> Any:
    def after(folder: Path, results: Any) -> None:
        import pandas as pd

        from sim.experiments.folder import MATCHED_FILE, write_atomic
        from sim.experiments.matched import matched_spend

        summaries = {r.run_id: _summary(folder, r) for r in exp.runs}
        rows = matched_spend(exp.runs, summaries, reference, executor)
        write_atomic(folder / MATCHED_FILE, lambda p: pd.DataFrame(rows).to_parquet(p, index=False))

    return after


def _summary(folder: Path, spec: Any) -> dict[str, Any]:
    import json

    data: dict[str, Any] = json.loads((folder / spec.run_dir / "summary.json").read_text(encoding="utf-8"))
    return data


def sweep(
    scenario: ScenarioArg = None,
    grid: Annotated[list[str] | None, typer.Option("--grid", help="PATH=v1,v2,... or PATH=start:stop:step "
                                                    "(stop included); repeat for a full grid.")] = None,
    policies: Annotated[str | None, typer.Option(help="Policies to run at every grid point (default: the "
                                                       "scenario's own, with its parameters).")] = None,
    seeds: Annotated[int, typer.Option(help="Seeds per grid point and policy.")] = 1,
    sets: SetsOpt = None,
    out_dir: OutOpt = None,
    jobs: JobsOpt = None,
    executor: ExecOpt = "local",
    scheduler: SchedOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Run a full grid over scenario fields × policies × seeds; resumable; one tidy results table."""
    def body() -> None:
        from sim.experiments.plan import plan_experiment, read_source
        from sim.experiments.specs import PolicySpec, parse_grid, parse_policies

        if not grid:
            raise InputError("give at least one --grid PATH=v1,v2,...", where="--grid")
        source = read_source(scenario)
        if policies:
            specs = parse_policies(policies)
        else:
            from sim.config.load import parse_scenario

            sc = parse_scenario(source.text, file=source.file, base_dir=source.base_dir, overrides=list(sets or []))
            specs = [PolicySpec(sc.router.policy, sc.router.policy, dict(sc.router.params))]
        exp = plan_experiment("sweep", source, specs, seeds, parse_grid(list(grid)), sets=list(sets or []))
        command = _command("sweep", scenario, {"--grid": list(grid), "--policies": policies, "--seeds": seeds,
                                               "--set": list(sets or [])})
        folder = _run("sweep", out_dir, exp, _executor(executor, jobs, scheduler), command,
                      {"baseline": None, "match_spend": None}, quiet)
        from reports.tables import read_experiment

        _print_results(folder, read_experiment(folder), None, quiet)

    _guarded(out_dir, body)


def report(folder: Annotated[Path, typer.Argument(help="A run, compare or sweep folder.")]) -> None:
    """Write report.html (self-contained), report.md and CSVs for a run, compare or sweep folder."""
    from reports.build import write_report
    from reports.errors import ReportError

    try:
        written = write_report(folder)
    except ReportError as exc:
        fail(exc)
    out.print(escape(", ".join(str(p) for p in written)), highlight=False)


def register(app: typer.Typer) -> None:
    """Add the experiment commands to the ``llmsim`` app."""
    app.command()(compare)
    app.command()(sweep)
    app.command()(report)
