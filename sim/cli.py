"""The ``llmsim`` command line.

Every user error (scenario, data files, arguments) ends as one message on stderr and exit code 2, with
no traceback and no partial output; see :class:`sim.errors.InputError`. Input warnings
(:class:`sim.errors.InputWarning`) become one ``warning:`` line each on stderr; other libraries'
warnings are silenced during a run. SIGINT and SIGTERM during ``run`` remove everything the run
started to write and exit with 130 / 143. Anything unexpected ends as one "internal error" line, exit 1.
Every user-supplied string (names, paths, messages) is printed as plain text, never as Rich markup.
"""

from __future__ import annotations

import importlib
import re
import sys
import time
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.text import Text

from policies import PolicyError, available_policies, policy_class, policy_parameters
from sim import __version__, startup
from sim.console import err, nonempty_path, out
from sim.console import fail as _fail
from sim.console import say as _say
from sim.console import warnings_to_stderr as _warnings_to_stderr
from sim.engine import compiled as engine_compiled
from sim.errors import InputError
from sim.experiments.cli import register as register_experiments
from sim.planning.cli import register as register_plan

if TYPE_CHECKING:
    from sim.config.schema import Scenario

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="llmsim: simulate multi-LLM serving clusters with cost-, capacity- and quality-aware routing.",
)

DEFAULT_SCENARIO = "quickstart.yaml"
# The click that typer runs on (recent typer versions vendor their own copy as typer._click).
_click_exc: Any = importlib.import_module(typer.BadParameter.__module__)


def _user_error(exc: Exception, scenario: Path | None) -> Exception:
    """The error to show: an InputError names its scenario; an OSError (a file the run had to read or
    write that the system refused) names its file."""
    if isinstance(exc, InputError):
        return _named(exc, scenario)
    if isinstance(exc, OSError):
        from sim.output import shown

        return InputError(exc.strerror or str(exc), file=shown(exc.filename) if exc.filename else None)
    return exc


def _scenario_name(scenario: Path | None) -> str:
    return str(scenario or f"<embedded {DEFAULT_SCENARIO}>")


def _named(exc: InputError, scenario: Path | None) -> InputError:
    """An error raised while building or running (no file named) names the scenario it came from."""
    if exc.file is not None:
        return exc
    return type(exc)(exc.detail, file=_scenario_name(scenario), where=exc.where)


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
    sc = parse_scenario(text, file=name, base_dir=base, overrides=sets)
    startup.resume()  # inputs loaded: start-up is over (see sim.startup)
    return sc


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


def _default_folder(sc: Any) -> Path:
    """runs/<name>-<policy>-s<seed>, with anything but letters, digits and ``.+-_`` replaced: a scenario
    name is free text and must not add folder levels (``a/b``) or hidden or over-long names."""
    name = re.sub(r"[^\w.+-]", "_", f"{sc.name}-{sc.router.policy}-s{sc.seed}").lstrip(".") or "run"
    return Path("runs") / name[:200]


def _check_arguments(out_dir: str | None, policy: str | None) -> None:
    if out_dir is not None and not out_dir.strip():
        raise InputError("expected a folder path, got an empty string", where="--out")
    if policy is not None and not policy.strip():
        raise InputError("expected a policy name (see `llmsim policies`), got an empty string", where="--policy")


def _simulate_and_write(scenario: Path | None, out_dir: str | None, overrides: list[str], *,
                        overwrite: bool, quiet: bool) -> tuple[Path, dict[str, Any], float]:
    """Load, simulate and write the run folder, holding the folder's lock throughout."""
    from sim.config.checks import resolved_config
    from sim.output import GUARD, reserve_out_dir, write_run
    from sim.runner import simulate

    sc = _load(scenario, overrides)
    folder = Path(out_dir) if out_dir is not None else _default_folder(sc)
    with reserve_out_dir(folder, overwrite=overwrite):
        bar = _LazyProgress(f"simulating {sc.name}", enabled=not quiet)
        t0 = time.perf_counter()
        def progress(frac: float) -> None:
            GUARD.check()  # a signal whose raise was lost inside a callback (see SignalGuard)
            bar(frac)

        try:
            result = simulate(sc, progress=progress)
        finally:
            bar.close()
        wall = time.perf_counter() - t0
        info = {"llmsim_version": __version__, "wall_time_s": wall, "python": sys.version.split()[0],
                "engine_compiled": engine_compiled(),  # wall times of the two builds are ~1.7x apart
                "requests_per_wall_s": result.summary["queries"]["arrived"] / max(wall, 1e-9)}
        write_run(folder, result, resolved_config(sc), info, requests=sc.outputs.requests,
                  batches=sc.outputs.batches, overwrite=overwrite)
    return folder, result.summary, wall


def _interrupted(signum: int, written: Path | None = None) -> NoReturn:
    what = "nothing was written" if written is None else f"the run folder {written} was written completely"
    err.print(f"interrupted: {what}", markup=False, highlight=False, emoji=False, soft_wrap=True)
    raise typer.Exit(128 + signum)


def _print_summary(folder: Path, summary: dict[str, Any], wall: float) -> None:
    from rich.table import Table

    from reports.table import summary_rows
    from sim.output import RUN_FILES

    table = Table(title=Text(f"llmsim run — {folder}"), show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for k, v in summary_rows(summary):
        table.add_row(Text(k), Text(v))
    out.print(table)
    files = ", ".join(sorted(p.name for p in folder.iterdir() if p.name in RUN_FILES))
    out.print(f"wrote {folder}/ ({files}) in {wall:.1f} s", markup=False, highlight=False, emoji=False,
              soft_wrap=True)


@app.command()
def run(
    scenario: Annotated[
        Path | None, typer.Argument(parser=nonempty_path, help="Scenario YAML (default: the embedded quickstart scenario).")
    ] = None,
    out_dir: Annotated[str | None, typer.Option("--out", help="Run folder (default: runs/<name>-<policy>-s<seed>).")] = None,
    policy: Annotated[
        str | None,
        typer.Option(help="Override router.policy (its router.params are reset; add them with --set)."),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Override the scenario seed.")] = None,
    sets: Annotated[list[str] | None, typer.Option("--set", help="Override a field: KEY.PATH=VALUE (YAML value).")] = None,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace the run files of an existing run folder (other files in it are kept).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the run folder path.")] = False,
) -> None:
    """Simulate a scenario, write its run folder and print a summary table."""
    from sim.output import GUARD, Interrupted

    overrides = _overrides(policy, seed, sets)
    try:
        _check_arguments(out_dir, policy)
    except InputError as exc:
        _fail(exc)
    GUARD.install()
    try:
        with _warnings_to_stderr(_scenario_name(scenario)):
            folder, summary, wall = _simulate_and_write(scenario, out_dir, overrides, overwrite=overwrite,
                                                        quiet=quiet)
    except Interrupted as exc:
        _interrupted(exc.signum)
    except (InputError, PolicyError, OSError) as exc:
        if GUARD.pending is not None:  # a signal arrived while cleaning up after the error
            _interrupted(GUARD.pending)
        _fail(_user_error(exc, scenario))
    finally:
        GUARD.restore()
    if GUARD.pending is not None:  # arrived while the finished files were moved into place
        _interrupted(GUARD.pending, written=folder)
    if quiet:
        typer.echo(str(folder))
        return
    _print_summary(folder, summary, wall)


def _overrides(policy: str | None, seed: int | None, sets: list[str] | None) -> list[str]:
    """``--policy`` / ``--set`` / ``--seed`` as the loader's overrides (a new policy starts without the
    scenario's parameters)."""
    from sim.config.load import Override

    overrides: list[str] = ([Override(f"router.policy={policy}", "--policy"), Override("router.params={}", "--policy")]
                            if policy is not None else [])
    return overrides + list(sets or []) + ([Override(f"seed={seed}", "--seed")] if seed is not None else [])


@app.command()
def validate(
    scenario: Annotated[Path, typer.Argument(parser=nonempty_path, help="Scenario YAML to check.")],
    policy: Annotated[str | None, typer.Option(help="As for run: override router.policy.")] = None,
    seed: Annotated[int | None, typer.Option(help="As for run: override the scenario seed.")] = None,
    sets: Annotated[list[str] | None, typer.Option("--set", help="As for run: KEY.PATH=VALUE.")] = None,
) -> None:
    """Check a scenario file without running it: every check `run` makes before simulating (schema,
    data files, trace window, workload, predictor), with the same overrides."""
    from sim.runner import prepare

    try:
        _check_arguments(None, policy)
        with _warnings_to_stderr(_scenario_name(scenario)):
            sc = _load(scenario, _overrides(policy, seed, sets))
            prepare(sc)
    except (InputError, OSError) as exc:  # (OSError: a file it had to read, named as run names it)
        _fail(_user_error(exc, scenario))
    except PolicyError as exc:
        _fail(exc)
    out.print(f"{scenario}: ok ({sc.name}: {len(sc.models)} models, {len(sc.deployments)} deployments, "
              f"policy {sc.router.policy})", markup=False, highlight=False, emoji=False, soft_wrap=True)
    for line in _kv_lines(sc):
        out.print(line, markup=False, highlight=False, emoji=False, soft_wrap=True)


def _kv_lines(sc: Scenario) -> list[str]:
    """Each deployment's KV cache per instance, as an engine would report it (vLLM's '# GPU blocks')."""
    from sim.config.checks import activation_reserve_gib, kv_capacity_tokens, scheduler_for

    gpus = {g.name: g for g in sc.gpus}
    models = {m.name: m for m in sc.models}
    lines = []
    for k, d in enumerate(sc.deployments):
        model = models[d.model]
        kv = kv_capacity_tokens(model, gpus[d.gpu], d)
        sched = scheduler_for(d, sc)
        blocks = f" = {sched.blocks(kv):,} blocks of {sched.block_size}" if sched.kind == "paged" else ""
        lines.append(f"  deployments[{k}] {d.model} on {d.tp}x {d.gpu}: {d.scheduler}, {kv:,} KV tokens{blocks} "
                     f"per instance (activation reserve {activation_reserve_gib(model, d):g} GiB per GPU)")
    return lines


@app.command()
def policies() -> None:
    """List the routing policies and their parameters."""
    from rich.table import Table

    table = Table("policy", "kind", "parameters", "description")
    for name in available_policies():
        cls = policy_class(name)
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        params = [p for p in policy_parameters(name) if p != "rng"]  # rng comes from the scenario seed
        table.add_row(Text(name), "batch" if cls.batch_level else "per-query", Text(", ".join(params) or "—"),
                      Text(doc))
    out.print(table)


@app.command()
def schema() -> None:
    """Print the reference of every scenario field (Markdown)."""
    from sim.config.reference import reference_markdown

    out.print(reference_markdown(), highlight=False, markup=False, soft_wrap=True, end="")


@app.command()
def calibrate(
    csv: Annotated[Path, typer.Argument(parser=nonempty_path, help="GPU measurement table (Splitwise, LLM-Inference-Bench, canonical, iteration or mixed_step; see sim/profiles/tables.py).")],
) -> None:
    """Fit latency-profile coefficients from a measurement table, print the fit error, then the error of
    the fitted profiles run through the engine on the table's measured batches."""
    try:
        from sim.profiles import calibrate_file, format_report
        from sim.profiles.fidelity import calibration_fidelity, format_calibration_fidelity

        startup.resume()  # start-up is over before reading and simulating the table (sim.startup)
        with _warnings_to_stderr():
            report = calibrate_file(csv)
        out.print(format_report(report), highlight=False, markup=False, soft_wrap=True)
        check = format_calibration_fidelity(calibration_fidelity(report))
        out.print(check, highlight=False, markup=False, soft_wrap=True)
    except InputError as exc:
        _fail(exc)


register_experiments(app)  # compare, sweep, whatif, report (sim/experiments/cli.py)
register_plan(app)  # plan (sim/planning/cli.py)


def _usage_error(exc: Any) -> NoReturn:
    code = int(exc.exit_code)
    if type(exc).__name__ == "NoArgsIsHelpError":  # plain `llmsim`: show the help, as click would
        app(args=["--help"], prog_name="llmsim", standalone_mode=False)
        sys.exit(code)
    command = exc.ctx.command_path if exc.ctx is not None else "llmsim"
    _say("error:", "bold red", f"{exc.format_message()} (see '{command} --help')")
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """The console script: every failure ends as one line on stderr and an exit code, never a traceback
    (usage errors 2, interrupted 130/143, unexpected errors 1 as "internal error")."""
    from sim.output import Interrupted

    try:
        code = app(args=argv, prog_name="llmsim", standalone_mode=False)
    except _click_exc.UsageError as exc:
        _usage_error(exc)
    except _click_exc.ClickException as exc:
        _say("error:", "bold red", exc.format_message())
        sys.exit(exc.exit_code)
    except InputError as exc:  # a command that let one through: still a user error
        _say("error:", "bold red", str(exc))
        sys.exit(2)
    except typer.Abort:
        _say("error:", "bold red", "aborted")
        sys.exit(1)
    except Interrupted as exc:  # a signal that arrived while the run command reported another error
        _interrupted_exit(exc.signum)
    except Exception as exc:  # last resort: a bug, not a user error
        detail = f"{type(exc).__name__}: {exc}".strip()
        _say("internal error:", "bold red", f"{detail} (please report this with the command you ran)")
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


def _interrupted_exit(signum: int) -> NoReturn:
    err.print("interrupted: nothing was written", markup=False, highlight=False, soft_wrap=True)
    sys.exit(128 + signum)


if __name__ == "__main__":
    main()
