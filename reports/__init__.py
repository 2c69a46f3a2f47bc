"""Turn result tables (summaries, requests) into Markdown, CSV and plotly HTML. Never imports the engine.

Names other than the summary table are imported on first use: ``sim.cli`` imports ``reports.table`` on
every command, and plotly/scipy would add seconds to each start-up.
"""

from __future__ import annotations

import importlib
from typing import Any

from reports.table import summary_markdown, summary_rows

_LAZY = {
    "write_report": "reports.build",
    "ReportError": "reports.errors",
    **dict.fromkeys(["BisectResult", "accuracy_at_spend", "aiq", "bisect_knob", "compare_table", "mean_ci",
                     "paired_diff_ci"], "reports.stats"),
    **dict.fromkeys(["MANIFEST_FILE", "RESULTS_FILE", "flatten_summary", "read_experiment", "read_manifest",
                     "read_run", "run_row"], "reports.tables"),
}

__all__ = ["summary_markdown", "summary_rows", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'reports' has no attribute {name!r}")
