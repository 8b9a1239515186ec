"""One run state for every connection an interface keeps (libvirtd, vdsm, QMP).

A connection is in exactly one :class:`RunState` (as qemu.qmp's ``Runstate``)
and moves only along :data:`TRANSITIONS`. :class:`RunStateMachine` holds the
value, refuses a move outside the table (that is a bug, not a fault of the
peer) and tells listeners of every move, which is what status readers and
tests observe instead of private flags.
"""

from __future__ import annotations

import enum
from collections.abc import Callable


class RunState(enum.Enum):
    """Where a connection is.

    IDLE: never opened (interfaces connect lazily, after ``momd -d`` forked).
    CONNECTING: one thread is opening it. CONNECTED: a live connection.
    DISCONNECTED: an outage; the next attempt waits for the back-off.
    CLOSED: close() was called; final."""

    IDLE = "idle"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    CLOSED = "closed"


TRANSITIONS: dict[RunState, frozenset[RunState]] = {
    RunState.IDLE: frozenset({RunState.CONNECTING, RunState.CLOSED}),
    RunState.CONNECTING: frozenset({RunState.CONNECTED, RunState.DISCONNECTED, RunState.CLOSED}),
    RunState.CONNECTED: frozenset({RunState.DISCONNECTED, RunState.CLOSED}),
    RunState.DISCONNECTED: frozenset({RunState.CONNECTING, RunState.CLOSED}),
    RunState.CLOSED: frozenset(),
}

Listener = Callable[[RunState, RunState], None]


class RunStateError(RuntimeError):
    """A move outside :data:`TRANSITIONS`: a bug in the connection's code."""


class RunStateMachine:
    """The run state of one connection.

    Not locked: the owner moves it under its own lock. Listeners are called
    after each move with (old, new), on the moving thread."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.state = RunState.IDLE
        self._listeners: list[Listener] = []

    def move(self, state: RunState) -> None:
        """Change to ``state``; raises RunStateError if TRANSITIONS has no such move."""
        old = self.state
        if state not in TRANSITIONS[old]:
            raise RunStateError(f"{self.name}: no transition from {old.value} to {state.value}")
        self.state = state
        for listener in list(self._listeners):
            listener(old, state)

    def listen(self, listener: Listener) -> None:
        """Call ``listener(old, new)`` after every later move."""
        self._listeners.append(listener)

    def __repr__(self) -> str:
        return f"RunStateMachine({self.name!r}, {self.state.value})"
