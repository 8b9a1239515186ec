"""Actions: what the controllers did with the policy's controls, one per control.

An Action is the vocabulary shared by the controllers (which make them), the
engine (which records them in a tick), and the readers of the engine's status
(RPC's getRecentActions, the metrics, the tick line, the flight recorder).
"""

from __future__ import annotations

from typing import Any, NamedTuple

HOST = "host"  # the target of a host control; any other target is a guest's name


class Action(NamedTuple):
    """One control applied (applied=True) or refused (with the reason).

    Immutable, as everything in the engine's status. A NamedTuple rather than a frozen
    dataclass: a tick makes one per guest control, and a frozen dataclass's __init__
    made the balloon control step ~18% slower (bench/control_bench.py, in place)."""

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
