"""Loading and running policies.

``compile_policy`` turns an ordered list of sources into a CompiledPolicy;
``PolicySet`` holds the daemon's named policies (concatenated in name order)
and swaps them atomically; ``Decisions`` is what one run produces.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any, Iterable

from mom.policy.compiler import DEFAULT_MAX_DEPTH, DEFAULT_MAX_STEPS, Compiler, Machine, UNBOUND
from mom.policy.errors import PolicyError, Source
from mom.policy.parser import parse
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
    """A policy compiled once; ``evaluate`` runs it with a fresh environment."""

    def __init__(self, sources: list[Source], max_steps: int = DEFAULT_MAX_STEPS,
                 max_depth: int = DEFAULT_MAX_DEPTH) -> None:
        self.sources = sources
        self.machine = Machine(max_steps, max_depth)
        compiler = Compiler(self.machine)
        self.code = [compiler.compile(node) for src in sources for node in parse(src)]
        self._lock = threading.Lock()

    def evaluate(self, host: Entity | None = None, guests: list[Entity] | None = None) -> list[Any]:
        """Run every top-level expression; return their values. Raises PolicyError."""
        V: dict[str, Any] = {"Host": host if host is not None else Entity("Host", {}, []),
                             "Guests": guests if guests is not None else []}
        S = {"Host": UNBOUND, "Guests": UNBOUND}
        with self._lock:
            self.machine.reset()
            try:
                return [f(V, S) for f in self.code]
            except RecursionError:
                raise PolicyError("expressions nested too deeply") from None

    def run(self, snapshot: Snapshot) -> Decisions:
        """Evaluate on a snapshot and collect the controls. A PolicyError gives
        ok=False and no controls at all: a failed run decides nothing."""
        host, guests = snapshot.entities()
        try:
            self.evaluate(host, guests)
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


def compile_policy(sources: Iterable[Source], **limits: int) -> CompiledPolicy:
    """Parse and compile sources in order. Raises PolicyError."""
    return CompiledPolicy(list(sources), **limits)


def read_policy_paths(paths: Iterable[str]) -> list[Source]:
    """Sources for files and directories in the order given; a directory gives its
    ``*.policy`` files sorted by name, dot-files skipped. Raises OSError."""
    sources: list[Source] = []
    for path in paths:
        if os.path.isdir(path):
            names = sorted(n for n in os.listdir(path) if n.endswith(".policy") and not n.startswith("."))
            sources.extend(_read(os.path.join(path, n)) for n in names)
        else:
            sources.append(_read(path))
    return sources


def _read(path: str) -> Source:
    with open(path, encoding="utf-8", errors="replace") as f:
        return Source(path, f.read())


def policy_name(path: str) -> str:
    """The name a policy file gets in a PolicySet: its base name without .policy."""
    base = os.path.basename(path)
    return base[: -len(".policy")] if base.endswith(".policy") else base


DEFAULT_POLICY_NAME = "50_main_"  # the name a single policy file is loaded under, as the original


class PolicySet:
    """Named policy texts, run as one policy concatenated in name order.

    Every change compiles the new whole first; a text that does not compile is
    rejected with its PolicyError and what was in force stays in force.
    """

    def __init__(self, max_steps: int = DEFAULT_MAX_STEPS, max_depth: int = DEFAULT_MAX_DEPTH) -> None:
        self._limits = {"max_steps": max_steps, "max_depth": max_depth}
        self._texts: dict[str, str] = {}
        self._origins: dict[str, str] = {}  # name -> file it came from, for error positions
        self._lock = threading.Lock()
        self.compiled = compile_policy([], **self._limits)

    def _swap(self, texts: dict[str, str], origins: dict[str, str] | None = None) -> None:
        origins = {n: o for n, o in (self._origins if origins is None else origins).items() if n in texts}
        sources = [Source(origins.get(n, n), texts[n]) for n in sorted(texts)]
        compiled = compile_policy(sources, **self._limits)
        self._texts, self._origins, self.compiled = texts, origins, compiled

    def set(self, name: str, text: str | None) -> None:
        """Add, replace (text) or delete (None) one named policy. Raises PolicyError."""
        with self._lock:
            texts = dict(self._texts)
            origins = dict(self._origins)
            origins.pop(name, None)  # a text set by name is reported by its name
            if text is None:
                texts.pop(name, None)
            else:
                texts[name] = text
            self._swap(texts, origins)

    def replace_all(self, texts: dict[str, str], origins: dict[str, str] | None = None) -> None:
        """Replace every named policy at once. Raises PolicyError."""
        with self._lock:
            self._swap(dict(texts), dict(origins or {}))

    def load_paths(self, policy_file: str | None = None, policy_dir: str | None = None) -> None:
        """Replace everything with a policy file (under DEFAULT_POLICY_NAME) or a
        directory's *.policy files (named by base name). Raises PolicyError, OSError."""
        texts: dict[str, str] = {}
        origins: dict[str, str] = {}
        if policy_file:
            texts[DEFAULT_POLICY_NAME] = _read(policy_file).text
            origins[DEFAULT_POLICY_NAME] = policy_file
        if policy_dir:
            for src in read_policy_paths([policy_dir]):
                texts[policy_name(src.name)] = src.text
                origins[policy_name(src.name)] = src.name
        self.replace_all(texts, origins)

    def names(self) -> list[str]:
        return sorted(self._texts)

    def texts(self) -> dict[str, str]:
        return dict(self._texts)

    def text(self) -> str:
        """All texts joined in name order; '0' when there are none (as the original)."""
        texts = self._texts  # one read: a concurrent set() swaps the dict, never changes it
        return "\n".join(texts[n] for n in sorted(texts)) or "0"

    def run(self, snapshot: Snapshot) -> Decisions:
        return self.compiled.run(snapshot)

