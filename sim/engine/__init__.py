"""The SimPy engine: model instances doing continuous batching, grouped into deployments.

The modules in :data:`NATIVE_MODULES` are compiled with mypyc by a regular install (``setup.py``, issue 14):
same source, same results, ~1.7x faster. :func:`compiled` says whether this install runs them compiled.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util

# Compiled together by setup.py (its NATIVE list; tests/engine/test_compiled.py keeps the two equal).
NATIVE_MODULES = (
    "sim.engine.closedform",
    "sim.engine.paged",
    "sim.engine.instance",
    "sim.engine.cluster",
    "sim.engine.feed",
)


# The library holding the compiled code of all of them (each module's own extension is a stub importing it).
NATIVE_LIBRARY = "llmsim_engine__mypyc"


def compiled() -> bool:
    """True when every module of :data:`NATIVE_MODULES`, and their shared library, load from C extensions
    (found, not imported): a regular install that had a C compiler. False for an editable install, a
    checkout on ``sys.path``, or ``LLMSIM_PURE_PYTHON=1``."""
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    for name in (*NATIVE_MODULES, NATIVE_LIBRARY):
        spec = importlib.util.find_spec(name)
        if spec is None or not (spec.origin or "").endswith(suffixes):
            return False
    return True
