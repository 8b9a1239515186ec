"""A compiled policy and what one run of it decides.

``compile_policy`` turns an ordered list of sources into a CompiledPolicy that
evaluates under a Budget; ``Decisions`` is what one run produces.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from mom.policy.compiler import MACHINE, UNBOUND, Budget, Closure, Compiler, Machine
from mom.policy.errors import PolicyError, Source
from mom.policy.parser import Node, parse
from mom.policy.runtime import Entity
from mom.policy.snapshot import Snapshot


@dataclass
class Decisions:
    """The outcome of one policy run; the JSON keys are what `momctl policy run` prints."""

    ok: bool
    error: str | None = None
    host_controls: dict[str, Any] = field(default_factory=dict)
    guest_controls: dict[str, dict[str, Any]] = field(default_factory=dict)
    host_variables: dict[str, Any] = field(default_factory=dict)
    guest_variables: dict[str, dict[str, Any]] = field(default_factory=dict)
    policy_error: PolicyError | None = None

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "error": self.error, "host_controls": self.host_controls,
                "guest_controls": self.guest_controls}


def json_value(value: Any) -> Any:
    """A policy value as JSON: entities and io_tune entries by their label."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list):
        return [json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    return repr(value)




class CompiledPolicy:
    """A policy compiled once; ``evaluate`` runs it with a fresh environment.

    ``budget`` bounds each evaluation (steps, depth, sizes, bytes built, time);
    keyword limits (``max_steps=50``) replace single fields of it. Nothing of a
    run is kept here: each evaluation has its own environment and Machine, so
    threads may evaluate one compiled policy at the same time.
    """

    def __init__(self, sources: Iterable[Source], budget: Budget | None = None, **limits: Any) -> None:
        self.sources = list(sources)
        self.budget = (budget or Budget()).with_limits(**limits)
        compiler = Compiler()
        self.forms = [node for src in self.sources for node in parse(src)]
        self.code = [compiler.compile(node) for node in self.forms]

    @classmethod
    def assemble(cls, sources: list[Source], budget: Budget, forms: list[Node], code: list[Closure]) -> CompiledPolicy:
        """A policy from forms already compiled (validation compiles each form
        once, collecting every error on the way)."""
        policy = cls.__new__(cls)
        policy.sources, policy.budget, policy.forms, policy.code = sources, budget, forms, code
        return policy

    def set_budget(self, budget: Budget) -> None:
        """Change the bounds of the next evaluations (no recompiling)."""
        self.budget = budget

    def evaluate(self, host: Entity | None = None, guests: list[Entity] | None = None,
                 machine: Machine | None = None) -> list[Any]:
        """Run every top-level expression; return their values. Raises PolicyError.
        ``machine`` is the run's state, a new one when not given (pass one to
        read what the run used of its budget)."""
        V: dict[str, Any] = {"Host": host if host is not None else Entity("Host", {}, []),
                             "Guests": guests if guests is not None else []}
        S = {"Host": UNBOUND, "Guests": UNBOUND}
        V[MACHINE] = machine or Machine(self.budget)  # this run's state, in this run's environment
        values: list[Any] = []
        try:
            for f in self.code:
                values.append(f(V, S))
        except RecursionError:
            raise PolicyError("expressions nested too deeply", self.forms[len(values)].pos) from None
        except PolicyError as e:
            if e.pos is None:
                e.pos = self.forms[len(values)].pos
            raise
        return values

    def run(self, snapshot: Snapshot, machine: Machine | None = None) -> Decisions:
        """Evaluate on a snapshot and collect the controls. A PolicyError gives
        ok=False and no controls at all: a failed run decides nothing."""
        host, guests = snapshot.entities()
        try:
            self.evaluate(host, guests, machine)
        except PolicyError as e:
            return Decisions(False, str(e), policy_error=e)
        d = Decisions(True, host_controls=dict(host.controls), host_variables=host.variables)
        for i, g in enumerate(guests):
            name = str(g.properties.get("name", f"guest-{i}"))
            controls = dict(g.controls)
            changed = g.changed_io_tune()
            if changed:
                controls["io_tune"] = changed
            if controls:
                d.guest_controls[name] = controls
            if g.variables:
                d.guest_variables[name] = g.variables
        return d


def compile_policy(sources: Iterable[Source], budget: Budget | None = None, **limits: Any) -> CompiledPolicy:
    """Parse and compile sources in order (no checks beyond the compiler's).
    Raises PolicyError at the first fault."""
    return CompiledPolicy(sources, budget, **limits)
