"""Rows: run an entity's collectors and merge what they return into one row.

A row is complete when every collector's mandatory fields are in it; an
incomplete row is left out of the policy (one fault). Optional fields that no
collector gave are None, so a policy can test ``(valid x)``.
"""

from __future__ import annotations

import logging
from typing import Any

from mom.collectors.base import REGISTRY as COLLECTORS
from mom.collectors.base import CollectionError, Collector, CollectorContext, GuestSubject
from mom.core.faults import FaultKey, FaultLog

Row = dict[str, Any]


class RowSource:
    """One entity kind's collectors (the host's, or every guest's) and their fields."""

    def __init__(self, ctx: CollectorContext, names: tuple[str, ...],
                 settings: dict[str, dict[str, str]], faults: FaultLog) -> None:
        self.collectors: list[Collector] = [COLLECTORS[n](ctx, settings.get(n)) for n in names]
        self.faults = faults
        mandatory: set[str] = set()
        optional: set[str] = set()
        for c in self.collectors:
            mandatory |= c.mandatory
            optional |= c.optional
        self.mandatory = mandatory
        self.optional = optional - mandatory
        self.sections: set[str] = set().union(*(c.sections for c in self.collectors)) if self.collectors else set()
        # The sections a collector with mandatory fields reads: without one the row is
        # incomplete. A section that only optional collectors read (a guest without a
        # virtio-mem device under GuestVirtioMemOptional) may be missing as a matter of course.
        self.required_sections: set[str] = set().union(*(c.sections for c in self.collectors if c.mandatory))
        self.blocking = any(c.blocking for c in self.collectors)
        # Every field a complete row can have: a row that holds them all needs no filling.
        self._all_fields = frozenset(self.mandatory | self.optional)
        # target -> (each collector's fault key, the statistics key): made once per
        # target rather than for every collector of every guest at every step.
        self._keys: dict[str, tuple[tuple[FaultKey, ...], FaultKey]] = {}

    def _fault_keys(self, target: str) -> tuple[tuple[FaultKey, ...], FaultKey]:
        keys = self._keys.get(target)
        if keys is None:
            keys = self._keys[target] = (
                tuple(FaultKey("collector", f"collector {c.name}", target) for c in self.collectors),
                FaultKey("collector", "statistics", target))
        return keys

    def fields(self) -> set[str]:
        return self.mandatory | self.optional

    def forget(self, uuid: str) -> None:
        """A guest is gone: collectors that keep per-guest state drop it."""
        for c in self.collectors:
            forget = getattr(c, "forget", None)
            if forget:
                forget(uuid)
        self._keys.clear()  # keyed by name, not uuid: made again for the guests that remain

    def row(self, target: str, subject: GuestSubject | None) -> Row | None:
        """Run the collectors and merge their rows; None when mandatory fields are
        missing. target: "host" or the guest's name (for faults). Never raises."""
        row: Row = {}
        failed = False
        keys, statistics_key = self._fault_keys(target)
        for c, key in zip(self.collectors, keys, strict=True):  # keys made from collectors
            try:
                data = c.collect(subject)
            except CollectionError as e:
                # When its data section failed, that failure was already logged: one fault, one line.
                if subject is None or not any(sec in subject.data.errors for sec in c.sections):
                    self.faults.report(key, str(e))
                failed = True
                continue
            except Exception as e:  # noqa: BLE001 - a broken collector is a fault, not a crash
                self.faults.report(key, f"{type(e).__name__}: {e}", logging.ERROR)
                failed = True
                continue
            self.faults.clear(key)
            row.update(data)
        return self._complete(statistics_key, row, failed)

    def _complete(self, key: FaultKey, row: Row, failed: bool) -> Row | None:
        if not self.mandatory <= row.keys():
            missing = sorted(self.mandatory - row.keys())
            if not failed:  # a failed collector was just reported: one fault, one log line
                self.faults.report(key, f"missing {', '.join(missing)}; left out of the policy")
            return None
        self.faults.clear(key)
        if not self._all_fields <= row.keys():
            for name in self.optional:
                if name not in row:
                    row[name] = None
        return row
