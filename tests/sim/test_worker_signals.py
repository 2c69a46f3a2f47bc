"""A sweep worker's signals (:class:`sim.experiments.execute._Stop`): raised only inside a task, only the
first one counts (Ctrl-C reaches the workers, then the parent's SIGTERM: the second must not interrupt the
cleanup the first started), and one arriving while a run folder is moved into place (``GUARD.hold()``) is
kept and raised after it."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from sim.experiments.execute import _Stop
from sim.output import GUARD


@pytest.fixture(autouse=True)
def fresh_state() -> Iterator[None]:
    saved = (_Stop.running, _Stop.signum)
    _Stop.running, _Stop.signum = False, None
    yield
    _Stop.running, _Stop.signum = saved


def test_between_tasks_a_signal_is_kept_and_ends_the_next_task() -> None:
    _Stop.on_signal(signal.SIGTERM, None)  # no raise: the worker may be inside the pool's queue lock
    with pytest.raises(SystemExit) as ended:
        _Stop.check()
    assert ended.value.code == 143


def test_only_the_first_signal_counts() -> None:
    _Stop.running = True
    with pytest.raises(KeyboardInterrupt):
        _Stop.on_signal(signal.SIGINT, None)
    _Stop.on_signal(signal.SIGTERM, None)  # during the first one's cleanup: nothing raised
    assert _Stop.signum == signal.SIGINT


def test_a_signal_while_a_run_folder_is_moved_into_place_is_raised_after() -> None:
    _Stop.running = True
    with GUARD.hold():
        _Stop.on_signal(signal.SIGTERM, None)  # kept: the move must finish (or be undone) first
    with pytest.raises(SystemExit):
        _Stop.check()
