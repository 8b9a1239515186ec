"""Balloon: resize guest balloons to the policy's ``balloon_target`` (KiB).

The target is clamped to [balloon_min, balloon_max] from the guest's stats
(when known) and sent only when it differs from the current balloon size.
"""

from __future__ import annotations

import logging

from mom.controllers._common import action, as_int, attempt
from mom.controllers.base import Action, Controller, TickView, register

log = logging.getLogger("mom.Controllers.Balloon")


@register
class Balloon(Controller):
    """Guest control balloon_target -> HypervisorInterface.set_balloon_target."""

    name = "Balloon"
    guest_controls = frozenset({"balloon_target"})

    def apply(self, tick: TickView) -> list[Action]:
        actions: list[Action] = []
        for guest in tick.guests:
            wanted = guest.controls.get("balloon_target")
            if wanted is None:
                continue
            name = guest.info.name
            current = guest.stats.get("balloon_cur")
            try:
                target = as_int(wanted)
            except ValueError as e:
                actions.append(action(self.name, name, "balloon_target", current, wanted, tick.time, str(e)))
                continue
            target, note = self._clamp(target, guest.stats.get("balloon_min"), guest.stats.get("balloon_max"))
            if current is not None and target == current:
                continue
            log.info("Ballooning guest:%s from %s to %s", name, current, target)
            error = attempt(lambda: self.ctx.hypervisor.set_balloon_target(guest.info, target))
            if error is not None:
                log.debug("Ballooning guest:%s failed: %s", name, error)
            actions.append(action(self.name, name, "balloon_target", current, target, tick.time, error, note))
        return actions

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
