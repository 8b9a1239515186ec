"""From libvirt's statistics to MOM's GuestData sections (no calls here).

Memory statistics fields (KiB unless said): mem_available (guest total,
virtio "available"), mem_unused ("unused"), mem_free (unused + disk_caches),
mem_usable ("usable"), disk_caches ("disk_caches"), major_fault, minor_fault
(counts), swap_in, swap_out, and where the driver reports them
hugetlb_pgalloc, hugetlb_pgfail ("hugetlb_pgalloc", "hugetlb_pgfail": huge
page allocations that succeeded and failed, counts). They come from the bulk
record's ``balloon.*`` keys (getAllDomainStats) or, when the driver leaves
those empty, from memoryStats(). oom_kills and alloc_stalls are never there:
libvirt 9.0 (Debian 12's) has no memoryStats key for them, though newer QEMU
balloon drivers report them over QMP (the qmp interface passes them on).

The balloon section is the boot memory's balloon, as over QMP and in the
simulator: balloon_cur <= balloon_max = the boot memory, virtio-mem apart.
libvirt's QEMU driver counts virtio-mem memory in its balloon figures: its
current size (info()'s memory, the bulk record's ``balloon.current``) is
QEMU's balloon plus every virtio-mem device's plugged size (``<current>``,
not ``<requested>``), its maximum (info()'s maxMemory, ``balloon.maximum``)
the domain's total memory, boot memory plus every device's region
(``<size>``). Measured with libvirt 9.0.0 (Debian 12) and QEMU 7.2, 512 MiB
boot memory and 256 MiB plugged in a 512 MiB region: info() [1048576,
786432], while QMP's query-balloon said 512 MiB; mid-plug, with 128 MiB of
the 256 MiB plugged, 655360. balloon_section takes them off again.
memoryStats()' ``actual`` is QEMU's balloon alone (unused here); its
``available`` is the guest's MemTotal, plugged memory included, as QMP's
stat-total-memory: mem_available is the guest's own view and keeps it.

The balloon section adds balloon_free_page_reporting (1/0) from the domain
XML's ``<memballoon freePageReporting>``, absent without a virtio balloon.
The virtio_mem section (virtio_mem_size, virtio_mem_requested,
virtio_mem_block, virtio_mem_max; KiB) is the domain XML's virtio-mem
device's ``<current>``, ``<requested>``, ``<block>`` and ``<size>``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import libvirt

from mom.core.disks import IO_KEYS
from mom.core.faults import OncePerKind
from mom.hypervisors.libvirt.domain_xml import DomainXml, VirtioMem

log = logging.getLogger("mom.libvirt")

# memoryStats() / balloon.* key -> MOM field
MEMORY_FIELDS = {
    "available": "mem_available",
    "unused": "mem_unused",
    "usable": "mem_usable",
    "disk_caches": "disk_caches",
    "major_fault": "major_fault",
    "minor_fault": "minor_fault",
    "swap_in": "swap_in",
    "swap_out": "swap_out",
    "hugetlb_pgalloc": "hugetlb_pgalloc",
    "hugetlb_pgfail": "hugetlb_pgfail",
}
# The keys that say the guest's balloon driver really reports statistics.
GUEST_STAT_KEYS = ("available", "unused", "usable")
# The same names as getAllDomainStats spells them, made once (read for every guest and tick).
_BULK_GUEST_STAT_KEYS = tuple(f"balloon.{k}" for k in GUEST_STAT_KEYS)
_BULK_MEMORY_KEYS = tuple((k, f"balloon.{k}") for k in MEMORY_FIELDS)
# A bulk record in one of these states is a guest that is not running any more.
INACTIVE_STATES = frozenset({libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_CRASHED})

NO_BALLOON_STATS = ("the guest reports no balloon statistics "
                    "(no virtio-balloon driver in the guest, or no statistics period set)")


def bulk_memory(rec: Mapping[str, Any]) -> dict[str, Any] | None:
    """The memoryStats()-style map inside a bulk record; None when the driver left it empty."""
    if not any(key in rec for key in _BULK_GUEST_STAT_KEYS):
        return None
    return {k: rec[key] for k, key in _BULK_MEMORY_KEYS if key in rec}


def reports_memory(raw: Mapping[str, Any]) -> bool:
    """Whether a memoryStats() answer carries the guest's own statistics."""
    return any(k in raw for k in GUEST_STAT_KEYS)


def memory_section(raw: Mapping[str, Any]) -> dict[str, Any]:
    """GuestData.memory from a memoryStats()-style map."""
    out = {MEMORY_FIELDS[k]: int(v) for k, v in raw.items() if k in MEMORY_FIELDS}
    if "unused" in raw and "disk_caches" in raw:
        out["mem_free"] = int(raw["unused"]) + int(raw["disk_caches"])
    return out


def bulk_balloon(rec: Mapping[str, Any]) -> tuple[int, int] | None:
    """(current, maximum) KiB from a bulk record; None when it lacks them."""
    cur, top = rec.get("balloon.current"), rec.get("balloon.maximum")
    if cur is None or top is None:
        return None
    return int(cur), int(top)


def balloon_section(cur: int, top: int, xml: DomainXml) -> dict[str, Any]:
    """GuestData.balloon from libvirt's (current, maximum) KiB and the domain XML:
    the boot memory's balloon, the virtio-mem devices' plugged sizes and regions
    that libvirt adds taken off (see the module doc). The XML is read after
    libvirt's figures: while the guest plugs, the two may differ by a step, so
    the result is kept within [0, maximum]."""
    if xml.virtio_mem_devices:
        top = max(0, top - xml.virtio_mem_regions)
        cur = min(max(0, cur - xml.virtio_mem_plugged), top)
    else:
        top = max(0, top)
        cur = min(max(0, cur), top)
    out: dict[str, Any] = {"balloon_cur": cur, "balloon_max": top, "balloon_min": xml.balloon_min}
    if xml.free_page_reporting is not None:
        out["balloon_free_page_reporting"] = int(xml.free_page_reporting)
    return out


def virtio_mem_section(device: VirtioMem) -> dict[str, Any]:
    """GuestData.virtio_mem from the domain XML's device."""
    return {"virtio_mem_size": device.current, "virtio_mem_requested": device.requested,
            "virtio_mem_block": device.block, "virtio_mem_max": device.size}


def io_tune_entry(name: str, path: str | None, policy: Mapping[str, Mapping[str, int]],
                  values: Mapping[str, Any]) -> dict[str, Any]:
    """One GuestData.io_tune entry from a disk, its policy bounds and blockIoTune()."""
    return {"name": name, "path": path, "guaranteed": dict(policy["guaranteed"]),
            "maximum": dict(policy["maximum"]), "current": {k: int(values.get(k, 0)) for k in IO_KEYS}}


def report_failed_round(once: OncePerKind, what: str, failed: Mapping[int, list[tuple[str, str]]]) -> None:
    """One warning per kind of per-guest problem, not one per guest: the first time
    a kind (a libvirt error code) is seen, one warning says for how many guests and
    why (the first guest's message); later rounds of the same kind are debug lines.

    failed: kind -> [(guest name, message)] of one round; ``once`` (no period)
    remembers the kinds warned about."""
    for kind, hits in failed.items():
        new = once.due(kind) is not None
        names = sorted(name for name, _ in hits)
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        count = f"{len(names)} guest{'s' if len(names) != 1 else ''}"
        log.log(logging.WARNING if new else logging.DEBUG, "libvirt: %s for %s (%s): %s%s", what, count,
                shown, hits[0][1], "; later guests with this error are logged at debug level" if new else "")
