"""What policies are checked against here: the statistic names the collectors
provide and the control names the controllers act on, read from their
registries and handed to mom.policy as plain sets (mom.policy.validate.PolicyChecks).

The policy package knows nothing of collectors or controllers; momd, the lab
and ``momctl policy check`` build their checks here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import mom.collectors
import mom.controllers  # noqa: F401  (fills the registry)
from mom.collectors.base import REGISTRY as COLLECTORS
from mom.controllers.base import REGISTRY as CONTROLLERS
from mom.daemon.config import Config
from mom.policy.generate import trial_snapshot as generated_trial_snapshot
from mom.policy.snapshot import Snapshot
from mom.policy.validate import PolicyChecks


def policy_checks(config: Config) -> PolicyChecks:
    """The configured collectors' fields and the controls of every controller,
    of which the configured ones run."""
    return registry_checks(enabled_collectors=config.host_collectors + config.guest_collectors,
                           enabled_controllers=config.main.controllers)


def registry_checks(*, enabled_collectors: Iterable[str] | None = None,
                    enabled_controllers: Iterable[str] | None = None,
                    extra_fields: Iterable[str] = (),
                    trial_snapshot: Callable[[], Snapshot] | None = None) -> PolicyChecks:
    """Checks from the registries. Fields come from ``enabled_collectors`` (all
    registered when None) plus ``extra_fields``; controls from every registered
    controller, of which ``enabled_controllers`` run (all when None). Without
    ``trial_snapshot`` the trial runs on a generated snapshot that has exactly
    these fields. Raises ValueError for a name no registry knows."""
    host, guest = collector_fields(enabled_collectors)
    extra = frozenset(extra_fields)
    host, guest = host | extra, guest | extra
    enabled = None
    if enabled_controllers is not None:
        enabled = frozenset(enabled_controllers)
        _known(enabled, CONTROLLERS, "controller")
    host_controls = {c: name for name, cls in CONTROLLERS.items() for c in cls.host_controls}
    guest_controls = {c: name for name, cls in CONTROLLERS.items() for c in cls.guest_controls}
    if trial_snapshot is None:
        def trial_snapshot() -> Snapshot:
            return generated_trial_snapshot(host, guest)
    return PolicyChecks(host, guest, host_controls, guest_controls, enabled, trial_snapshot)


def collector_fields(names: Iterable[str] | None = None) -> tuple[frozenset[str], frozenset[str]]:
    """The host and guest statistic names of the named collectors (all when None).
    Raises ValueError for a name the registry does not know."""
    chosen = list(COLLECTORS) if names is None else list(names)
    _known(chosen, COLLECTORS, "collector")
    host = frozenset().union(*(COLLECTORS[n].fields() for n in chosen if COLLECTORS[n].scope == "host"))
    guest = frozenset().union(*(COLLECTORS[n].fields() for n in chosen if COLLECTORS[n].scope == "guest"))
    return host, guest


def _known(names: Iterable[str], registry: Mapping[str, object], what: str) -> None:
    unknown = sorted(set(names) - set(registry))
    if unknown:
        raise ValueError(f"unknown {what}{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
                         f"(known: {', '.join(sorted(registry))})")
