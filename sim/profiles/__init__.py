"""Latency profiles: fitting them to measurements, and the built-in ones derived from public tables.

* :func:`builtin_profile` / :func:`list_builtin` — profiles for common model sizes on A100, H100 and H200,
  fitted to the LLM-Inference-Bench (vLLM), Splitwise and H200 plain-PyTorch tables
  (``sim/data/profiles.json``, rebuilt by ``python -m sim.profiles.build_builtin``), each entry naming its
  source; one source policy picks the default (vLLM measurements where they exist) and
  ``builtin_profile(..., source=...)`` any other; a documented scaling rule covers the rest;
* :func:`calibrate_file` / :func:`format_report` — fit a user's (or a public) measurement CSV;
* :mod:`sim.profiles.fit` — the non-negative least-squares fits themselves, and :func:`fit_mixed`, the
  mixed-step (chunked prefill) fit of :meth:`~sim.engine.latency.LatencyProfile.step_time`.
"""

from sim.profiles.builtin import (
    SOURCES,
    BuiltinProfile,
    NoSourceEntryError,
    UnknownGPUError,
    builtin_entry,
    builtin_profile,
    known_gpus,
    list_builtin,
)
from sim.profiles.calibrate import CalibrationReport, GroupCalibration, calibrate_file, format_report
from sim.profiles.fit import FitReport, fit_decode, fit_end_to_end, fit_mixed, fit_prefill

__all__ = [
    "SOURCES",
    "BuiltinProfile",
    "NoSourceEntryError",
    "CalibrationReport",
    "FitReport",
    "GroupCalibration",
    "UnknownGPUError",
    "builtin_entry",
    "builtin_profile",
    "calibrate_file",
    "fit_decode",
    "fit_end_to_end",
    "fit_mixed",
    "fit_prefill",
    "format_report",
    "known_gpus",
    "list_builtin",
]
