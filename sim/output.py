"""Write a run folder atomically: summary.json, requests.parquet, batches.parquet, scenario.yaml.

Everything goes into a temporary sibling folder that is renamed into place at the end, so a failed or
interrupted run never leaves a partial folder. ``summary.json`` holds only deterministic numbers (no
wall-clock times): same scenario and seed give a byte-identical file. Wall times go to run_info.json.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml

from sim.errors import InputError
from sim.runner import RunResult

RUN_MARKER = "summary.json"


def dumps_summary(summary: dict[str, Any]) -> str:
    return json.dumps(summary, indent=2, sort_keys=True, allow_nan=False, default=_jsonable) + "\n"


def _jsonable(x: Any) -> Any:
    if hasattr(x, "item"):
        return x.item()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def check_out_dir(out: Path) -> None:
    """Refuse, before simulating, a folder we could not write or must not replace (not a run folder)."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / RUN_MARKER).exists())):
        raise InputError(
            "exists and is not an llmsim run folder; choose another --out or remove it", file=out
        )
    parent = out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"cannot create the run folder here ({parent} is not a writable directory)", file=out)


def write_run(
    out: Path,
    result: RunResult,
    resolved_config: dict[str, Any],
    run_info: dict[str, Any],
    *,
    requests: bool = True,
    batches: bool = True,
) -> Path:
    check_out_dir(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    except OSError as exc:
        raise InputError(f"cannot create the run folder: {exc}", file=out) from None
    try:
        (tmp / "summary.json").write_text(dumps_summary(result.summary), encoding="utf-8")
        (tmp / "scenario.yaml").write_text(
            yaml.safe_dump(resolved_config, sort_keys=False, allow_unicode=True), encoding="utf-8"
        )
        (tmp / "run_info.json").write_text(json.dumps(run_info, indent=2) + "\n", encoding="utf-8")
        if requests:
            result.requests.to_parquet(tmp / "requests.parquet", index=False)
        if batches:
            result.batches.to_parquet(tmp / "batches.parquet", index=False)
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise InputError(f"cannot write the run folder: {exc}", file=out) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
