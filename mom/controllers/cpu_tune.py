"""CpuTune: set guests' vCPU bandwidth (``vcpu_quota``, ``vcpu_period``, µs).

Only values that differ from the guest's current ones (its stats) are sent,
in one planned set_cpu_tune call per guest (an unchanged value is passed as
None); the engine makes the guests' calls in parallel under one deadline.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from mom.controllers._common import as_int, refused
from mom.controllers.base import Change, Controller, GuestView, Plan, PlannedCall, TickView, register

log = logging.getLogger("mom.Controllers.Cputune")

CONTROLS = ("vcpu_quota", "vcpu_period")


@register
class CpuTune(Controller):
    """Guest controls vcpu_quota, vcpu_period -> HypervisorInterface.set_cpu_tune."""

    name = "CpuTune"
    guest_controls = frozenset(CONTROLS)

    def plan(self, tick: TickView) -> Plan:
        plan = Plan()
        for guest in tick.guests:
            changes: list[Change] = []
            for control in CONTROLS:
                wanted = guest.controls.get(control)
                if wanted is None:
                    continue
                old = guest.stats.get(control)
                try:
                    new = as_int(wanted)
                except ValueError as e:
                    plan.refused.append(refused(self.name, guest.info.name, control, old, wanted, tick.time, str(e)))
                    continue
                if old is None or new != old:
                    changes.append(Change(control, old, new))
            if changes:
                plan.calls.append(PlannedCall(guest.info.name, "cpu_tune", changes, self._call(guest, changes)))
        return plan

    def _call(self, guest: GuestView, changes: list[Change]) -> Callable[[], None]:
        new: dict[str, Any] = {c.control: c.new for c in changes}
        quota, period = new.get("vcpu_quota"), new.get("vcpu_period")
        hv = self.ctx.hypervisor

        def run() -> None:
            log.debug("CpuTune guest:%s from quota:%s period:%s to quota:%s period:%s", guest.info.name,
                      guest.stats.get("vcpu_quota"), guest.stats.get("vcpu_period"),
                      quota if quota is not None else guest.stats.get("vcpu_quota"),
                      period if period is not None else guest.stats.get("vcpu_period"))
            hv.set_cpu_tune(guest.info, quota=quota, period=period)
        return run
