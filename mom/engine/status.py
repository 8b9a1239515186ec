"""The engine's status: one immutable value published after each step.

RPC (getStatistics, getHealth, ...), the metrics, the tick line and the flight
recorder read this and nothing else of the engine, so the engine's insides can
change without touching them. Readers get it from a callable returning the
newest (``Engine.status``); publishing is one attribute assignment, so a reader
never waits for the scheduler and never sees half a step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple

from mom.core.actions import Action
from mom.core.faults import FaultCounts
from mom.policy.compiled import Decisions
from mom.policy.snapshot import Snapshot

EMPTY_ROW: Mapping[str, Any] = MappingProxyType({})
NO_FAULTS = FaultCounts(MappingProxyType({}), MappingProxyType({}), MappingProxyType({}))


@dataclass(frozen=True)
class TickRecord:
    """What one policy tick saw, decided and did (for the recorder, RPC, metrics)."""

    number: int
    time: float
    snapshot: Snapshot
    decisions: Decisions
    actions: tuple[Action, ...]
    eval_seconds: float
    # The policy's variables and functions behind the decisions (mom.engine.explain.tick_trace),
    # when the daemon traces ticks (it does for the flight recorder).
    trace: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"tick": self.number, "time": self.time, **self.snapshot.to_json()}
        out.update(self.decisions.to_json())
        out["actions"] = [a.to_json() for a in self.actions]
        if self.trace is not None:
            out["trace"] = self.trace
        return out


class GuestStatus(NamedTuple):
    """A managed guest: its identity and newest row (None before its first)."""

    name: str
    uuid: str
    pid: int | None
    ready: bool  # its newest round was complete: the policy sees it
    row: Mapping[str, Any] | None


@dataclass(frozen=True)
class EngineStatus:
    """Everything the engine shows to the outside, as of one moment.

    time: the engine's clock when published; last_run: step or component
    ("discovery", "host", "guests", "policy", "controller NAME") -> clock time
    of its last success; recent_actions: the last applied controls, oldest first.
    """

    time: float = 0.0
    host: Mapping[str, Any] = field(default_factory=lambda: EMPTY_ROW)
    guests: tuple[GuestStatus, ...] = ()
    tick_count: int = 0
    last_tick: TickRecord | None = None
    recent_actions: tuple[Action, ...] = ()
    faults: FaultCounts = field(default_factory=lambda: NO_FAULTS)
    last_run: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))

    def guest_names(self) -> list[str]:
        return sorted(g.name for g in self.guests)

    def active_faults(self) -> dict[str, str]:
        """Every active fault: rendered key -> message."""
        return {k: m for by_key in self.faults.active.values() for k, m in by_key.items()}


StatusSource = Callable[[], EngineStatus]  # what a reader holds: returns the newest status
