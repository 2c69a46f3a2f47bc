"""``python -m sim`` and the ``llmsim`` console script: :func:`sim.cli.main` with start-up garbage
collection deferred (:mod:`sim.startup`) before the command line's imports begin."""

from __future__ import annotations

from sim import startup


def main(argv: list[str] | None = None) -> None:
    """Run the command line (exits with its code, as :func:`sim.cli.main` does)."""
    startup.defer()
    try:
        from sim.cli import main as cli_main

        cli_main(argv)
    finally:
        startup.end()


if __name__ == "__main__":
    main()
