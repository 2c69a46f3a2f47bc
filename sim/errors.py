"""User-facing errors of the simulator.

Anything the user can get wrong (scenario YAML, trace and dataset files, CLI arguments) raises
:class:`InputError` with the file, the location (field path or line) and what was expected. The CLI turns
it into one message and exit code 2, with no traceback and no partial output.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reports.errors import os_reason  # (one wording for both; reports may not import sim)


class InputError(Exception):
    """Bad user input. ``where`` is a field path like ``deployments[1].tp`` or ``line 12``."""

    def __init__(self, message: str, *, file: str | Path | None = None, where: str | None = None) -> None:
        self.file = str(file) if file is not None else None
        self.where = where
        self.detail = message
        super().__init__(self.format())

    def format(self) -> str:
        loc = ""
        if self.file and self.where:
            loc = f"{self.file}: {self.where}: "
        elif self.file:
            loc = f"{self.file}: "
        elif self.where:
            loc = f"{self.where}: "
        return f"{loc}{self.detail}"


class ScenarioError(InputError):
    """A scenario is valid YAML and schema, but inconsistent (e.g. a deployment does not fit its GPUs)."""


class DataError(InputError):
    """A trace or dataset file is missing, unreadable or malformed."""


def read_error(exc: OSError, file: str | Path | None = None) -> DataError:
    """A file the system would not let us read (no read permission, a folder on its path we may not
    search) as a DataError naming it: ``file``, else the one the error names."""
    return DataError(f"cannot read the file: {os_reason(exc)}", file=file if file is not None else exc.filename)


def format_path(loc: tuple[Any, ...]) -> str:
    """('deployments', 1, 'tp') -> 'deployments[1].tp'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


class InputWarning(UserWarning):
    """Input that is valid but probably not what the user meant (a dataset that collapses to one question,
    recorded costs that disagree with prices, ...). The CLI prints each one as a ``warning:`` line on
    stderr; the run goes on. Raise with :func:`warn_input` so the message names the file and field."""

    names_file: bool = True


def warn_input(message: str, *, file: str | Path | None = None, where: str | None = None) -> None:
    """Emit an :class:`InputWarning` formatted like an :class:`InputError` (file: where: message)."""
    import warnings

    warning = InputWarning(InputError(message, file=file, where=where).format())
    warning.names_file = file is not None  # the CLI prefixes the scenario file when it does not
    warnings.warn(warning, stacklevel=2)
