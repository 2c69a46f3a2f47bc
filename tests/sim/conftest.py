"""Helpers for scenario-level tests: small scenarios written into tmp_path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = REPO / "scenarios"


def cli(*args: str) -> Any:
    """``llmsim ARGS`` in-process, exceptions not caught (a traceback fails the test loudly)."""
    from typer.testing import CliRunner

    from sim.cli import app

    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def run_main(capsys: Any, *args: str) -> tuple[int, str, str]:
    """The console script's ``main`` in-process (exit code, stdout, stderr): what a user sees, with
    ``main``'s own error handling (one line, exit code) rather than CliRunner's."""
    from sim.cli import main

    with pytest.raises(SystemExit) as exc:
        main(list(args))
    cap = capsys.readouterr()
    code = exc.value.code
    return (code if isinstance(code, int) else 0), cap.out, cap.err


def small_scenario(**overrides: Any) -> dict[str, Any]:
    """A tiny valid scenario as a dict (2 models, 1 GPU type); override top-level keys."""
    sc: dict[str, Any] = {
        "name": "tiny",
        "seed": 3,
        "num_queries": 300,
        "gpus": [{"name": "A100", "memory_gib": 80, "cost_per_hour": 2.0, "count": 4}],
        "models": [
            {
                "name": "small",
                "params_b": 8,
                "price_in_per_mtok": 0.1,
                "price_out_per_mtok": 0.2,
                "strength": 0.3,
                "latency": {"A100": {"prefill_base_s": 0.01, "prefill_per_token_s": 1e-4,
                                      "decode_base_s": 0.01, "decode_per_seq_s": 1e-4,
                                      "decode_per_ctx_token_s": 5e-8}},
            },
            {
                "name": "big",
                "params_b": 70,
                "kv_bytes_per_token": 327680,
                "price_in_per_mtok": 1.0,
                "price_out_per_mtok": 3.0,
                "strength": 0.8,
                "latency": {"A100": {"prefill_base_s": 0.03, "prefill_per_token_s": 3e-4,
                                      "decode_base_s": 0.03, "decode_per_seq_s": 4e-4,
                                      "decode_per_ctx_token_s": 1e-7}},
            },
        ],
        "deployments": [
            {"model": "small", "gpu": "A100", "tp": 1, "instances": 1, "max_seqs": 32},
            {"model": "big", "gpu": "A100", "tp": 2, "instances": 1, "max_seqs": 16},
        ],
        "workload": {"arrivals": {"type": "poisson", "rate": 4.0}, "pool": {"type": "synthetic"}},
        "router": {"policy": "threshold_greedy", "params": {"alpha": 0.7}},
    }
    sc.update(overrides)
    return sc


@pytest.fixture
def scenario_file(tmp_path: Path) -> Path:
    """A 150-query tiny scenario batched in 1 s windows (the experiment commands' tests)."""
    data = small_scenario(num_queries=150)
    data["router"] = {"policy": "threshold_greedy", "params": {}, "window_s": 1.0}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def write_scenario(tmp_path: Path):  # type: ignore[no-untyped-def]
    def write(data: dict[str, Any] | str, name: str = "scenario.yaml") -> Path:
        p = tmp_path / name
        p.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
        return p

    return write
