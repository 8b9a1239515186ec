"""Controllers: turn the policy's decisions into hypervisor and sysfs calls.

A controller gets the decisions of one policy run and the snapshot the policy
saw (to know current values, guest identities and limits) and *plans*: it
returns a :class:`Plan`, the calls it wants made, one :class:`PlannedCall` per
target (a guest, or the host), each with the controls it changes and a
callable that makes the call, plus the actions it refused outright (a value
that is not a number). It never reads /proc and changes the host only through
the hypervisor interface.

The engine runs the planned calls on its pool, all in parallel under one
deadline, and records one :class:`Action` per control: applied, or refused with
the reason (the call's error, no answer in time, or a previous call for the
same target still running). So one hung guest costs only its own control.
Calls whose order matters (KSM's merge_across_nodes) are one PlannedCall that
makes them in order. :meth:`Controller.apply` runs a plan in place, one call
after another (for tools and tests).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from mom.core.actions import Action
from mom.core.host_paths import SYS_ROOT
from mom.hypervisors.base import GuestInfo, HypervisorInterface


@dataclass(frozen=True)
class Change:
    """One control a planned call sets: its value now and the one sent."""

    control: str
    old: Any
    new: Any
    note: str | None = None  # recorded as the applied action's reason (e.g. "clamped ...")


@dataclass
class PlannedCall:
    """One hypervisor or sysfs call for one target, not made yet.

    ``name`` says what the call sets, in messages ("previous balloon_target call
    for vm3 has not returned"); ``run`` makes the call and raises on failure.
    """

    target: str  # "host" or the guest's name
    name: str
    changes: list[Change]
    run: Callable[[], None]

    def actions(self, controller: str, time: float, error: str | None = None,
                note: str | None = None) -> list[Action]:
        """The record of this call: one Action per change, refused with ``error`` when
        set; ``note`` is added to an applied change's own note."""
        out = []
        for c in self.changes:
            if error is not None:
                out.append(Action(controller, self.target, c.control, c.old, c.new, False, error, time))
            else:
                reason = "; ".join(n for n in (c.note, note) if n) or None
                out.append(Action(controller, self.target, c.control, c.old, c.new, True, reason, time))
        return out


@dataclass
class Plan:
    """What a controller wants done this tick: calls to make and actions refused already."""

    calls: list[PlannedCall] = field(default_factory=list)
    refused: list[Action] = field(default_factory=list)


@dataclass
class GuestView:
    """A guest as the controllers see it: identity, newest stats row, controls."""

    info: GuestInfo
    stats: dict[str, Any]
    controls: dict[str, Any]


@dataclass
class TickView:
    """Everything a controller needs from one policy run."""

    time: float
    host_stats: dict[str, Any]
    host_controls: dict[str, Any]
    guests: list[GuestView] = field(default_factory=list)


@dataclass
class ControllerContext:
    hypervisor: HypervisorInterface
    sys_root: str = SYS_ROOT
    clock: Callable[[], float] | None = None


class Controller(ABC):
    name: ClassVar[str]
    # The control names this controller acts on, set by the policy with
    # (Host.Control NAME v) and (guest.Control NAME v): what the policy checker
    # accepts as known controls, and how they are told apart from typos.
    host_controls: ClassVar[frozenset[str]] = frozenset()
    guest_controls: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, ctx: ControllerContext, settings: Mapping[str, str] | None = None) -> None:
        self.ctx = ctx
        self.settings = dict(settings or {})

    @abstractmethod
    def plan(self, tick: TickView) -> Plan:
        """The calls this tick's controls need (only for values that differ from
        the current ones) and the controls refused outright. Makes no call itself
        and does not block: the engine runs the calls on its pool."""

    def apply(self, tick: TickView) -> list[Action]:
        """Plan and make the calls here, one after another; what happened.

        A failing call is a refused action, never an exception, so one guest
        cannot spoil the others. (The engine does not use this: it runs the
        calls in parallel under a deadline.)"""
        plan = self.plan(tick)
        actions: list[Action] = []
        for call in plan.calls:
            actions.extend(call.actions(self.name, tick.time, run_call(call)))
        return actions + plan.refused


def run_call(call: PlannedCall) -> str | None:
    """Make one planned call; None on success, else the error text.

    Any exception counts, not only HypervisorError: one guest's failure must
    never stop the others."""
    try:
        call.run()
    except Exception as e:  # noqa: BLE001 - see docstring
        return str(e) or type(e).__name__
    return None


REGISTRY: dict[str, type[Controller]] = {}


def control_owners(scope: str) -> dict[str, str]:
    """Control name -> the registered controller that acts on it; scope is
    "host" or "guest"."""
    attr = "host_controls" if scope == "host" else "guest_controls"
    return {control: name for name, cls in REGISTRY.items() for control in getattr(cls, attr)}


def register(cls: type[Controller]) -> type[Controller]:
    if cls.name in REGISTRY:
        raise ValueError(f"controller {cls.name} registered twice")
    REGISTRY[cls.name] = cls
    return cls
