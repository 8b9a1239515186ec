"""IoTune: apply the policy's per-disk IO limits (guest control ``io_tune``).

The control is a list of disk entries ``{name, path, current: {limit: value}}``
(``ioTune`` is accepted for ``current``, as vdsm names it). Each entry is
compared with the disk's present limits from the guest's stats
(``io_tune_current``, else ``io_tune``), matched by the one disk rule of
:mod:`mom.core.disks` (path, else name), which the interfaces apply too; the
entries that differ are sent in one planned set_io_tune call per guest; the
engine makes the guests' calls in parallel under one deadline.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from mom.controllers._common import refused
from mom.controllers.base import Change, Controller, GuestView, Plan, PlannedCall, TickView, register
from mom.core.disks import entry_ident, find_disk

log = logging.getLogger("mom.Controllers.IoTune")


def _limits(entry: Any) -> dict[str, Any] | None:
    """The limit map of an entry (dict or object with ioTune()/current)."""
    if isinstance(entry, dict):
        values = entry.get("current", entry.get("ioTune"))
    elif hasattr(entry, "ioTune"):
        values = entry.ioTune().get("ioTune")
    else:
        values = getattr(entry, "current", None)
        values = getattr(values, "vals", values)
    return dict(values) if isinstance(values, dict) else None


def _find(present: list[Any], name: Any, path: Any) -> dict[str, Any] | None:
    """The present limits of the disk (name, path) means, by the one disk rule."""
    entry = find_disk(present, name, path, entry_ident)
    return None if entry is None else _limits(entry)


@register
class IoTune(Controller):
    """Guest control io_tune -> HypervisorInterface.set_io_tune (changed disks only)."""

    name = "IoTune"
    guest_controls = frozenset({"io_tune"})

    def plan(self, tick: TickView) -> Plan:
        plan = Plan()
        for guest in tick.guests:
            wanted = guest.controls.get("io_tune")
            if not wanted:
                continue
            name = guest.info.name
            present = guest.stats.get("io_tune_current") or guest.stats.get("io_tune")
            if not isinstance(wanted, list) or not isinstance(present, list):
                reason = ("io_tune control is not a list" if not isinstance(wanted, list)
                          else "the guest's current IO limits are unknown")
                plan.refused.append(refused(self.name, name, "io_tune", None, wanted, tick.time, reason))
                continue
            changed: list[dict[str, Any]] = []
            before: list[dict[str, Any] | None] = []
            for entry in wanted:
                d_name, d_path = entry_ident(entry)
                limits = _limits(entry)
                if limits is None:
                    continue
                now = _find(present, d_name, d_path)
                if now is not None and all(now.get(k) == v for k, v in limits.items()):
                    continue
                changed.append({"name": d_name, "path": d_path, "current": limits})
                before.append(now)
            if changed:
                plan.calls.append(PlannedCall(name, "io_tune", [Change("io_tune", before, changed)],
                                              self._call(guest, changed)))
        return plan

    def _call(self, guest: GuestView, changed: list[dict[str, Any]]) -> Callable[[], None]:
        hv = self.ctx.hypervisor

        def run() -> None:
            log.debug("IoTune guest:%s setting %s", guest.info.name, changed)
            hv.set_io_tune(guest.info, changed)
        return run
