"""Balloon: resize guest balloons to the policy's ``balloon_target`` (KiB).

The target is clamped to [balloon_min, balloon_max] from the guest's stats
(when known) and planned only when it differs from the current balloon size:
one set_balloon_target call per guest, which the engine makes in parallel with
the other guests' under one deadline. Each call is logged at debug level (one
line per guest and tick would flood an info log on a large host; the tick
line lists the actions).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from mom.controllers._common import as_int, refused
from mom.controllers.base import Change, Controller, GuestView, Plan, PlannedCall, TickView, register

log = logging.getLogger("mom.Controllers.Balloon")


@register
class Balloon(Controller):
    """Guest control balloon_target -> HypervisorInterface.set_balloon_target."""

    name = "Balloon"
    guest_controls = frozenset({"balloon_target"})

    def plan(self, tick: TickView) -> Plan:
        plan = Plan()
        for guest in tick.guests:
            wanted = guest.controls.get("balloon_target")
            if wanted is None:
                continue
            current = guest.stats.get("balloon_cur")
            try:
                target = as_int(wanted)
            except ValueError as e:
                plan.refused.append(refused(self.name, guest.info.name, "balloon_target", current, wanted,
                                            tick.time, str(e)))
                continue
            target, note = self._clamp(target, guest.stats.get("balloon_min"), guest.stats.get("balloon_max"))
            if current is not None and target == current:
                continue
            plan.calls.append(PlannedCall(guest.info.name, "balloon_target",
                                          [Change("balloon_target", current, target, note)],
                                          self._call(guest, current, target)))
        return plan

    def _call(self, guest: GuestView, current: object, target: int) -> Callable[[], None]:
        hv = self.ctx.hypervisor

        def run() -> None:
            log.debug("Ballooning guest:%s from %s to %s", guest.info.name, current, target)
            hv.set_balloon_target(guest.info, target)
        return run

    @staticmethod
    def _clamp(target: int, low: object, high: object) -> tuple[int, str | None]:
        """Keep target in [low, high]; a limit that is unknown (None) is not applied."""
        hi = high if isinstance(high, (int, float)) and not isinstance(high, bool) else None
        lo = low if isinstance(low, (int, float)) and not isinstance(low, bool) else None
        if hi is not None and target > hi:
            return int(hi), f"clamped from {target} to balloon_max"
        # A guarantee above the maximum is a config error; the maximum wins.
        if lo is not None and target < lo and (hi is None or lo <= hi):
            return int(lo), f"clamped from {target} to balloon_min"
        return target, None
