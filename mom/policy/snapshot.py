"""Snapshots: the plain value a policy run sees, and its JSON-lines form.

    {"host": {"properties": {...}, "statistics": [ROW, ...]},
     "guests": [{"properties": {"name": ..., "uuid": ...}, "statistics": [ROW, ...]}, ...]}

Statistics are oldest first; a ROW maps field names to numbers, strings, null or
lists (a guest's io_tune). Extra keys are ignored, so the daemon's flight
recorder lines are snapshots too. Entities may carry "variables" (what the
policy stored with SetVar on earlier runs).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

from mom.core.errors import MomError
from mom.policy.runtime import Entity


class SnapshotError(MomError, ValueError):
    """A snapshot that is not in the format above (one line: where and what)."""


@dataclass
class EntityData:
    properties: dict[str, Any] = field(default_factory=dict)
    statistics: list[dict[str, Any]] = field(default_factory=list)
    variables: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"properties": self.properties, "statistics": self.statistics}
        if self.variables:
            out["variables"] = self.variables
        return out


@dataclass
class Snapshot:
    host: EntityData = field(default_factory=EntityData)
    guests: list[EntityData] = field(default_factory=list)

    def entities(self) -> tuple[Entity, list[Entity]]:
        """Fresh policy entities for one run (controls start empty)."""
        host = Entity("Host", self.host.properties, self.host.statistics, self.host.variables)
        guests = [Entity("Guest", g.properties, g.statistics, g.variables) for g in self.guests]
        return host, guests

    def to_json(self) -> dict[str, Any]:
        return {"host": self.host.to_json(), "guests": [g.to_json() for g in self.guests]}


def _entity(value: Any, where: str) -> EntityData:
    if not isinstance(value, dict):
        raise SnapshotError(f"{where}: expected an object with 'properties' and 'statistics'")
    props = value.get("properties", {})
    if not isinstance(props, dict):
        raise SnapshotError(f"{where}.properties: expected an object")
    stats = value.get("statistics", [])
    if not isinstance(stats, list):
        raise SnapshotError(f"{where}.statistics: expected a list of rows")
    for i, row in enumerate(stats):
        if not isinstance(row, dict):
            raise SnapshotError(f"{where}.statistics[{i}]: expected an object of field values")
        for key, v in row.items():
            if v is not None and not isinstance(v, (int, float, str, list)):
                raise SnapshotError(f"{where}.statistics[{i}].{key}: expected a number, string, null or list")
    variables = value.get("variables", {})
    if not isinstance(variables, dict):
        raise SnapshotError(f"{where}.variables: expected an object")
    return EntityData(props, stats, variables)


def from_json(obj: Any, where: str = "snapshot") -> Snapshot:
    """Validate a decoded snapshot; raise SnapshotError naming the bad part."""
    if not isinstance(obj, dict):
        raise SnapshotError(f"{where}: expected a JSON object")
    host = _entity(obj.get("host", {}), f"{where}: host")
    guests_raw = obj.get("guests", [])
    if not isinstance(guests_raw, list):
        raise SnapshotError(f"{where}: guests: expected a list")
    guests = [_entity(g, f"{where}: guests[{i}]") for i, g in enumerate(guests_raw)]
    return Snapshot(host, guests)


def read_jsonl(stream: TextIO, name: str, on_damaged: Callable[[str], None] | None = None) -> Iterator[Snapshot]:
    """Yield the snapshots of a JSON-lines stream; blank lines are skipped.

    A line that is not valid JSON raises SnapshotError, or, with
    ``on_damaged``, is reported to it (one message naming file:line) and
    skipped: a flight recorder cut by a full disk leaves a line without its end,
    with the next record appended to it. A valid JSON line that is not a
    snapshot always raises: that is the wrong file, not damage.
    """
    for lineno, line in enumerate(stream, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as e:
            why = f"not valid JSON: {e.msg} (column {e.colno})" if isinstance(e, json.JSONDecodeError) \
                else "nested too deeply"
            message = f"{name}:{lineno}: {why}"
            if on_damaged is None:
                raise SnapshotError(message) from None
            on_damaged(f"{message}; damaged line skipped")
            continue
        yield from_json(obj, f"{name}:{lineno}")
