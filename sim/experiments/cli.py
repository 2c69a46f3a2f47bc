"""``llmsim compare``, ``llmsim sweep``, ``llmsim whatif`` and ``llmsim report``: thin commands over :mod:`sim.experiments`
and :mod:`reports` (load and validate everything, run, write the folder and its report, print a table).
Registered on the main app by :func:`register`."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import typer
from rich.markup import escape
from rich.text import Text

from policies import PolicyError
from sim import startup
from sim.console import err, fail, nonempty_path, out, say_plain, warnings_to_stderr
from sim.errors import InputError, read_error

if TYPE_CHECKING:
    from rich.table import Table  # imported where a table is printed (start-up, issue 14)

OutOpt = Annotated[Path | None, typer.Option("--out", parser=nonempty_path,
                                             help="Experiment folder (default: runs/<name>-<kind>).")]
ScenarioArg = Annotated[Path | None, typer.Argument(parser=nonempty_path,
                                                    help="Scenario YAML (default: the embedded quickstart).")]
SetsOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a field of every run: KEY.PATH=VALUE.")]
JobsOpt = Annotated[int | None, typer.Option("--jobs", help="Worker processes (default: the core count).")]
ExecOpt = Annotated[str, typer.Option("--executor", help="local (worker processes) or dask.")]
SchedOpt = Annotated[str | None, typer.Option("--scheduler", help="Dask scheduler address tcp://HOST:PORT "
                                                                 "(implies --executor dask).")]
AtSpendOpt = Annotated[float | None, typer.Option("--at-spend", help="Report each policy's accuracy at "
                                                 "this total token spend (USD), interpolated along its cost–accuracy curve.")]
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


class _Progress:
    """A bar with ETA on a terminal (nothing when piped or quiet). No refresh thread (auto_refresh=False):
    worker processes are forked, and a fork must not happen while another thread holds a lock; the bar
    is redrawn whenever a run finishes."""

    def __init__(self, label: str, enabled: bool) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress("{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            "eta", TimeRemainingColumn(), console=err, transient=True, auto_refresh=False,
                            disable=not (enabled and err.is_terminal))
        self.task = self.bar.add_task(escape(label), total=None)

    def start(self, total: int) -> None:
        self.bar.update(self.task, total=total)
        self.bar.start()

    def done(self, finished: int) -> None:
        from sim.output import GUARD

        GUARD.check()  # a signal whose raise was lost inside a callback (see SignalGuard)
        self.bar.update(self.task, completed=finished)
        self.bar.refresh()

    def stop(self) -> None:
        self.bar.stop()


def _command(kind: str, scenario: Path | None, options: dict[str, Any]) -> str:
    parts = ["llmsim", kind] + ([str(scenario)] if scenario else [])
    for flag, value in options.items():
        for v in value if isinstance(value, list) else [value]:
            if v is not None and v is not False:
                parts += [flag] if v is True else [flag, str(v)]
    return shlex.join(parts)


@dataclass
class _Job:
    """One compare or sweep as the command line asked for it."""

    exp: Any  # sim.experiments.plan.Experiment
    executor: Any
    command: str
    out_dir: Path | None
    quiet: bool
    baseline: str | None = None
    match_spend: str | None = None
    at_spend: float | None = None

    @property
    def folder(self) -> Path:
        """The folder as it resolves (``missing/..`` is ``.``: the OS would write there), still relative."""
        return Path(os.path.normpath(self.out_dir or Path("runs") / f"{self.exp.scenario_name}-{self.exp.kind}"))


def _run_job(job: _Job) -> None:
    """Run or resume the experiment, add matched spend, write the report, print the tables."""
    from reports.build import write_report
    from sim.experiments.folder import run_experiment

    startup.resume()  # inputs loaded: start-up is over (see sim.startup)
    extra = {"baseline": job.baseline, "match_spend": job.match_spend, "at_spend": job.at_spend}
    progress = _Progress(f"{job.exp.kind} {job.exp.scenario_name}", not job.quiet)
    with no_partial_output(job.folder, job.exp.runs):
        try:
            try:
                results = run_experiment(job.folder, job.exp, job.executor, command=job.command, extra=extra,
                                         on_start=progress.start, on_done=progress.done)
            finally:
                progress.stop()
            matched = _matched(job, results) if job.match_spend else None
        finally:
            job.executor.close()
        write_report(job.folder)
    _print_results(job, results, matched)


@contextlib.contextmanager
def no_partial_output(folder: Path, runs: list[Any]) -> Iterator[None]:
    """Bad input found only while running (a trace or dataset read by the workers) leaves no partial
    output: in a folder this command created, what it wrote is removed — the experiment's own files and
    the run folders of ``runs`` (only their run files), then the folders it created, each only if empty.
    Nothing else is touched, whoever wrote it meanwhile. A resumed folder keeps what it had and the runs
    that finished (valid results of the same experiment). A file-system error or an interruption keeps
    everything, so the finished runs can be resumed."""
    fresh = _new_root(folder)
    try:
        yield
    except (InputError, PolicyError):
        if fresh is not None:
            _remove_written(Path(os.path.abspath(folder)), fresh, [r.run_dir for r in runs])
        raise


def _remove_written(folder: Path, top: Path, run_dirs: list[str]) -> None:
    """Remove the files an experiment writes in ``folder`` and the run files of its ``run_dirs``; then the
    folders from ``folder`` up to ``top`` (the outermost one this command created) while they are empty."""
    from sim.experiments.folder import EXPERIMENT_FILES
    from sim.output import RUN_FILES, is_run_folder, remove_empty

    def unlink(path: Path) -> None:
        if path.is_file() or path.is_symlink():
            with contextlib.suppress(OSError):
                path.unlink()

    for rel in run_dirs:
        run = folder / rel
        if run.is_dir() and not run.is_symlink() and is_run_folder(run):
            for name in RUN_FILES:
                unlink(run / name)
            with contextlib.suppress(OSError):
                run.rmdir()
    for name in EXPERIMENT_FILES:
        unlink(folder / name)
    created = [*reversed(folder.parents[: len(folder.parts) - len(top.parts)]), folder, folder / "runs"]
    remove_empty(created)  # someone else's files keep their folders


def _new_root(folder: Path) -> Path | None:
    """The outermost folder on ``folder``'s path that does not exist yet (None if ``folder`` exists): the
    command creates it and what is below, so a run that fails on bad input removes those while empty."""
    path = Path(os.path.abspath(folder))
    if path.exists() or path.is_symlink():
        return None
    while not (path.parent.exists() or path.parent.is_symlink()) and path.parent != path.parent.parent:
        path = path.parent
    return path


def _matched(job: _Job, results: Any) -> Any:
    """Matched-spend rows (written to the folder): each policy's knob bisected to the reference's spend."""
    import pandas as pd

    from reports.tables import MATCHED_SPEND_FILE
    from sim.experiments.folder import write_atomic
    from sim.experiments.matched import matched_spend

    rows = pd.DataFrame(matched_spend(job.exp.runs, results, str(job.match_spend), job.executor))
    write_atomic(job.folder / MATCHED_SPEND_FILE, lambda p: rows.to_parquet(p, index=False))
    return rows


def _interrupted(signum: int, folder: Path) -> None:
    say_plain(f"interrupted: the runs that had finished are kept in {folder}; rerun the same command to "
              "resume")
    raise typer.Exit(128 + signum)


CONSOLE_METRICS = {"accuracy": "accuracy", "cost.total_usd": "token cost", "latency_s.ttft.p99": "TTFT p99",
                   "latency_s.tbt.p99": "TBT p99",
                   "budget.batches_over_budget_realised": "batches over budget",
                   "slo.attainment_e2e": "e2e SLO attained", "slo.attainment_ttft": "TTFT SLO attained"}
#: Columns shown only when some run has a value (an SLO is set): a column of n/a says nothing.
OPTIONAL_CONSOLE_METRICS = frozenset({"slo.attainment_e2e", "slo.attainment_ttft"})


def console_metrics(results: Any) -> dict[str, str]:
    """:data:`CONSOLE_METRICS` without the optional ones no run has a value for."""
    import pandas as pd

    def present(m: str) -> bool:
        return m in results.columns and bool(pd.to_numeric(results[m], errors="coerce").notna().any())

    return {m: label for m, label in CONSOLE_METRICS.items() if m not in OPTIONAL_CONSOLE_METRICS or present(m)}


def _pm(metric: str, mean: float, half: float, signed: bool = False) -> str:
    """``mean ± half-width`` of the 95 % interval, in the metric's unit (accuracy widths in points)."""
    from reports.build import fmt

    text = fmt(metric, mean, signed)
    if not np.isfinite(half):
        return text
    return f"{text} ± {fmt(metric, half, signed=metric == 'accuracy').lstrip('+')}"


def _configs(results: Any) -> Any:
    """A ``config`` column: the policy label, plus the grid point in ``--grid`` order."""
    params = [c for c in results.columns if c.startswith("param.")]
    if not params:
        return results.assign(config=results["policy"])
    point = results[params].astype(str).apply(lambda r: "".join(f" {k[6:]}={v}" for k, v in r.items()), axis=1)
    return results.assign(config=results["policy"].astype(str) + point)


def _print_results(job: _Job, results: Any, matched: Any) -> None:
    """Mean ± 95 % CI per configuration of the headline metrics, paired accuracy difference against the
    baseline (compare), the oracle and best single model, and matched-spend rows when asked for."""
    if job.quiet:
        out.print(Text(str(job.folder)), soft_wrap=True)
        return
    from rich.table import Table

    from reports.stats import compare_table

    results = _configs(results)
    metrics = console_metrics(results)
    table = compare_table(results, list(metrics), job.baseline, group="config")
    heads = ["policy", *metrics.values()] + ([f"Δ accuracy vs {job.baseline}"] if job.baseline else [])
    grid = Table(*heads, title=Text(f"llmsim {job.exp.kind} — {job.folder} (mean ± 95 % CI over seeds)"),
                 title_justify="left")
    for config, rows in table.groupby("config", sort=False):
        cells = {r.metric: _pm(r.metric, r.mean, r.ci_hi - r.mean) for r in rows.itertuples()}
        acc = rows[rows["metric"] == "accuracy"].iloc[0]
        diff = [_pm("accuracy", acc.diff_vs_baseline, acc.diff_ci_hi - acc.diff_vs_baseline, True)]
        grid.add_row(Text(str(config)), *(Text(cells.get(m, "n/a")) for m in metrics),
                     *(map(Text, diff) if job.baseline else []))
    _reference_rows(grid, results, len(heads))
    out.print(grid)
    if matched is not None:
        _print_matched(job, matched)
    out.print(Text(f"report: {job.folder / 'report.html'} (and report.md, results.csv)"), soft_wrap=True)


def _print_matched(job: _Job, matched: Any) -> None:
    """Each policy at the reference's spend: its knob, mean spend, accuracy ± CI, paired Δ vs reference."""
    from rich.table import Table

    from reports.build import fmt
    from reports.stats import compare_table

    table = compare_table(matched, ["spend_usd", "accuracy"], job.match_spend, group="policy")
    grid = Table("policy", "knob", "spend", "accuracy", f"Δ accuracy vs {job.match_spend}", "reached",
                 title=Text(f"at {job.match_spend}'s spend"), title_justify="left")
    for policy, rows in matched.groupby("policy", sort=False):
        stats = table[table["policy"] == policy].set_index("metric")
        knob = rows["knob_value"].iloc[0]
        knob_text = "—" if knob is None or not np.isfinite(knob) else f"{rows['knob'].iloc[0]}={knob:.4g}"
        acc, spend = stats.loc["accuracy"], stats.loc["spend_usd"]
        grid.add_row(Text(str(policy)), Text(knob_text), Text(fmt("cost.total_usd", spend["mean"])),
                     Text(_pm("accuracy", acc["mean"], acc["ci_hi"] - acc["mean"])),
                     Text(_pm("accuracy", acc["diff_vs_baseline"], acc["diff_ci_hi"] - acc["diff_vs_baseline"], True)),
                     Text("yes" if rows["reached"].all() else str(rows["note"].iloc[0])))
    out.print(grid)


REFERENCES = {"oracle": ("references.oracle_accuracy", None),
              "best single model": ("references.best_single_model_accuracy",
                                    "references.best_single_model_cost_usd")}


def _reference_rows(grid: Table, results: Any, width: int) -> None:
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
        cells = [label, _pm("accuracy", acc[0], acc[2] - acc[0]),
                 _pm("cost.total_usd", cost[0], cost[2] - cost[0]) if cost else "—"]
        grid.add_row(*map(Text, cells + [""] * (width - len(cells))), style="dim")


def _guarded(body: Callable[[], None], folder: Callable[[], Path | None], scenario: Path | None = None) -> None:
    """Run ``body`` with input warnings as ``warning:`` lines; bad input → one message, exit 2; Ctrl-C →
    exit 130, SIGTERM → 143, finished runs kept (the same signal guard as ``llmsim run``)."""
    from reports.errors import ReportError
    from sim.output import GUARD, Interrupted

    GUARD.install()
    try:
        with warnings_to_stderr(scenario):  # (a data-layer warning then names the scenario file)
            body()
    except (InputError, PolicyError, ReportError) as exc:
        fail(exc)
    except OSError as exc:  # the experiment folder could not be written (a directory in the way, disk full)
        name = f" ({exc.filename})" if exc.filename else ""
        fail(InputError(f"cannot write the experiment folder: {exc.strerror or exc}{name}", file=folder()))
    except (Interrupted, KeyboardInterrupt) as exc:
        where = folder()
        if where is None:
            raise
        _interrupted(getattr(exc, "signum", signal.SIGINT), where)
    finally:
        GUARD.restore()


def _check_sets_keep_policies(sets: list[str] | None) -> None:
    """``--set router.policy`` / ``router.params`` would silently replace every ``--policies`` entry (the
    runs would all be one policy, or all lose their inline parameters): refuse it and say where they go.
    (``router.params.KEY`` stays allowed: one parameter given to every policy.)"""
    for item in sets or []:
        key = item.split("=", 1)[0].strip()
        if key in ("router", "router.policy", "router.params"):
            raise InputError(f"{key} would override every policy of --policies; give the policies and their "
                             "parameters there (NAME:key=value)", where=f"--set {key}")


def _spend(value: float | None) -> float | None:
    if value is not None and not (np.isfinite(value) and 0 <= value <= 1e12):
        raise InputError(f"expected a spend in USD between 0 and 1e12, got {value}", where="--at-spend")
    return value


def _check_names(labels: list[str], baseline: str | None, match_spend: str | None) -> None:
    for flag, name in (("--baseline", baseline), ("--match-spend", match_spend)):
        if name is not None and name not in labels:
            raise InputError(f"{name!r} is not one of --policies ({', '.join(labels)})", where=flag)
    if match_spend is not None and len(labels) < 2:
        raise InputError("matching spend needs at least one other policy than the reference",
                         where="--match-spend")


def compare(
    scenario: ScenarioArg = None,
    policies: Annotated[str, typer.Option(help="Comma-separated policies, parameters inline: "
                                                "lagrangian,utility_greedy:lam=31.5,robust:kappa=1:gamma=2. "
                                                "Each runs with its inline parameters only: the scenario's "
                                                "router.params are not carried over.")] = "",
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
    job: _Job | None = None

    def body() -> None:
        nonlocal job
        from sim.experiments.plan import plan_experiment, read_source
        from sim.experiments.specs import parse_policies

        if not policies:
            raise InputError("name the policies to compare, e.g. --policies threshold_greedy,lagrangian",
                             where="--policies")
        specs = parse_policies(policies)
        _check_sets_keep_policies(sets)
        _check_names([p.label for p in specs], baseline, match_spend)
        exp = plan_experiment("compare", read_source(scenario), specs, seeds, sets=list(sets or []))
        command = _command("compare", scenario, {"--policies": policies, "--seeds": seeds, "--baseline": baseline,
                                                 "--match-spend": match_spend, "--set": list(sets or [])})
        job = _Job(exp, _executor(executor, jobs, scheduler), command, out_dir, quiet,
                   baseline or specs[0].label, match_spend)
        _run_job(job)

    _guarded(body, lambda: job.folder if job else None, scenario)


def sweep(
    scenario: ScenarioArg = None,
    grid: Annotated[list[str] | None, typer.Option("--grid", help="PATH=v1,v2,... or PATH=start:stop:step "
                                                    "(stop included); repeat for a full grid.")] = None,
    policies: Annotated[str | None, typer.Option(help="Policies to run at every grid point (default: the "
                                                       "scenario's own, with its parameters).")] = None,
    seeds: Annotated[int, typer.Option(help="Seeds per grid point and policy.")] = 1,
    at_spend: AtSpendOpt = None,
    sets: SetsOpt = None,
    out_dir: OutOpt = None,
    jobs: JobsOpt = None,
    executor: ExecOpt = "local",
    scheduler: SchedOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Run a full grid over scenario fields × policies × seeds; resumable; one tidy results table."""
    job: _Job | None = None

    def body() -> None:
        nonlocal job
        from sim.experiments.plan import plan_experiment, read_source
        from sim.experiments.specs import parse_grid, parse_policies, scenario_policy

        if not grid:
            raise InputError("give at least one --grid PATH=v1,v2,...", where="--grid")
        source = read_source(scenario)
        specs = parse_policies(policies) if policies else [scenario_policy(source, list(sets or []))]
        if policies:
            _check_sets_keep_policies(sets)
        exp = plan_experiment("sweep", source, specs, seeds, parse_grid(list(grid)), sets=list(sets or []))
        command = _command("sweep", scenario, {"--grid": list(grid), "--policies": policies, "--seeds": seeds,
                                               "--at-spend": at_spend, "--set": list(sets or [])})
        job = _Job(exp, _executor(executor, jobs, scheduler), command, out_dir, quiet,
                   at_spend=_spend(at_spend))
        _run_job(job)

    _guarded(body, lambda: job.folder if job else None, scenario)


def whatif(
    scenario: ScenarioArg = None,
    sets: Annotated[list[str] | None, typer.Option("--set", help="A change to the scenario: KEY.PATH=VALUE; "
                                                    "repeat to change several fields at once.")] = None,
    seeds: Annotated[int, typer.Option(help="Seeds: the scenario's seed and the next N-1; both scenarios "
                                            "run on each.")] = 3,
    out_dir: OutOpt = None,
    jobs: JobsOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """The scenario against itself with every --set applied, paired by seed: deltas with 95 % CIs."""
    job: _Job | None = None

    def body() -> None:
        nonlocal job
        from sim.experiments.plan import read_source
        from sim.experiments.whatif import plan_whatif

        plan = plan_whatif(read_source(scenario), list(sets or []), seeds)
        command = _command("whatif", scenario, {"--set": list(sets or []), "--seeds": seeds})
        job = _Job(plan.exp, _executor("local", jobs, None), command,
                   out_dir or Path("runs") / f"{plan.exp.scenario_name}-whatif", quiet, baseline="baseline")
        _run_whatif(job, plan)

    _guarded(body, lambda: job.folder if job else None, scenario)


def with_progress(label: str, quiet: bool, executor: Any, body: Callable[[Any, Any], Any]) -> Any:
    """``body(on_start, on_done)`` under a progress bar; the bar stops and the executor closes however it
    ends (finished, bad input, Ctrl-C)."""
    startup.resume()  # inputs loaded: start-up is over (see sim.startup)
    progress = _Progress(label, not quiet)
    try:
        try:
            return body(progress.start, progress.done)
        finally:
            progress.stop()
    finally:
        executor.close()


def _run_whatif(job: _Job, plan: Any) -> None:
    """Run or resume the what-if (its report written), then print the paired table."""
    from rich.table import Table

    from reports.whatif import HEADERS, whatif_rows, whatif_table
    from sim.experiments.whatif import run_whatif

    with no_partial_output(job.folder, job.exp.runs):
        results = with_progress(f"whatif {job.exp.scenario_name}", job.quiet, job.executor,
                                lambda start, done: run_whatif(job.folder, plan, job.executor, command=job.command,
                                                               on_start=start, on_done=done))
    if job.quiet:
        out.print(Text(str(job.folder)), soft_wrap=True)
        return
    changes = ", ".join(plan.sets)
    grid = Table(*HEADERS, title=Text(f"llmsim whatif — {changes} — {job.folder} "
                                      f"({len(job.exp.seeds)} seeds, paired)"), title_justify="left")
    for row in whatif_rows(whatif_table(results)):
        grid.add_row(*map(Text, row))
    out.print(grid)
    out.print(Text(f"report: {job.folder / 'report.html'} (and report.md, whatif.csv, results.csv)"),
              soft_wrap=True)


def report(folder: Annotated[Path, typer.Argument(parser=nonempty_path, help="A run, compare or sweep folder.")],
           at_spend: AtSpendOpt = None) -> None:
    """Write report.html (self-contained), report.md and CSVs for a run, compare or sweep folder."""
    from reports.build import write_report
    from reports.errors import ReportError

    startup.resume()  # start-up is over before reading the folder's tables (sim.startup)
    try:
        written = write_report(folder, _spend(at_spend))
    except (ReportError, InputError) as exc:
        fail(exc)
    except OSError as exc:  # a read the report builder did not expect to fail (a folder we may not search)
        fail(read_error(exc, None if exc.filename else folder))
    out.print(Text(", ".join(str(p) for p in written)), soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add the experiment commands to the ``llmsim`` app."""
    app.command()(compare)
    app.command()(sweep)
    app.command()(whatif)
    app.command()(report)
