"""KSM: tune the kernel's same-page merging from the host controls.

Controls ``ksm_run`` (0 stop, 1 run, 2 stop and unmerge all), ``ksm_pages_to_scan``,
``ksm_sleep_millisecs`` and ``ksm_merge_across_nodes``. A value is written only
when it differs from the current one: the host's HostKSM stats when present,
else what this controller wrote last. All changes are one planned call on the
host, which the engine makes on its pool under the call deadline.

The kernel refuses to change merge_across_nodes while pages are merged
(EBUSY), so when it changes and pages may be shared that one call writes
run=2 first (unmerge, done synchronously by the kernel), then
merge_across_nodes, then restores the wanted run mode: an ordered sequence on
one target, never split into calls that could run in parallel.
"""

from __future__ import annotations

import logging
from typing import Any

from mom.controllers._common import as_int, refused
from mom.controllers.base import Change, Controller, ControllerContext, Plan, PlannedCall, TickView, register
from mom.hypervisors.base import KSM_TUNABLES

log = logging.getLogger("mom.Controllers.KSM")

# Write order: the rate first, so ksmd never starts with stale speed settings.
ORDER = ("merge_across_nodes", "pages_to_scan", "sleep_millisecs", "run")


@register
class KSM(Controller):
    """Host controls ksm_* -> HypervisorInterface.set_ksm_tune."""

    name = "KSM"
    host_controls = frozenset(f"ksm_{key}" for key in ORDER)

    def __init__(self, ctx: ControllerContext, settings: dict[str, str] | None = None) -> None:
        super().__init__(ctx, settings)
        self.written: dict[str, int] = {}

    def _current(self, tick: TickView, key: str) -> Any:
        value = tick.host_stats.get(f"ksm_{key}")
        return self.written.get(key) if value is None else value

    def plan(self, tick: TickView) -> Plan:
        plan = Plan()
        changes: list[Change] = []
        for key in ORDER:
            assert key in KSM_TUNABLES
            wanted = tick.host_controls.get(f"ksm_{key}")
            if wanted is None:
                continue
            old = self._current(tick, key)
            try:
                new = as_int(wanted)
            except ValueError as e:
                plan.refused.append(refused(self.name, "host", f"ksm_{key}", old, wanted, tick.time, str(e)))
                continue
            try:
                differs = old is None or as_int(old) != new
            except ValueError:
                differs = True  # an unreadable current value: write ours
            if differs:
                changes.append(Change(f"ksm_{key}", old, new))
        if changes:
            params = {c.control[len("ksm_"):]: c.new for c in changes}
            plan.calls.append(PlannedCall("host", "ksm", changes, lambda: self._run(tick, params)))
        return plan

    def _run(self, tick: TickView, params: dict[str, int]) -> None:
        """The planned call: write, then remember what was written (a failed write is
        not remembered, so the next tick tries again)."""
        log.debug("Updating KSM configuration: %s", " ".join(f"{k}:{v}" for k, v in params.items()))
        self._write(tick, params)
        self.written.update(params)

    def _write(self, tick: TickView, params: dict[str, int]) -> None:
        hv = self.ctx.hypervisor
        shared = tick.host_stats.get("ksm_pages_shared")
        run_now = self._current(tick, "run")
        if "merge_across_nodes" not in params or shared == 0 or run_now == 2:
            hv.set_ksm_tune(params)
            return
        final_run = params.get("run", run_now)
        hv.set_ksm_tune({"run": 2})
        rest = dict(params)
        rest.pop("run", None)
        if final_run is not None and as_int(final_run) != 2:
            rest["run"] = as_int(final_run)  # last, after merge_across_nodes
        else:
            self.written["run"] = 2
        hv.set_ksm_tune(rest)
