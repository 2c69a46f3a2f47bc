"""``llmsim plan``: a thin command over :mod:`sim.planning` (argument parsing, progress, the console table)."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from sim import startup
from sim.console import out, say_plain
from sim.errors import InputError
from sim.experiments.cli import (
    JobsOpt,
    OutOpt,
    QuietOpt,
    ScenarioArg,
    _command,
    _executor,
    _guarded,
    with_progress,
)

MAX_GPUS = 1_000_000
"""GPUs of one type an inventory may have (the scenario schema's ``gpus[].count`` limit)."""
GPUS_HELP = "GPU inventory TYPE=COUNT,... (types from the scenario's gpus; default: their counts)."
SLO_HELP = "p95 targets, e.g. e2e_p95=30s,ttft_p95=2s (default: the scenario's router.slo, else the knee rule)."


def parse_gpus(text: str | None) -> dict[str, int] | None:
    """``H100-80GB=16,A100-80GB=8`` → {name: count}; InputError naming the bad item."""
    if text is None:
        return None
    out_: dict[str, int] = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        name, sep, count = item.partition("=")
        name = name.strip()
        if not sep or not name or not re.fullmatch(r"\d{1,7}", count.strip()):
            raise InputError(f"expected TYPE=COUNT (a whole number of GPUs), got {item!r}", where="--gpus")
        if name in out_:
            raise InputError(f"{name} is given twice", where="--gpus")
        if int(count) > MAX_GPUS:
            raise InputError(f"{name}={count}: at most {MAX_GPUS:,} GPUs of a type", where="--gpus")
        out_[name] = int(count)
    if not out_:
        raise InputError("expected TYPE=COUNT,...", where="--gpus")
    return out_


def _number(value: float | None, flag: str, lo: float, hi: float) -> float | None:
    if value is not None and not (math.isfinite(value) and lo <= value <= hi):
        raise InputError(f"expected a number within [{lo:g}, {hi:g}], got {value}", where=flag)
    return value


def plan(
    scenario: ScenarioArg = None,
    gpus: Annotated[str | None, typer.Option("--gpus", help=GPUS_HELP)] = None,
    max_cost_per_hour: Annotated[float | None, typer.Option("--max-cost-per-hour", help="Cap on the GPUs' "
                                                            "$/hour.")] = None,
    slo: Annotated[str | None, typer.Option("--slo", help=SLO_HELP)] = None,
    min_accuracy: Annotated[float | None, typer.Option("--min-accuracy", help="Expected accuracy to reach (0-1): "
                                                       "the plan is then the cheapest that reaches it.")] = None,
    seeds: Annotated[int, typer.Option(help="Seeds each plan is simulated on.")] = 3,
    search_steps: Annotated[int, typer.Option("--search-steps", help="Steps of the search for the nearest "
                                              "plan meeting the SLO (0: no search).")] = 4,
    out_dir: OutOpt = None,
    jobs: JobsOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Choose instance counts per model and GPU for the inventory, then simulate the plan and two baselines."""
    folder: Path | None = None

    def body() -> None:
        nonlocal folder
        from sim.experiments.plan import read_source
        from sim.planning.plan import PlanOptions, make_plan
        from sim.planning.rate import check_slo_text
        from sim.planning.search import check_plan_folder, rate_cache_of, run_plan

        if not 0 <= search_steps <= 50:
            raise InputError(f"expected 0..50, got {search_steps}", where="--search-steps")
        opts = PlanOptions(inventory=parse_gpus(gpus),
                           max_cost_per_hour=_number(max_cost_per_hour, "--max-cost-per-hour", 0, 1e9),
                           slo=None if slo is None else check_slo_text(slo),
                           min_accuracy=_number(min_accuracy, "--min-accuracy", 0, 1), seeds=seeds,
                           search_steps=search_steps)
        executor = _executor("local", jobs, None)  # a bad --jobs is refused before any probe runs
        source = read_source(scenario)
        startup.resume()  # inputs read: start-up is over before the rate probes simulate (sim.startup)
        target = Path(os.path.normpath(out_dir or Path("runs") / f"{_name(source)}-plan"))  # 'missing/..' is '.'
        check_plan_folder(target)
        if not quiet:
            say_plain("finding each candidate deployment's sustainable rate at the SLO ...")
        the_plan = make_plan(source, opts, rate_cache=rate_cache_of(target))
        folder = target
        if not quiet:
            _print_expected(the_plan)
        command = _command("plan", scenario, {"--gpus": gpus, "--max-cost-per-hour": max_cost_per_hour,
                                              "--slo": slo, "--min-accuracy": min_accuracy, "--seeds": seeds,
                                              "--search-steps": search_steps})
        results = with_progress(f"plan {the_plan.exp.scenario_name}", quiet, executor,
                                lambda start, done: run_plan(target, the_plan, executor, command=command,
                                                             on_start=start, on_done=done))
        _print(the_plan, results, target, quiet)

    _guarded(body, lambda: folder)


def _name(source: Any) -> str:
    from sim.config.load import parse_scenario

    return parse_scenario(source.text, file=source.file, base_dir=source.base_dir).name


def _print_expected(the_plan: Any) -> None:
    """What the optimiser chose and expects, before the simulations that check it."""
    entry = the_plan.manifest_extra()["plan"]
    for alloc in entry["allocations"]:
        gpus = ", ".join(f"{m} {v['gpus']}" for m, v in alloc["models"].items() if v["gpus"]) or "none"
        say_plain(f"{alloc['label']}: expected accuracy {100 * alloc['expected_accuracy']:.2f} % at "
                  f"{alloc['cost_per_hour']:,.2f} $/hour; GPUs {gpus}")
    say_plain(f"simulating each plan on {len(the_plan.exp.seeds)} seed(s) ...")


def _print(the_plan: Any, results: Any, folder: Path, quiet: bool) -> None:
    from rich.table import Table

    from reports.plan import CONSOLE_COLUMNS, HEADERS, plan_rows, plan_table

    if quiet:
        out.print(Text(str(folder)), soft_wrap=True)
        return
    entry = the_plan.manifest_extra()["plan"]
    keep = [HEADERS.index(h) for h in CONSOLE_COLUMNS]
    grid = Table(*CONSOLE_COLUMNS, title=Text(f"llmsim plan — {folder} ({len(the_plan.exp.seeds)} seeds; "
                                              f"SLO {the_plan.slo.label()})"), title_justify="left")
    for row in plan_rows(plan_table(entry, results), ci=False):
        grid.add_row(*(Text(row[k]) for k in keep))
    out.print(grid)
    for alloc in entry["allocations"]:
        gpus = ", ".join(f"{m} {v['gpus']}" for m, v in alloc["models"].items() if v["gpus"])
        note = f" ({alloc['note']})" if alloc.get("note") else ""
        out.print(Text(f"  {alloc['label']}: GPUs {gpus or 'none'}{note}"), soft_wrap=True)
    v = entry["verdict"]
    if not the_plan.slo.targets():
        out.print(Text("no SLO given (--slo or router.slo): each deployment was sized at the knee of its "
                       "latency curve (p95 end to end at twice its nearly idle value); read the p95 columns"),
                  soft_wrap=True)
    elif v.get("recommended"):
        out.print(Text(f"recommended: {v['recommended']} (meets the SLO in simulation)"))
    elif the_plan.slo.targets():
        line = "NO optimised plan met the SLO in simulation"
        if v.get("reason"):
            line += f": {v['reason']}"
        out.print(Text(line))
    out.print(Text(f"report: {folder / 'report.html'} (and report.md, plan.csv, results.csv)"), soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command()(plan)
