"""Controllers: apply the policy's decisions; one module per controller.

A controller gets the decisions of one policy run and the snapshot the policy
saw (to know current values, guest identities and limits) and returns the
actions it took or refused. It never reads /proc; it changes the host only
through the hypervisor interface.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping

from mom.hypervisors.base import GuestInfo, HypervisorInterface


@dataclass
class Action:
    """One control the controller applied (applied=True) or refused (with reason)."""

    controller: str
    target: str  # "host" or the guest's name
    control: str
    old: Any
    new: Any
    applied: bool = True
    reason: str | None = None
    time: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("time", "controller", "target", "control", "old", "new", "applied", "reason")}


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
    sys_root: str = "/sys"
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
    def apply(self, tick: TickView) -> list[Action]:
        """Apply this controller's controls from the tick; return what happened.

        Errors for one guest are reported as refused actions, never raised, so
        one guest cannot spoil the others.
        """


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
