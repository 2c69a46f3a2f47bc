"""The command line's two consoles and its one-line messages, shared by every ``llmsim`` command.

User-supplied text (names, paths, messages) is always printed as plain text, never parsed as Rich
markup: a model called ``llama[big]`` must print as such. Input warnings become one ``warning:`` line
each; other libraries' warnings are silenced while a command runs.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.text import Text

from sim.errors import InputWarning

err = Console(stderr=True)
out = Console()


def say(label: str, style: str, message: str) -> None:
    """One line on stderr: a styled label, then ``message`` as plain text (never parsed as markup)."""
    err.print(Text.assemble((label, style), " ", message), soft_wrap=True)


def say_plain(message: str) -> None:
    """One unstyled line on stderr (e.g. "interrupted: ..."), never wrapped or parsed as markup."""
    err.print(Text(message), soft_wrap=True)


def fail(exc: BaseException) -> NoReturn:
    """The one message of a user error, then exit code 2."""
    say("error:", "bold red", str(exc))
    raise typer.Exit(2)


@contextlib.contextmanager
def warnings_to_stderr(file: str | Path | None = None) -> Iterator[None]:
    """Print each distinct InputWarning once as a ``warning:`` line; silence every other warning (numpy,
    pandas, ... must not leak raw Python warnings into a run's output). A warning that names no file
    (one from the data layer, about a scenario field) is prefixed with ``file``, the scenario's."""
    seen: set[str] = set()

    def show(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> None:
        text = str(message)
        if file is not None and not getattr(message, "names_file", True):
            text = f"{file}: {text}"
        if issubclass(category, InputWarning) and text not in seen:
            seen.add(text)
            say("warning:", "bold yellow", text)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warnings.simplefilter("always", InputWarning)
        warnings.showwarning = show
        yield


def nonempty_path(value: str) -> Path:
    """A path argument or option as typed; an empty one is refused (``Path("")`` is the current folder,
    so ``llmsim run ''`` would read, and ``--out ''`` write, the folder the user is in)."""
    if not value.strip():
        raise typer.BadParameter("expected a path, got an empty string")
    return Path(value)
