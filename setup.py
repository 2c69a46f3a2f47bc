"""Build hook: compiles the engine's hot path with mypyc when it can (issue 14); metadata is in pyproject.toml.

The modules in :data:`NATIVE` are plain, type-annotated Python. A regular install (``pip install .``)
compiles them to C extensions with mypyc, which turns their typed attribute reads and method calls into C
(the engine runs ~1.7x faster); their ``.py`` sources are installed beside them and stay the reference:
the test suite runs them (``python -m pytest`` imports ``sim`` from the checkout) and
``tests/engine/test_compiled.py`` checks the installed build gives byte-identical results.

No compilation (pure Python, same results, slower):
* ``LLMSIM_PURE_PYTHON=1 pip install .``;
* an editable install (``pip install -e .``): the sources you edit are what runs;
* the C compilation fails (no compiler, say): the install goes on without any extension, with a warning.

The C is compiled without floating-point contraction, so results do not depend on the compiler or CPU.
"""

from __future__ import annotations

import glob
import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext

# Compiled together (one mypyc group: calls between them stay native). A module here must not be
# monkeypatched, weakly referenced or subclassed by uncompiled code at run time.
NATIVE = [
    "sim/engine/closedform.py",
    "sim/engine/paged.py",
    "sim/engine/instance.py",
    "sim/engine/cluster.py",
    "sim/engine/feed.py",
]


# The setuptools commands that build extensions; the others (egg_info, dist_info: pip asking for metadata;
# editable_wheel, develop: ``pip install -e .``, pure Python on purpose) get none, so mypyc runs once.
_BUILDS = {"bdist_wheel", "build", "build_ext", "install", "bdist_egg"}
_SHARED = "llmsim_engine__mypyc"  # the group's shared library: the modules' code (each module is a stub)


def _wanted() -> bool:
    if os.environ.get("LLMSIM_PURE_PYTHON", "") not in ("", "0"):
        return False
    commands = set(sys.argv[1:])
    return bool(commands & _BUILDS) and not commands & {"editable_wheel", "develop"}


def _forget_old_builds() -> None:
    """Delete the extensions an earlier build of this checkout left in ``build/lib*`` (those of modules no
    longer compiled too): setuptools packs what it finds there, so after a failed compilation an old
    engine would ship beside newer sources."""
    for path in glob.glob("build/lib*/sim/**/*.so", recursive=True) + glob.glob(f"build/lib*/{_SHARED}.*.so"):
        os.remove(path)


class _AllOrNothing(build_ext):
    """Build every extension or none: the per-module stubs import the shared library, so a stub built
    without it (a compiler error there, e.g. a new warning under mypyc's -Werror) would break
    ``import sim.engine.paged``. On any failure the built ones are removed and llmsim installs as pure
    Python, with a warning (no C compiler: the same)."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # CompileError, LinkError, DistutilsExecError, a missing compiler, ...
            for path in self.get_outputs():
                if os.path.exists(path):
                    os.remove(path)
            print(f"llmsim: WARNING: the engine could not be compiled ({exc}); installing it as pure Python "
                  "(same results, ~1.7x slower)", file=sys.stderr)


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
                        opt_level="3", group_name=_SHARED.removesuffix("__mypyc"))
    except (Exception, SystemExit) as exc:  # mypyc refused a module (it exits on type errors)
        print(f"llmsim: mypyc could not compile the engine ({exc!r}); installing it as pure Python",
              file=sys.stderr)
        return []
    for ext in exts:
        # Results must not depend on the compiler: no fused multiply-add (GCC contracts a*b + c by default
        # on aarch64 and with -march=native, which rounds once instead of twice, off by 1 ulp)
        ext.extra_compile_args = [*ext.extra_compile_args, "-ffp-contract=off"]
    return exts


setup(ext_modules=_ext_modules(), cmdclass={"build_ext": _AllOrNothing})
