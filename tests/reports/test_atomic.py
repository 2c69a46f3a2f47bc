"""``reports.atomic.write_all_atomic``: the files of one report are replaced all or none; a failure half
way puts the previous versions back and leaves no hidden file. Checked against the plain outcome: the
folder's bytes before the failing call are exactly its bytes after it."""

from __future__ import annotations

import errno
import os
import signal
from pathlib import Path

import pytest

from reports import atomic
from reports.atomic import write_all_atomic


def text(value: str):  # type: ignore[no-untyped-def]
    return lambda p: Path(p).write_text(value, encoding="utf-8")


def contents(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(folder.iterdir())}


def test_all_files_are_replaced_and_no_hidden_file_stays(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("old a")
    write_all_atomic({tmp_path / "a.md": text("new a"), tmp_path / "b.csv": text("new b")})
    assert contents(tmp_path) == {"a.md": "new a", "b.csv": "new b"}


@pytest.mark.parametrize("fail_at", [1, 2, 3])
def test_a_failed_rename_puts_every_previous_version_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          fail_at: int) -> None:
    for name in ("a.md", "b.html"):
        (tmp_path / name).write_text(f"old {name}")
    before = contents(tmp_path)
    calls = {"n": 0}
    real = os.replace

    def replace(src: object, dst: object) -> None:
        calls["n"] += 1
        if calls["n"] == fail_at:
            raise PermissionError(13, "Permission denied", str(src))
        real(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(atomic.os, "replace", replace)
    with pytest.raises(PermissionError) as caught:
        write_all_atomic({tmp_path / "a.md": text("new a"), tmp_path / "b.html": text("new b"),
                          tmp_path / "c.csv": text("new c")})
    assert caught.value.filename == str(tmp_path / ["a.md", "b.html", "c.csv"][fail_at - 1])  # not a temp name
    assert contents(tmp_path) == before  # c.csv, new, is gone again; a.md and b.html are the old ones


def test_a_failed_write_changes_nothing(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("old a")

    def broken(p: Path) -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        write_all_atomic({tmp_path / "a.md": text("new a"), tmp_path / "b.csv": broken})
    assert contents(tmp_path) == {"a.md": "old a"}


def test_without_hard_links_the_previous_version_is_copied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a.md").write_text("old a")

    def no_link(*_a: object, **_k: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(atomic.os, "link", no_link)
    write_all_atomic({tmp_path / "a.md": text("new a")})
    assert contents(tmp_path) == {"a.md": "new a"}


def test_an_exception_just_after_a_rename_still_puts_that_file_back(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A signal's exception is raised after the rename it interrupted has happened: that file counts as
    replaced and gets its previous version back too."""
    for name in ("a.md", "b.html"):
        (tmp_path / name).write_text(f"old {name}")
    before = contents(tmp_path)
    real = os.replace
    calls = {"n": 0}

    def replace_then_interrupt(src: object, dst: object) -> None:
        real(src, dst)  # type: ignore[arg-type]
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(atomic.os, "replace", replace_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        write_all_atomic({tmp_path / "a.md": text("new a"), tmp_path / "b.html": text("new b"),
                          tmp_path / "c.csv": text("new c")})
    monkeypatch.undo()
    assert contents(tmp_path) == before


def test_a_signal_during_the_write_is_delivered_once_all_files_are_in_place(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("old a")

    def write_and_signal(p: Path) -> None:
        Path(p).write_text("new b", encoding="utf-8")
        os.kill(os.getpid(), signal.SIGINT)  # kept pending until the files are all written

    with pytest.raises(KeyboardInterrupt):
        write_all_atomic({tmp_path / "a.md": text("new a"), tmp_path / "b.csv": write_and_signal})
    assert contents(tmp_path) == {"a.md": "new a", "b.csv": "new b"}


def test_without_hard_links_a_symlink_is_put_back_as_a_symlink(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    outside = tmp_path / "outside.md"
    outside.write_text("the user's file")
    folder = tmp_path / "report"
    folder.mkdir()
    (folder / "a.md").symlink_to(outside)

    def no_link(*_a: object, **_k: object) -> None:
        raise PermissionError(errno.EPERM, "Operation not permitted")

    def broken(p: Path) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "link", no_link)
    real = os.replace
    monkeypatch.setattr(atomic.os, "replace", lambda s, d: real(s, d) if Path(d).name == "a.md" else broken(Path(d)))
    with pytest.raises(OSError):
        write_all_atomic({folder / "a.md": text("new a"), folder / "b.csv": text("new b")})
    assert (folder / "a.md").is_symlink() and os.readlink(folder / "a.md") == str(outside)
    assert sorted(p.name for p in folder.iterdir()) == ["a.md"] and outside.read_text() == "the user's file"


def test_a_link_error_that_is_not_about_hard_links_is_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a.md").write_text("old a")

    def full(*_a: object, **_k: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "link", full)
    with pytest.raises(OSError, match="No space"):
        write_all_atomic({tmp_path / "a.md": text("new a")})
    assert contents(tmp_path) == {"a.md": "old a"}
