"""``python -m sim`` and the ``llmsim`` console script: :func:`sim.cli.main` in a process of its own,
with start-up garbage collection deferred (:mod:`sim.startup`) before the command line's imports begin.

It always ends the process (:func:`sim.cli.main` exits with the command's code), so nothing is put back:
unfreezing start-up's objects just before exit would only make the interpreter's final collection scan
them. In-process callers (tests, notebooks) call :func:`sim.cli.main`, which leaves the collector alone.
"""

from __future__ import annotations

from sim import startup


def main() -> None:
    """Run the command line on ``sys.argv`` and exit with its code."""
    startup.defer()
    from sim.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
