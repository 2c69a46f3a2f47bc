"""Review finding #13: ``llmsim calibrate`` on absurd values (1e300 times, token counts, TP) is one
``error:`` line naming the file, line and column (exit 2) with no numpy RuntimeWarning; a fit that still
comes out non-finite is refused; a table with fewer rows than coefficients is fitted with a warning."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from sim.errors import DataError, InputWarning
from sim.profiles import calibrate as cal_module
from sim.profiles.calibrate import calibrate_file
from sim.profiles.fit import DECODE_TERMS, FitReport
from tests.sim.conftest import run_main

ITERATION = "model,gpu,phase,batch,ctx_per_seq,total_ctx,tokens,ms"


cli = run_main  # (exit code, stdout, stderr) of the console script


def _write(tmp_path: Path, name: str, *lines: str) -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _iteration_rows(ms: str = "5.0", tp: str | None = None) -> list[str]:
    rows = [f"llama-3-8b,NVIDIA H200,decode,{n},{c},{n * c},{n},{ms}" for n in (1, 4, 16) for c in (256, 2048)]
    return [f"{ITERATION},tp", *(f"{r},{tp}" for r in rows)] if tp is not None else [ITERATION, *rows]


@pytest.mark.parametrize(("name", "lines", "needle"), [
    ("cal.csv", ["kind,time_s,prompt_tokens", "prefill,1e300,1e300", "prefill,1e300,1e299", "prefill,1e300,1e298"],
     "line 2, column 'prompt_tokens'"),
    ("time.csv", ["kind,time_s,prompt_tokens", "prefill,1e300,100", "prefill,1e300,200"], "line 2, column 'time_s'"),
    ("tiny.csv", ["kind,time_s,prompt_tokens", "prefill,1e-300,100", "prefill,1e-300,200"], "line 2, column 'time_s'"),
    ("ms.csv", _iteration_rows(ms="1e300"), "line 2, column 'ms'"),
    ("tp.csv", _iteration_rows(tp="1e300"), "line 2, column 'tp'"),
    ("tp_big.csv", _iteration_rows(tp="4096"), "line 2, column 'tp'"),
    ("batch.csv", [ITERATION, "m,H200,decode,1e12,256,256,1,5.0"], "line 2, column 'batch'"),
])
def test_absurd_values_are_one_error_naming_line_and_column(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                            name: str, lines: list[str], needle: str) -> None:
    path = _write(tmp_path, name, *lines)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a numpy overflow warning fails the test
        code, out, err = cli(capsys, "calibrate", str(path))
    assert code == 2, err
    assert out == "" and "Traceback" not in err and "RuntimeWarning" not in err and "internal error" not in err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert f"{name}: {needle}: expected" in err


def test_a_non_finite_fit_is_refused_naming_the_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: object) -> FitReport:
        coefficients = dict.fromkeys(DECODE_TERMS, float("inf"))
        return FitReport("decode", coefficients, float("nan"), float("nan"), float("nan"), 3)

    monkeypatch.setattr(cal_module, "fit_decode", broken)
    path = _write(tmp_path, "it.csv", *_iteration_rows())
    with pytest.raises(DataError, match=r"it.csv: llama-3-8b on H200-141GB, tp=1: the decode fit gave non-finite"):
        calibrate_file(path)


def test_a_fit_error_is_a_data_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(*_: object) -> FitReport:
        raise ValueError("array must not contain infs or NaNs")

    monkeypatch.setattr(cal_module, "fit_decode", failing)
    with pytest.raises(DataError, match="it.csv: llama-3-8b on H200-141GB, tp=1: cannot fit these rows"):
        calibrate_file(_write(tmp_path, "it.csv", *_iteration_rows()))


def test_one_row_is_fitted_with_a_warning(tmp_path: Path) -> None:
    path = _write(tmp_path, "one.csv", ITERATION, "llama-3-8b,NVIDIA H200,decode,1,256,256,1,5.0103")
    with pytest.warns(InputWarning, match=r"one.csv: llama-3-8b on H200-141GB, tp=1: only 1 decode row\(s\) "
                                          "for 3 coefficients: the fit cannot determine them"):
        report = calibrate_file(path)
    assert report.groups[0].profile is not None


def test_enough_rows_give_no_warning_and_the_same_fit(tmp_path: Path) -> None:
    path = _write(tmp_path, "it.csv", *_iteration_rows())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = calibrate_file(path)
    assert report.groups[0].fits[0].rows == 6
