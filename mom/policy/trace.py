"""Why a policy run decided what it did: the variables it computed, per guest.

``trace_run`` evaluates a policy on a snapshot, as CompiledPolicy.run does, with
an environment that notes every variable the policy binds (defvar, set, let,
parameters) and which guest was in scope then: a name bound while a guest is
bound to a variable (``with Guests vm`` or a call ``(shrink vm)``) belongs to
that guest, any other to the host. Variables are noted with the last value they
had, so a guest's ``size`` is the size computed for it.

It runs the policy in force with its own environment and Machine, as every
evaluation has: nothing is shared with the daemon's runs.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from mom.policy.compiled import CompiledPolicy
from mom.policy.compiler import MACHINE, UNBOUND, Machine
from mom.policy.errors import PolicyError
from mom.policy.runtime import Entity, debug_log
from mom.policy.snapshot import Snapshot

MAX_VARIABLES = 64  # per entity: a runaway policy cannot make a trace (or a record line) grow without end
MAX_TEXT = 200  # characters of a string value kept


@dataclass
class Trace:
    """What a run computed: variables of the host and of each guest, and the controls."""

    ok: bool
    error: str | None = None
    host_variables: dict[str, Any] = field(default_factory=dict)
    guest_variables: dict[str, dict[str, Any]] = field(default_factory=dict)
    host_controls: dict[str, Any] = field(default_factory=dict)
    guest_controls: dict[str, dict[str, Any]] = field(default_factory=dict)
    host_calls: list[str] = field(default_factory=list)  # the policy's functions called, first call first
    guest_calls: dict[str, list[str]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "error": self.error, "host_variables": self.host_variables,
                "guest_variables": self.guest_variables, "host_controls": self.host_controls,
                "guest_controls": self.guest_controls, "host_calls": self.host_calls,
                "guest_calls": self.guest_calls}


def plain(value: Any) -> Any:
    """A variable's value as a bounded JSON value; None for what is not data
    (entities, functions), so it is left out."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return value if len(value) <= MAX_TEXT else value[:MAX_TEXT] + "..."
    if isinstance(value, list):
        items = [plain(v) for v in value[:16]]
        return items + ["..."] if len(value) > 16 else items
    return None


class _Env(dict[str, Any]):
    """The policy's variable environment, noting each binding and its guest."""

    def __init__(self, base: dict[str, Any], trace: Trace) -> None:
        super().__init__(base)
        self.trace = trace
        self.scopes: list[tuple[str, Entity]] = []  # guest bindings in force, innermost last

    def guest_name(self) -> str | None:
        guest = self._guest()
        return None if guest is None else str(guest.properties.get("name", "?"))

    def _guest(self) -> Entity | None:
        while self.scopes:
            name, guest = self.scopes[-1]
            bound: object = dict.get(self, name)
            if bound is guest:
                return guest
            self.scopes.pop()  # that binding was restored away
        return None

    def __setitem__(self, name: str, value: Any) -> None:
        super().__setitem__(name, value)
        if isinstance(value, Entity):
            if value.kind == "Guest":
                self.scopes.append((name, value))
            return
        kept = plain(value)
        if kept is None and value is not None:
            return
        label = self.guest_name()
        if label is None:
            self._note(self.trace.host_variables, name, kept)
        else:
            self._note(self.trace.guest_variables.setdefault(label, {}), name, kept)

    @staticmethod
    def _note(table: dict[str, Any], name: str, value: Any) -> None:
        if name in table or len(table) < MAX_VARIABLES:
            table[name] = value


class _Functions(dict[str, Any]):
    """The machine's table of the policy's functions, noting each call (the call
    looks its function up here): which branches ran, for whom."""

    def __init__(self, env: _Env) -> None:
        super().__init__()
        self.env = env

    def __getitem__(self, name: str) -> Any:
        found = super().__getitem__(name)
        label = self.env.guest_name()
        trace = self.env.trace
        calls = trace.host_calls if label is None else trace.guest_calls.setdefault(label, [])
        if name not in calls and len(calls) < MAX_VARIABLES:
            calls.append(name)
        return found


_state = threading.local()  # .tracing: this thread is in a traced run


class _QuietWhileTracing(logging.Filter):
    """The policy's (debug ...) lines were logged by the run being traced: not twice."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(_state, "tracing", False)


debug_log.addFilter(_QuietWhileTracing())

def trace_run(policy: CompiledPolicy, snapshot: Snapshot) -> Trace:
    """Evaluate ``policy`` on ``snapshot`` noting the variables."""
    _state.tracing = True
    try:
        return _traced(policy, snapshot)
    finally:
        _state.tracing = False


def _traced(policy: CompiledPolicy, snapshot: Snapshot) -> Trace:
    host, guests = snapshot.entities()
    trace = Trace(True)
    V = _Env({"Host": host, "Guests": guests}, trace)
    S: dict[str, Any] = {"Host": UNBOUND, "Guests": UNBOUND}
    machine = Machine(policy.budget)
    machine.defs = _Functions(V)
    dict.__setitem__(V, MACHINE, machine)  # the run's state, not a variable to note
    try:
        for i, code in enumerate(policy.code):
            try:
                code(V, S)
            except PolicyError as e:
                if e.pos is None:
                    e.pos = policy.forms[i].pos
                raise
    except RecursionError:
        return Trace(False, "expressions nested too deeply")
    except PolicyError as e:
        return Trace(False, str(e), trace.host_variables, trace.guest_variables)
    trace.host_controls = dict(host.controls)
    for i, g in enumerate(guests):
        if g.controls:
            trace.guest_controls[str(g.properties.get("name", f"guest-{i}"))] = dict(g.controls)
    # Names bound at the top level and never restored are the policy's globals: their final values.
    for name, value in V.items():
        if name in trace.host_variables:
            trace.host_variables[name] = plain(value)
    return trace
