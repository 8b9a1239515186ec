"""The inventory: the guests discovery knows, each entity's history of rows, the
policy's variables kept between ticks, and the snapshot built from them.

Only the scheduler thread changes it; readers outside the engine get the
published status (mom.engine.status), never the inventory itself.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any

from mom.hypervisors.base import GuestInfo
from mom.policy.compiled import Decisions
from mom.policy.snapshot import EntityData, Snapshot

Row = dict[str, Any]


@dataclass
class GuestState:
    """A guest the engine manages: identity, rows, whether its newest round was complete."""

    info: GuestInfo
    history: collections.deque[Row]
    ready: bool = False
    variables: dict[str, Any] = field(default_factory=dict)
    unsupported_noted: set[str] = field(default_factory=set)  # optional sections it lacks, said once


class Inventory:
    def __init__(self, history_length: int) -> None:
        self.history_length = history_length
        self.host_history: collections.deque[Row] = collections.deque(maxlen=history_length)
        self.host_ready = False
        self.host_variables: dict[str, Any] = {}
        self.guests: dict[str, GuestState] = {}  # by uuid

    def known_guests(self) -> list[GuestInfo]:
        """The guests discovery knows, without a hypervisor call."""
        return [s.info for s in self.guests.values()]

    def states(self) -> list[GuestState]:
        return list(self.guests.values())

    def names(self) -> set[str]:
        return {s.info.name for s in self.guests.values()}

    def by_name(self) -> dict[str, GuestInfo]:
        return {s.info.name: s.info for s in self.guests.values()}

    def update(self, listed: list[GuestInfo]) -> tuple[list[GuestInfo], list[GuestState]]:
        """Take a fresh guest list: (new guests, gone guests' states). A known guest's
        info is replaced (its pid or name may change)."""
        seen = {g.uuid: g for g in listed}
        gone = [self.guests.pop(uuid) for uuid in [u for u in self.guests if u not in seen]]
        new = [g for uuid, g in seen.items() if uuid not in self.guests]
        for g in new:
            self.guests[g.uuid] = GuestState(g, collections.deque(maxlen=self.history_length))
        for uuid, g in seen.items():
            self.guests[uuid].info = g
        return new, gone

    def add_host_row(self, row: Row | None) -> None:
        """The host's newest round: a row, or None when it was incomplete."""
        self.host_ready = row is not None
        if row is not None:
            self.host_history.append(row)

    @staticmethod
    def add_guest_row(state: GuestState, row: Row | None) -> None:
        state.ready = row is not None
        if row is not None:
            state.history.append(row)

    def keep_variables(self, decisions: Decisions) -> None:
        """The policy's variables, handed back to it at the next tick."""
        self.host_variables = dict(decisions.host_variables)
        for s in self.guests.values():
            if s.info.name in decisions.guest_variables:
                s.variables = dict(decisions.guest_variables[s.info.name])

    def snapshot(self) -> Snapshot:
        """The plain value the policy sees: host and ready guests with their history."""
        host = EntityData({}, list(self.host_history), dict(self.host_variables))
        guests = [EntityData({"name": s.info.name, "uuid": s.info.uuid, "pid": s.info.pid},
                             list(s.history), dict(s.variables))
                  for s in self.guests.values() if s.ready and s.history]
        return Snapshot(host, guests)
