"""CpuTune: set guests' vCPU bandwidth (``vcpu_quota``, ``vcpu_period``, µs).

Only values that differ from the guest's current ones (its stats) are sent,
in one set_cpu_tune call per guest; an unchanged value is passed as None.
"""

from __future__ import annotations

import logging
from typing import Any

from mom.controllers._common import action, as_int, attempt
from mom.controllers.base import Action, Controller, TickView, register

log = logging.getLogger("mom.Controllers.Cputune")

CONTROLS = ("vcpu_quota", "vcpu_period")


@register
class CpuTune(Controller):
    """Guest controls vcpu_quota, vcpu_period -> HypervisorInterface.set_cpu_tune."""

    name = "CpuTune"
    guest_controls = frozenset(CONTROLS)

    def apply(self, tick: TickView) -> list[Action]:
        actions: list[Action] = []
        for guest in tick.guests:
            name = guest.info.name
            changed: dict[str, tuple[Any, int]] = {}
            for control in CONTROLS:
                wanted = guest.controls.get(control)
                if wanted is None:
                    continue
                old = guest.stats.get(control)
                try:
                    new = as_int(wanted)
                except ValueError as e:
                    actions.append(action(self.name, name, control, old, wanted, tick.time, str(e)))
                    continue
                if old is None or new != old:
                    changed[control] = (old, new)
            if not changed:
                continue
            quota = changed["vcpu_quota"][1] if "vcpu_quota" in changed else None
            period = changed["vcpu_period"][1] if "vcpu_period" in changed else None
            log.info("CpuTune guest:%s from quota:%s period:%s to quota:%s period:%s", name,
                     guest.stats.get("vcpu_quota"), guest.stats.get("vcpu_period"),
                     quota if quota is not None else guest.stats.get("vcpu_quota"),
                     period if period is not None else guest.stats.get("vcpu_period"))
            error = attempt(lambda: self.ctx.hypervisor.set_cpu_tune(guest.info, quota=quota, period=period))
            if error is not None:
                log.debug("CpuTune guest:%s failed: %s", name, error)
            for control, (old, new) in changed.items():
                actions.append(action(self.name, name, control, old, new, tick.time, error))
        return actions
