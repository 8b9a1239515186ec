"""Loading policies: reading files, and the daemon's named policies.

``PolicySet`` holds the daemon's named policies (concatenated in name order),
validates every change (mom.policy.validate) and swaps them atomically.
``CompiledPolicy``, ``compile_policy``, ``Decisions`` and ``json_value`` live in
mom.policy.compiled and are re-exported here.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable

from mom.policy.compiled import CompiledPolicy, Decisions, compile_policy, json_value
from mom.policy.compiler import Budget
from mom.policy.errors import Finding, PolicyError, Source
from mom.policy.snapshot import Snapshot
from mom.policy.validate import PolicyChecks, validate_policy

__all__ = ["CompiledPolicy", "Decisions", "compile_policy", "json_value", "read_policy_paths", "policy_files",
           "policy_name", "PolicySet", "DEFAULT_POLICY_NAME", "PolicyError"]


def policy_files(directory: str) -> list[str]:
    """The ``*.policy`` files of a directory, sorted by name, dot-files skipped. Raises OSError."""
    names = sorted(n for n in os.listdir(directory) if n.endswith(".policy") and not n.startswith("."))
    return [os.path.join(directory, n) for n in names]


def read_policy_paths(paths: Iterable[str]) -> list[Source]:
    """Sources for files and directories in the order given; a directory gives its
    ``*.policy`` files sorted by name, dot-files skipped. Raises OSError."""
    sources: list[Source] = []
    for path in paths:
        if os.path.isdir(path):
            sources.extend(_read(p) for p in policy_files(path))
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

    Every change validates the new whole first (validate_policy with ``checks``:
    parse, static checks, a trial evaluation when checks give a snapshot); a
    text that is refused raises PolicyError (a PolicyRejected with every
    finding) and what was in force stays in force. Each evaluation runs under
    ``budget``; ``max_steps``/``max_depth`` replace those fields of it.
    """

    def __init__(self, max_steps: int | None = None, max_depth: int | None = None, *,
                 budget: Budget | None = None, checks: PolicyChecks | None = None) -> None:
        limits = {k: v for k, v in (("max_steps", max_steps), ("max_depth", max_depth)) if v is not None}
        self._budget = (budget or Budget()).with_limits(**limits)
        self.checks = checks or PolicyChecks()
        self._texts: dict[str, str] = {}
        self._origins: dict[str, str] = {}  # name -> file it came from, for error positions
        # Orders the changes (set, replace_all, configure): each validates a new
        # whole and swaps it in. Runs take no lock: they read ``compiled`` once,
        # and a compiled policy keeps no state of a run.
        self._lock = threading.Lock()
        self.compiled = compile_policy([], self._budget)
        self.warnings: list[Finding] = []  # of the policy in force

    @property
    def budget(self) -> Budget:
        return self._budget

    def configure(self, *, checks: PolicyChecks | None = None, budget: Budget | None = None) -> None:
        """Change what later changes are checked against, or the budget (which
        applies at once to the policy in force, without recompiling it)."""
        with self._lock:
            if checks is not None:
                self.checks = checks
            if budget is not None:
                self._budget = budget
                self.compiled.set_budget(budget)

    def _swap(self, texts: dict[str, str], origins: dict[str, str] | None = None) -> list[Finding]:
        origins = {n: o for n, o in (self._origins if origins is None else origins).items() if n in texts}
        sources = [Source(origins.get(n, n), texts[n]) for n in sorted(texts)]
        valid = validate_policy(sources, self.checks, self._budget)
        self._texts, self._origins, self.compiled = texts, origins, valid.policy
        self.warnings = valid.warnings
        return valid.warnings

    def set(self, name: str, text: str | None) -> list[Finding]:
        """Add, replace (text) or delete (None) one named policy; return the
        warnings of the new whole. Raises PolicyError."""
        with self._lock:
            texts = dict(self._texts)
            origins = dict(self._origins)
            origins.pop(name, None)  # a text set by name is reported by its name
            if text is None:
                texts.pop(name, None)
            else:
                texts[name] = text
            return self._swap(texts, origins)

    def replace_all(self, texts: dict[str, str], origins: dict[str, str] | None = None) -> list[Finding]:
        """Replace every named policy at once; return the warnings. Raises PolicyError."""
        with self._lock:
            return self._swap(dict(texts), dict(origins or {}))

    def load_paths(self, policy_file: str | None = None, policy_dir: str | None = None) -> list[Finding]:
        """Replace everything with a policy file (under DEFAULT_POLICY_NAME) or a
        directory's *.policy files (named by base name); return the warnings.
        Raises PolicyError, OSError."""
        texts: dict[str, str] = {}
        origins: dict[str, str] = {}
        if policy_file:
            texts[DEFAULT_POLICY_NAME] = _read(policy_file).text
            origins[DEFAULT_POLICY_NAME] = policy_file
        if policy_dir:
            for src in read_policy_paths([policy_dir]):
                texts[policy_name(src.name)] = src.text
                origins[policy_name(src.name)] = src.name
        return self.replace_all(texts, origins)

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
