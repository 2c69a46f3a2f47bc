"""The compiled engine (``setup.py`` compiles :data:`sim.engine.NATIVE_MODULES` with mypyc) gives the same
results as its source, byte for byte.

``python -m pytest`` imports ``sim`` from the checkout, so the rest of the suite tests the source (the
reference: several tests swap its methods for plainer ones, which a compiled class does not allow). This
file runs the *installed* llmsim in a separate interpreter (``python -I``, outside the checkout) on ~40
scenario variants, covering both schedulers, shared and private queues, every routing path, preemption,
prefix caching, node failures, bursts and SLO routing, and compares summaries and every table with the
same runs here. With an editable install (or ``LLMSIM_PURE_PYTHON=1``, or no C compiler) the installed
llmsim is not compiled and the comparison is skipped; CI sets ``LLMSIM_REQUIRE_COMPILED=1`` to fail then.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import sim.engine
from tests.engine import compiled_digest

ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = ROOT.parent / "shared" / "data"


def _setup_constant(name: str) -> object:
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == name:
            return ast.literal_eval(node.value)
    raise AssertionError(f"setup.py has no {name}")


def test_setup_compiles_the_modules_the_engine_names() -> None:
    native = list(_setup_constant("NATIVE"))  # type: ignore[call-overload]
    assert [p.removesuffix(".py").replace("/", ".") for p in native] == list(sim.engine.NATIVE_MODULES)
    assert _setup_constant("_SHARED") == sim.engine.NATIVE_LIBRARY
    for path in native:
        assert (ROOT / path).is_file(), path


def test_this_checkout_runs_its_source() -> None:
    # what the rest of the suite relies on: it tests (and may monkeypatch) the Python source
    assert not sim.engine.compiled()
    assert Path(sim.engine.__file__).resolve().parent == ROOT / "sim" / "engine"


_INSTALLED = """
import hashlib, importlib.util, json, pathlib, sim.engine
sources = {}
for name in sim.engine.NATIVE_MODULES:  # the .py installed beside each extension (or the module itself)
    origin = pathlib.Path(importlib.util.find_spec(name).origin)
    source = origin.with_name(origin.name.split(".")[0] + ".py")
    sources[name] = hashlib.sha256(source.read_bytes()).hexdigest() if source.exists() else None
print(json.dumps({"compiled": sim.engine.compiled(), "file": sim.engine.__file__, "sources": sources}))
"""


def _installed(cwd: Path) -> dict[str, object]:
    proc = subprocess.run([sys.executable, "-I", "-c", _INSTALLED], cwd=cwd, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout))


def _checkout_sources() -> dict[str, str]:
    return {name: hashlib.sha256((ROOT / (name.replace(".", "/") + ".py")).read_bytes()).hexdigest()
            for name in sim.engine.NATIVE_MODULES}


def test_installed_build_gives_the_source_results(tmp_path: Path) -> None:
    info = _installed(tmp_path)
    if not info["compiled"]:
        message = f"the installed llmsim ({info['file']}) is not compiled"
        if os.environ.get("LLMSIM_REQUIRE_COMPILED", "") not in ("", "0"):
            pytest.fail(message + " and LLMSIM_REQUIRE_COMPILED is set")
        pytest.skip(message + " (editable install, LLMSIM_PURE_PYTHON=1 or no C compiler)")
    if info["sources"] != _checkout_sources():  # compiled from other sources: comparing would prove nothing
        message = f"the installed llmsim ({info['file']}) was built from other sources than this checkout's"
        if os.environ.get("LLMSIM_REQUIRE_COMPILED", "") not in ("", "0"):
            pytest.fail(message)
        pytest.skip(message + " (reinstall it: pip install .)")
    chosen = compiled_digest.variants()
    spec = tmp_path / "variants.json"
    spec.write_text(json.dumps(chosen))
    proc = subprocess.run([sys.executable, "-I", compiled_digest.__file__, str(spec)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-4000:]
    theirs = json.loads(proc.stdout)
    assert theirs["compiled"] and Path(theirs["sim"]).resolve() != ROOT / "sim"
    ours = compiled_digest.digests(chosen)
    assert set(theirs["digests"]) == set(ours)
    differ = [label for label in ours if theirs["digests"][label] != ours[label]]
    assert not differ, {label: (ours[label], theirs["digests"][label]) for label in differ[:3]}
    errors = {label: d["error"] for label, d in ours.items() if "error" in d}
    if SHARED_DATA.is_dir():  # every variant ran: the comparison covered what it names
        assert not errors, errors
    else:
        assert len(errors) < len(ours) // 3, errors


def test_run_info_says_which_engine_ran(tmp_path: Path) -> None:
    """run_info.json (wall times live there) records the build, since the two builds' times differ."""
    from tests.sim.conftest import cli

    result = cli("run", "--set", "num_queries=50", "--out", str(tmp_path / "run"), "-q")
    assert result.exit_code == 0, result.output
    info = json.loads((tmp_path / "run" / "run_info.json").read_text())
    assert info["engine_compiled"] is sim.engine.compiled() is False  # this checkout: the source
