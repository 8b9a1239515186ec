"""The libvirt connection's run state (the shared RunStateMachine): the moves a
real opener sequence makes (failures, back-off, loss, close), observed through
RunStateMachine.listen, each one along the shared TRANSITIONS."""

from __future__ import annotations

from typing import Any

import pytest

libvirt = pytest.importorskip("libvirt", reason="libvirt-python is not installed")

from mom.hypervisors.libvirt.connection import ConnectionLost, LibvirtConnection  # noqa: E402
from mom.hypervisors.runstate import TRANSITIONS, RunState  # noqa: E402


class Conn:
    """The part of a virConnect the connection uses."""

    def __init__(self) -> None:
        self.closed = False

    def getURI(self) -> str:
        return "test:///fake"

    def close(self) -> int:
        self.closed = True
        return 0


class Opener:
    """Fails while ``failing``; counts attempts; may run a hook during the open."""

    def __init__(self) -> None:
        self.failing = False
        self.attempts = 0
        self.during: Any = None
        self.opened: list[Conn] = []

    def __call__(self, uri: str | None) -> Conn:
        self.attempts += 1
        if self.during is not None:
            self.during()
        if self.failing:
            raise libvirt.libvirtError("Failed to connect socket: Connection refused")
        conn = Conn()
        self.opened.append(conn)
        return conn


@pytest.fixture
def setup() -> tuple[LibvirtConnection, Opener, list[float]]:
    now = [100.0]
    opener = Opener()
    link = LibvirtConnection("test:///fake", opener=opener, retry_min=1.0, retry_max=4.0,
                             monotonic=lambda: now[0])
    return link, opener, now


def moves_of(link: LibvirtConnection) -> list[tuple[RunState, RunState]]:
    """Every later move of the connection's run state, as (old, new)."""
    seen: list[tuple[RunState, RunState]] = []
    link.run.listen(lambda old, new: seen.append((old, new)))
    return seen


def test_a_run_from_idle_through_outages_to_closed(setup: Any) -> None:
    link, opener, now = setup
    moves = moves_of(link)
    assert link.state is RunState.IDLE and link.conn is None

    opener.failing = True
    with pytest.raises(ConnectionLost, match=r"not connected .*Connection refused") as first:
        link.ensure()
    assert link.state is RunState.DISCONNECTED
    with pytest.raises(ConnectionLost) as again:  # within the back-off: no attempt, the same message
        link.ensure()
    assert opener.attempts == 1 and str(again.value) == str(first.value)

    now[0] += 1.0
    with pytest.raises(ConnectionLost):
        link.ensure()  # attempt 2 fails: the back-off doubles to 2 s
    now[0] += 1.5
    with pytest.raises(ConnectionLost):
        link.ensure()
    assert opener.attempts == 2

    opener.failing = False
    now[0] += 0.5
    conn = link.ensure()
    assert link.state is RunState.CONNECTED and link.conn is conn and link.connections == 1
    assert link.ensure() is conn and opener.attempts == 3

    message = link.drop(conn, "connection reset")
    assert "connection lost: connection reset" in message
    assert link.state is RunState.DISCONNECTED and conn.closed
    conn2 = link.ensure()  # the first reconnection is at once
    assert link.state is RunState.CONNECTED and conn2 is not conn and link.connections == 2
    assert link.drop(conn, "stale") and link.state is RunState.CONNECTED  # an old connection changes nothing

    link.close()
    assert link.state is RunState.CLOSED and link.conn is None
    with pytest.raises(ConnectionLost, match="closed"):
        link.ensure()
    link.close()  # twice is fine
    assert link.state is RunState.CLOSED
    # Back-off waits and a stale drop move nothing; every move is in the shared table.
    C, D, R, X = RunState.CONNECTING, RunState.DISCONNECTED, RunState.CONNECTED, RunState.CLOSED
    assert [new for _, new in moves] == [C, D, C, D, C, R, D, C, R, X]
    assert moves[0][0] is RunState.IDLE and all(new in TRANSITIONS[old] for old, new in moves)


def test_close_while_connecting_releases_the_new_connection(setup: Any) -> None:
    link, opener, _now = setup
    moves = moves_of(link)
    opener.during = link.close
    with pytest.raises(ConnectionLost, match="closed"):
        link.ensure()
    assert link.state is RunState.CLOSED and link.conn is None
    assert opener.opened and opener.opened[0].closed
    assert moves == [(RunState.IDLE, RunState.CONNECTING), (RunState.CONNECTING, RunState.CLOSED)]


def test_a_second_caller_does_not_open_twice(setup: Any) -> None:
    link, opener, _now = setup

    def second_caller() -> None:
        assert link.state is RunState.CONNECTING
        with pytest.raises(ConnectionLost, match="connecting"):
            link.ensure()
    opener.during = second_caller
    link.ensure()
    assert opener.attempts == 1 and link.state is RunState.CONNECTED


def test_an_opener_that_raises_something_else_leaves_it_disconnected(setup: Any) -> None:
    """A bug in the opener (not a libvirt error) propagates; the state does not stay CONNECTING."""
    link, opener, _now = setup
    moves = moves_of(link)

    def broken() -> None:
        raise KeyError("bug")
    opener.during = broken
    with pytest.raises(KeyError):
        link.ensure()
    assert moves == [(RunState.IDLE, RunState.CONNECTING), (RunState.CONNECTING, RunState.DISCONNECTED)]
    opener.during = None
    link.ensure()
    assert link.state is RunState.CONNECTED


def test_the_interface_reports_its_connection_state(tmp_path: Any) -> None:
    from mom.hypervisors.libvirt import LibvirtHypervisor

    h = LibvirtHypervisor("test:///default", connect_now=False)
    moves = moves_of(h.connection)
    assert h.run_state is RunState.IDLE
    h.list_guests()
    assert h.run_state is RunState.CONNECTED
    h.close()
    assert h.run_state is RunState.CLOSED
    assert [new for _, new in moves] == [RunState.CONNECTING, RunState.CONNECTED, RunState.CLOSED]
