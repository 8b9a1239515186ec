"""Validation: the one gate every policy passes before it is put in force.

``validate_policy`` is what the daemon calls when it loads policies (at start,
``momd --check``, SIGHUP, RPC setPolicy/setNamedPolicy/resetPolicies, all
through PolicySet) and ``check_policy`` is the same work reporting every
finding instead of raising (``momctl policy check``):

1. parse and compile every source (syntax and structure errors);
2. the static checks (checker.py): unknown variables, functions, arity,
   statistic names and control names;
3. a trial evaluation on a snapshot (the daemon's newest, or a generated one),
   under the same budget as every evaluation.

Error findings refuse the policy; warnings do not.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

from mom.policy.checker import check_forms
from mom.policy.compiled import CompiledPolicy
from mom.policy.compiler import Budget, Compiler
from mom.policy.errors import Finding, PolicyError, PolicyRejected, Source
from mom.policy.parser import Node, parse
from mom.policy.snapshot import Snapshot


@dataclass(frozen=True)
class PolicyChecks:
    """What a policy is checked against. None means "not known: not checked".
    The caller gives plain names (momd builds them from its registries:
    mom.daemon.policy_checks); this package knows nothing of collectors.

    - host_fields, guest_fields: the statistic names the collectors provide;
    - host_controls, guest_controls: control name -> the controller that acts
      on it, for every registered controller (an unknown name is an error);
    - enabled_controllers: the controllers that run here (a control of
      another is only a warning: policy sets move between hosts);
    - trial_snapshot: gives the snapshot of the trial evaluation.
    """

    host_fields: frozenset[str] | None = None
    guest_fields: frozenset[str] | None = None
    host_controls: Mapping[str, str] | None = None
    guest_controls: Mapping[str, str] | None = None
    enabled_controllers: frozenset[str] | None = None
    trial_snapshot: Callable[[], Snapshot] | None = field(default=None, compare=False)


@dataclass
class CheckReport:
    """Every finding, in source order; the compiled policy when there is no error."""

    findings: list[Finding]
    policy: CompiledPolicy | None

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]


@dataclass
class ValidPolicy:
    policy: CompiledPolicy
    warnings: list[Finding]


TRIAL_NOTE = "found by a trial evaluation"


def check_policy(sources: Iterable[Source], checks: PolicyChecks | None = None,
                 budget: Budget | None = None) -> CheckReport:
    """Parse, compile, check statically and (when the checks give a snapshot and
    nothing else failed) evaluate once. Never raises PolicyError."""
    with _collector_paused():
        return _check(list(sources), checks or PolicyChecks(), budget or Budget())


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector paused while a policy is checked.

    A check builds a node and a closure or two for every expression, all alive
    until it ends; the collector would scan them again and again as they pile
    up, which made checking grow faster than the policy (4x the time for 2x the
    definitions at 20,000). They hold no cycles that need collecting then.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _check(sources: list[Source], checks: PolicyChecks, budget: Budget) -> CheckReport:
    compiler = Compiler()
    findings: list[Finding] = []
    forms: list[Node] = []
    code = []
    for src in sources:
        try:
            nodes = parse(src)
        except PolicyError as e:
            findings.append(Finding("error", e))
            continue
        for node in nodes:
            try:
                code.append(compiler.compile(node))
            except PolicyError as e:
                findings.append(Finding("error", e))
                continue
            forms.append(node)
    findings += check_forms(forms, checks)
    policy = None
    if not any(f.severity == "error" for f in findings):
        policy = CompiledPolicy.assemble(sources, budget, forms, code)
        trial = _trial(policy, checks)
        if trial is not None:
            findings.append(trial)
            if trial.severity == "error":
                policy = None
    order = {id(src): i for i, src in enumerate(sources)}
    findings.sort(key=lambda f: (order.get(id(f.pos.source), -1), f.pos.line, f.pos.col) if f.pos else (-1, 0, 0))
    return CheckReport(findings, policy)


def _trial(policy: CompiledPolicy, checks: PolicyChecks) -> Finding | None:
    """The error of a trial evaluation, if it fails; a warning when there is no
    snapshot to try it on (the policy is not at fault then)."""
    if checks.trial_snapshot is None:
        return None
    try:
        snapshot = checks.trial_snapshot()
    except Exception as e:  # noqa: BLE001 - whatever the provider's fault, it is not the policy's
        return Finding("warning", PolicyError(f"no trial evaluation: no snapshot to run it on: {e}"))
    decisions = policy.run(snapshot)
    if decisions.ok:
        return None
    error = decisions.policy_error or PolicyError(decisions.error or "the trial evaluation failed")
    error.note = TRIAL_NOTE
    return Finding("error", error)


def validate_policy(sources: Iterable[Source], checks: PolicyChecks | None = None,
                    budget: Budget | None = None) -> ValidPolicy:
    """The compiled policy and its warnings, or PolicyRejected (a PolicyError:
    the first error's position and message, every finding in ``.findings``)."""
    report = check_policy(sources, checks, budget)
    if report.policy is None:
        raise PolicyRejected(report.findings)
    return ValidPolicy(report.policy, report.warnings)
