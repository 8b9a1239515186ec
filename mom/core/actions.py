"""Actions: what the controllers did with the policy's controls, one per control.

An Action is the vocabulary shared by the controllers (which make them), the
engine (which records them in a tick), and the readers of the engine's status
(RPC's getRecentActions, the metrics, the tick line, the flight recorder).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

HOST = "host"  # the target of a host control; any other target is a guest's name


@dataclass(frozen=True)
class Action:
    """One control applied (applied=True) or refused (with the reason)."""

    controller: str
    target: str  # "host" or the guest's name
    control: str
    old: Any
    new: Any
    applied: bool = True
    reason: str | None = None
    time: float = 0.0

    def to_json(self) -> dict[str, Any]:
        fields = ("time", "controller", "target", "control", "old", "new", "applied", "reason")
        return {k: getattr(self, k) for k in fields}
