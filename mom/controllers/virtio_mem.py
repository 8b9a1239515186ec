"""VirtioMem: resize guests' virtio-mem devices to the policy's ``mem_requested_size`` (KiB).

The device plugs and unplugs whole blocks, so the size is rounded down to a
multiple of the guest's ``virtio_mem_block`` and kept within [0,
``virtio_mem_max``] (the GuestVirtioMem collector's fields); a rounded or
clamped value is applied with a note saying so. A call is planned only when the
result differs from the device's current ``virtio_mem_requested``: one
set_virtio_mem_requested call per guest, which the engine makes in parallel with
the other guests' under one deadline.

A guest without a virtio-mem device (no ``virtio_mem_max`` in its stats) is
skipped quietly, so one policy can serve a host where only some guests have
one. A value that is not a number is refused with one line; the engine logs
each refused control once until one is applied.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from mom.controllers._common import as_int, refused
from mom.controllers.base import Change, Controller, GuestView, Plan, PlannedCall, TickView, register

log = logging.getLogger("mom.Controllers.VirtioMem")

CONTROL = "mem_requested_size"


def _kib(value: Any) -> int | None:
    """A size from the stats as an int, None when absent or not a whole number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        return None
    return int(value) if float(value).is_integer() else None


def fit_to_device(size: int, block: int, maximum: int) -> tuple[int, str | None]:
    """size clamped to [0, maximum] and rounded down to a multiple of block, with a
    note when it changed. block must be positive."""
    fitted = min(max(size, 0), maximum) // block * block
    if fitted == size:
        return fitted, None
    if size > maximum:
        return fitted, f"clamped from {size} to virtio_mem_max"
    if size < 0:
        return fitted, f"clamped from {size} to 0"
    return fitted, f"rounded down from {size} to a multiple of the {block} KiB block"


@register
class VirtioMem(Controller):
    """Guest control mem_requested_size -> HypervisorInterface.set_virtio_mem_requested."""

    name = "VirtioMem"
    guest_controls = frozenset({CONTROL})

    def plan(self, tick: TickView) -> Plan:
        plan = Plan()
        for guest in tick.guests:
            wanted = guest.controls.get(CONTROL)
            if wanted is None:
                continue
            maximum = _kib(guest.stats.get("virtio_mem_max"))
            if maximum is None:
                log.debug("guest:%s has no virtio-mem device: %s ignored", guest.info.name, CONTROL)
                continue
            current = guest.stats.get("virtio_mem_requested")
            block = _kib(guest.stats.get("virtio_mem_block"))
            try:
                size = as_int(wanted)
                if block is None or block <= 0:
                    raise ValueError(f"the guest's virtio-mem block size is unknown "
                                     f"({guest.stats.get('virtio_mem_block')!r})")
            except ValueError as e:
                plan.refused.append(refused(self.name, guest.info.name, CONTROL, current, wanted, tick.time, str(e)))
                continue
            size, note = fit_to_device(size, block, maximum)
            if current is not None and size == current:
                continue
            plan.calls.append(PlannedCall(guest.info.name, CONTROL, [Change(CONTROL, current, size, note)],
                                          self._call(guest, current, size)))
        return plan

    def _call(self, guest: GuestView, current: object, size: int) -> Callable[[], None]:
        hv = self.ctx.hypervisor

        def run() -> None:
            log.debug("virtio-mem guest:%s requested size from %s to %s KiB", guest.info.name, current, size)
            hv.set_virtio_mem_requested(guest.info, size)
        return run
