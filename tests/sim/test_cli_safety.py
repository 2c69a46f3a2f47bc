"""CLI safety (issue 8): user strings never parsed as Rich markup, one-line argument errors, input
warnings as ``warning:`` lines, ``validate`` runs every load-time check, no traceback ever, and ``-q``
prints only the path (HiGHS's C-level prints silenced)."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sim.errors import warn_input
from tests.sim.conftest import REPO, SCENARIOS, run_main, small_scenario

cli = run_main  # (exit code, stdout, stderr) of the console script


def assert_one_error_line(code: int, out: str, err: str, *needles: str, exit_code: int = 2) -> None:
    assert code == exit_code, err
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, f"{needle!r} not in {err!r}"


# ------------------------------------------------------------------------------------- markup (item 2)
def test_set_value_with_brackets_is_reported_verbatim(capsys: pytest.CaptureFixture[str]) -> None:
    res = cli(capsys, "run", "--set", "deployments.0.model=llama[big]", "--out", "unused")
    assert_one_error_line(*res, "unknown model 'llama[big]'")


@pytest.mark.parametrize("name", ["m[/]x", "[bold]m", "llama[big]"])
def test_markup_like_model_names_are_printed_verbatim(write_scenario, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                      capsys: pytest.CaptureFixture[str], name: str) -> None:
    data = small_scenario(num_queries=40)
    data["models"][0]["name"] = name
    data["deployments"][0]["model"] = name
    out = tmp_path / "[bold]run[/]"
    code, stdout, err = cli(capsys, "run", str(write_scenario(data)), "--out", str(out))
    assert code == 0, err
    assert f"  {name}" in stdout
    assert "llmsim run — " in stdout and "[bold]run[/]" in stdout.split("\n")[1]  # the title, wrapped
    assert f"wrote {out}/" in stdout
    code, stdout, _ = cli(capsys, "run", str(write_scenario(data)), "--out", str(tmp_path / "q[/]"), "-q")
    assert (code, stdout) == (0, f"{tmp_path / 'q[/]'}\n")


def test_error_message_with_markup_in_the_file_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "[red]x[/].yaml"
    assert_one_error_line(*cli(capsys, "validate", str(missing)), str(missing), "not found")


def test_validate_ok_line_keeps_brackets(write_scenario, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    path = write_scenario(small_scenario(), name="[bold]s[red].yaml")
    code, out, _ = cli(capsys, "validate", str(path))
    assert code == 0 and out.startswith(f"{path}: ok (tiny:")


# ---------------------------------------------------------------------------- arguments (items 3, 10)
@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--seed", "-1"], ["seed", "greater than or equal to 0"]),
        (["--seed", "1e3"], ["--seed", "integer", "llmsim run --help"]),
        (["--policy", ""], ["--policy", "empty"]),
        (["--policy", "[/]"], ["router.policy"]),
        (["--set", "oops"], ["--set expects KEY.PATH=VALUE"]),
        (["--out", ""], ["--out", "empty"]),
        (["--out", "/"], ["root"]),
        (["--no-such-flag"], ["No such option"]),
        (["a.yaml", "b.yaml"], ["unexpected extra argument"]),
    ],
)
def test_bad_arguments_one_line_exit_2(capsys: pytest.CaptureFixture[str], args: list[str],
                                       needles: list[str]) -> None:
    assert_one_error_line(*cli(capsys, "run", *args), *needles)


def test_out_name_too_long(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    long = tmp_path / ("x" * 300)
    code, out, err = cli(capsys, "run", "--out", str(long))
    assert_one_error_line(code, out, err, str(tmp_path), "characters", "too long")
    assert len(err) < 400  # the path is shortened
    assert list(tmp_path.iterdir()) == []


def test_unexpected_exception_is_one_internal_error_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    import sim.runner

    def boom(*a: Any, **k: Any) -> None:
        raise RuntimeError("kaboom [bold]")

    monkeypatch.setattr(sim.runner, "simulate", boom)
    out = tmp_path / "o"
    code, stdout, err = cli(capsys, "run", "--out", str(out))
    assert code == 1 and stdout == ""
    assert err.strip().splitlines() == ["internal error: RuntimeError: kaboom [bold] (please report this with "
                                        "the command you ran)"]
    assert list(tmp_path.iterdir()) == []
    # InputError stays a user error (exit 2), also from deep inside the run
    from sim.errors import ScenarioError

    def bad(*a: Any, **k: Any) -> None:
        raise ScenarioError("nope", where="router")

    monkeypatch.setattr(sim.runner, "simulate", bad)
    assert_one_error_line(*cli(capsys, "run", "--out", str(out)), "<embedded quickstart.yaml>: router: nope")


# ---------------------------------------------------------------------------------- warnings (item 9)
def test_input_warnings_once_each_and_library_warnings_silenced(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    import sim.runner

    real = sim.runner.simulate

    def noisy(*a: Any, **k: Any) -> Any:
        for _ in range(3):
            warn_input("suspicious [bold]thing[/]", file="data.csv", where="line 3")
        warn_input("another one", where="workload")
        np.log(np.zeros(2))  # numpy RuntimeWarning
        warnings.warn("pandas says hi", FutureWarning, stacklevel=1)
        return real(*a, **k)

    monkeypatch.setattr(sim.runner, "simulate", noisy)
    out = tmp_path / "o"
    code, stdout, err = cli(capsys, "run", "--set", "num_queries=50", "--out", str(out), "-q")
    assert code == 0
    assert stdout == f"{out}\n"
    assert err.strip().splitlines() == ["warning: data.csv: line 3: suspicious [bold]thing[/]",
                                        "warning: <embedded quickstart.yaml>: workload: another one"]


def test_validate_prints_input_warnings(monkeypatch: pytest.MonkeyPatch, write_scenario,  # type: ignore[no-untyped-def]
                                        capsys: pytest.CaptureFixture[str]) -> None:
    import sim.runner

    real = sim.runner.prepare

    def noisy(*a: Any, **k: Any) -> Any:
        warn_input("few queries", where="workload.pool")
        warn_input("few queries", where="workload.pool")
        return real(*a, **k)

    monkeypatch.setattr(sim.runner, "prepare", noisy)
    path = write_scenario(small_scenario())
    code, out, err = cli(capsys, "validate", str(path))
    assert code == 0 and ": ok (" in out
    assert err == f"warning: {path}: workload.pool: few queries\n"  # a field warning names its scenario


# --------------------------------------------------------------------------- validate = prepare (item 8)
AZURE_HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens\n"


def _trace_scenario(write_scenario, trace: Path, **arrivals: Any) -> Path:  # type: ignore[no-untyped-def]
    data = small_scenario(num_queries=None, duration_s=60.0)
    data["workload"]["arrivals"] = {"type": "trace", "path": str(trace), **arrivals}
    return write_scenario(data)  # type: ignore[no-any-return]


def _same_error_from_run_and_validate(capsys: pytest.CaptureFixture[str], path: Path, tmp_path: Path,
                                      *needles: str) -> None:
    run = cli(capsys, "run", str(path), "--out", str(tmp_path / "out"))
    val = cli(capsys, "validate", str(path))
    assert_one_error_line(*val, *needles)
    assert run == val
    assert not (tmp_path / "out").exists()


def test_validate_catches_a_corrupt_trace(write_scenario, tmp_path: Path,  # type: ignore[no-untyped-def]
                                          capsys: pytest.CaptureFixture[str]) -> None:
    trace = tmp_path / "trace.csv"
    trace.write_text(AZURE_HEADER + "2023-11-16 18:15:46.6805900,374,44\n2023-11-16 18:15:47.1,abc,5\n")
    _same_error_from_run_and_validate(capsys, _trace_scenario(write_scenario, trace), tmp_path,
                                      str(trace), "line 3")


def test_validate_catches_an_empty_trace_window(write_scenario, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                capsys: pytest.CaptureFixture[str]) -> None:
    trace = tmp_path / "trace.csv"
    trace.write_text(AZURE_HEADER + "2023-11-16 18:15:46.6805900,374,44\n2023-11-16 18:15:47.1,300,5\n")
    path = _trace_scenario(write_scenario, trace, start_s=3600.0)
    _same_error_from_run_and_validate(capsys, path, tmp_path, str(trace), "no arrivals")


def test_validate_catches_zero_arrivals(write_scenario, tmp_path: Path,  # type: ignore[no-untyped-def]
                                        capsys: pytest.CaptureFixture[str]) -> None:
    path = write_scenario(small_scenario(num_queries=None, duration_s=0.001))
    _same_error_from_run_and_validate(capsys, path, tmp_path, str(path), "no arrivals")


# ------------------------------------------------------------------------------- -q and HiGHS (item 7)
def test_quiet_stdout_silences_fd1_output() -> None:
    """Text written to file descriptor 1 from C inside the context never reaches stdout."""
    code = (
        "import ctypes, os, sys\n"
        "from policies.batch.milp_model import quiet_stdout\n"
        "libc = ctypes.CDLL(None)\n"
        "print('before', flush=True)\n"
        "with quiet_stdout():\n"
        "    libc.printf(b'from C\\n')\n"
        "    os.write(1, b'raw fd\\n')\n"
        "    with quiet_stdout():\n"
        "        libc.printf(b'nested\\n')\n"
        "libc.printf(b'after C\\n'); libc.fflush(None)\n"
        "print('after', flush=True)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, check=True)
    assert res.stdout.splitlines() == ["before", "after C", "after"]


def test_quiet_run_with_milp_prints_only_the_path(tmp_path: Path) -> None:
    """Seed 1 of the adversarial scenario makes HiGHS print ``HighsMipSolverData::...`` from C++."""
    out = tmp_path / "run"
    res = subprocess.run(
        [sys.executable, "-m", "sim", "run", str(SCENARIOS / "adversarial_batches.yaml"), "--policy", "milp",
         "--seed", "1", "-q", "--out", str(out)],
        capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout == f"{out}\n"


def test_input_error_escaping_a_command_is_still_exit_2(monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    import sim.config.reference
    from sim.errors import InputError

    def bad() -> str:
        raise InputError("broken [bold]", file="x.yaml")

    monkeypatch.setattr(sim.config.reference, "reference_markdown", bad)
    assert_one_error_line(*cli(capsys, "schema"), "x.yaml: broken [bold]")


def test_validate_takes_the_overrides_run_takes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from sim.cli import app

    path = tmp_path / "q.yaml"
    path.write_text((REPO / "sim" / "scenarios" / "quickstart.yaml").read_text())
    r = CliRunner()
    ok = r.invoke(app, ["validate", str(path), "--policy", "lagrangian", "--seed", "3", "--set", "router.window_s=2"])
    assert ok.exit_code == 0 and "policy lagrangian" in ok.output
    bad = r.invoke(app, ["validate", str(path), "--set", "router.window_s=-1"])
    assert bad.exit_code == 2 and "router.window_s" in bad.output
    assert r.invoke(app, ["validate", str(path), "--policy", ""]).exit_code == 2
