"""Build hook: compiles the engine's hot path with mypyc when it can (issue 14); metadata is in pyproject.toml.

The modules in :data:`NATIVE` are plain, type-annotated Python. A regular install (``pip install .``)
compiles them to C extensions with mypyc, which turns their typed attribute reads and method calls into C
(the engine runs ~1.7x faster); their ``.py`` sources are installed beside them and stay the reference:
the test suite runs them (``python -m pytest`` imports ``sim`` from the checkout) and
``tests/engine/test_compiled.py`` checks the installed build gives byte-identical results.

No compilation (pure Python, same results, slower):
* ``LLMSIM_PURE_PYTHON=1 pip install .``;
* an editable install (``pip install -e .``): the sources you edit are what runs;
* no C compiler: the extensions are optional, so the install goes on without them (with pip's warning).
"""

from __future__ import annotations

import glob
import os
import sys

from setuptools import setup

# Compiled together (one mypyc group: calls between them stay native). A module here must not be
# monkeypatched, weakly referenced or subclassed by uncompiled code at run time.
NATIVE = [
    "sim/engine/closedform.py",
    "sim/engine/paged.py",
    "sim/engine/instance.py",
    "sim/engine/cluster.py",
    "sim/engine/feed.py",
]


def _wanted() -> bool:
    if os.environ.get("LLMSIM_PURE_PYTHON", "") not in ("", "0"):
        return False
    # setuptools runs this file with the command it builds: "editable_wheel" for ``pip install -e .``
    return not any(arg.startswith(("editable_wheel", "develop")) for arg in sys.argv[1:])


def _forget_old_builds() -> None:
    """Delete the extensions an earlier build of this checkout left in ``build/lib*``: setuptools packs
    what it finds there, so after a failed compilation an old engine would ship beside newer sources."""
    for name in NATIVE:
        stem = name.removesuffix(".py")
        for path in glob.glob(f"build/lib*/{stem}.*.so") + glob.glob("build/lib*/llmsim_engine__mypyc.*.so"):
            os.remove(path)


def _ext_modules() -> list:
    if not _wanted():
        return []
    _forget_old_builds()
    try:
        from mypyc.build import mypycify
    except ImportError:  # built without the build requirements (python setup.py ...)
        print("llmsim: mypyc not found; installing the engine as pure Python", file=sys.stderr)
        return []
    # No config file: pyproject's [tool.mypy] loads the pydantic plugin, absent from the build environment;
    # imports not installed there (numpy, simpy, ...) are typed Any, as the compiled code treats them anyway.
    try:
        exts = mypycify(["--config-file=", "--ignore-missing-imports", *NATIVE],
                        opt_level="3", group_name="llmsim_engine")
    except (Exception, SystemExit) as exc:  # mypyc refused a module (it exits on type errors)
        print(f"llmsim: mypyc could not compile the engine ({exc!r}); installing it as pure Python",
              file=sys.stderr)
        return []
    for ext in exts:
        ext.optional = True  # no C compiler: pure Python, not a failed install
    return exts


setup(ext_modules=_ext_modules())
