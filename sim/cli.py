"""The ``llmsim`` command line.

Every user error (scenario, data files, arguments) ends as one message on stderr and exit code 2, with
no traceback and no partial output; see :class:`sim.errors.InputError`.
"""

from __future__ import annotations

import sys
import time
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from policies import PolicyError, available_policies, policy_class, policy_parameters
from reports.table import summary_rows
from sim import __version__
from sim.errors import InputError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="llmsim: simulate multi-LLM serving clusters with cost-, capacity- and quality-aware routing.",
)
err = Console(stderr=True)
out = Console()

DEFAULT_SCENARIO = "quickstart.yaml"


def _fail(exc: BaseException) -> None:
    err.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(2)


def _default_scenario_text() -> tuple[str, str]:
    ref = resources.files("sim").joinpath("scenarios", DEFAULT_SCENARIO)
    return ref.read_text(encoding="utf-8"), f"<embedded {DEFAULT_SCENARIO}>"


def _load(scenario: Path | None, sets: list[str]) -> Any:
    from sim.config.load import parse_scenario, read_scenario_text

    if scenario is None:
        text, name = _default_scenario_text()
        base = None
    else:
        text = read_scenario_text(scenario)
        name, base = str(scenario), scenario.resolve().parent
    return parse_scenario(text, file=name, base_dir=base, overrides=sets)


class _LazyProgress:
    """A progress bar that appears only if the run is still going after ``delay_s`` (and on a terminal)."""

    def __init__(self, label: str, delay_s: float = 2.0, enabled: bool = True) -> None:
        self.t0 = time.perf_counter()
        self.delay_s = delay_s
        self.enabled = enabled and err.is_terminal
        self.label = label
        self.bar: Any = None
        self.task: Any = None

    def __call__(self, frac: float) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            if time.perf_counter() - self.t0 < self.delay_s:
                return
            from rich.progress import BarColumn, Progress, TimeElapsedColumn

            self.bar = Progress("[progress.description]{task.description}", BarColumn(),
                                "{task.percentage:>3.0f}%", TimeElapsedColumn(), console=err, transient=True)
            self.bar.start()
            self.task = self.bar.add_task(self.label, total=1.0)
        self.bar.update(self.task, completed=frac)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


@app.command()
def run(
    scenario: Annotated[
        Path | None, typer.Argument(help="Scenario YAML (default: the embedded quickstart scenario).")
    ] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Run folder (default: runs/<name>-<policy>-s<seed>).")] = None,
    policy: Annotated[
        str | None,
        typer.Option(help="Override router.policy (its router.params are reset; add them with --set)."),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Override the scenario seed.")] = None,
    sets: Annotated[list[str] | None, typer.Option("--set", help="Override a field: KEY.PATH=VALUE (YAML value).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the run folder path.")] = False,
) -> None:
    """Simulate a scenario, write its run folder and print a summary table."""
    from sim.output import check_out_dir, write_run
    from sim.runner import run as run_scenario

    overrides = []
    if policy is not None:
        overrides += [f"router.policy={policy}", "router.params={}"]
    overrides += list(sets or [])
    if seed is not None:
        overrides.append(f"seed={seed}")
    try:
        sc = _load(scenario, overrides)
        folder = out_dir or Path("runs") / f"{sc.name}-{sc.router.policy}-s{sc.seed}"
        check_out_dir(folder)
        bar = _LazyProgress(f"simulating {sc.name}", enabled=not quiet)
        t0 = time.perf_counter()
        try:
            result = run_scenario(sc, progress=bar)
        finally:
            bar.close()
        wall = time.perf_counter() - t0
        info = {"llmsim_version": __version__, "wall_time_s": wall, "python": sys.version.split()[0],
                "requests_per_wall_s": result.summary["queries"]["arrived"] / max(wall, 1e-9)}
        written = write_run(folder, result, sc.model_dump(mode="json"), info,
                            requests=sc.outputs.requests, batches=sc.outputs.batches)
    except InputError as exc:
        if exc.file is None:  # raised while running: name the scenario it came from
            exc = type(exc)(exc.detail, file=str(scenario or "<embedded quickstart.yaml>"), where=exc.where)
        _fail(exc)
        return
    except PolicyError as exc:
        _fail(exc)
        return
    if quiet:
        out.print(str(folder))
        return
    table = Table(title=f"llmsim run — {folder}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for k, v in summary_rows(result.summary):
        table.add_row(k, v)
    out.print(table)
    files = ", ".join(sorted(p.name for p in written.iterdir()))
    out.print(f"wrote {folder}/ ({files}) in {wall:.1f} s", highlight=False)


@app.command()
def validate(
    scenario: Annotated[Path, typer.Argument(help="Scenario YAML to check.")],
) -> None:
    """Check a scenario file without running it."""
    try:
        sc = _load(scenario, [])
    except (InputError, PolicyError) as exc:
        _fail(exc)
        return
    out.print(f"{scenario}: ok ({sc.name}: {len(sc.models)} models, {len(sc.deployments)} deployments, "
              f"policy {sc.router.policy})")


@app.command()
def policies() -> None:
    """List the routing policies and their parameters."""
    table = Table("policy", "kind", "parameters", "description")
    for name in available_policies():
        cls = policy_class(name)
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        params = [p for p in policy_parameters(name) if p != "rng"]  # rng comes from the scenario seed
        table.add_row(name, "batch" if cls.batch_level else "per-query", ", ".join(params) or "—", doc)
    out.print(table)


@app.command()
def schema() -> None:
    """Print the reference of every scenario field (Markdown)."""
    from sim.config.reference import reference_markdown

    out.print(reference_markdown(), highlight=False, markup=False, soft_wrap=True)


@app.command()
def calibrate(
    csv: Annotated[Path, typer.Argument(help="GPU measurement table (Splitwise, LLM-Inference-Bench or canonical).")],
) -> None:
    """Fit latency-profile coefficients from a measurement table and print the fit error."""
    try:
        from sim.profiles import calibrate_file, format_report

        out.print(format_report(calibrate_file(csv)), highlight=False, markup=False, soft_wrap=True)
    except InputError as exc:
        _fail(exc)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
