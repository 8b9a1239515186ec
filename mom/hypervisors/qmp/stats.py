"""From QMP's answers to MOM's GuestData sections (no calls here).

The balloon device's ``guest-stats`` property (``qom-get``) carries the guest
driver's statistics in bytes and counts, each ``-1`` while the driver has not
reported it; ``last-update`` is 0 until the first report. Mapped as libvirt
maps the same virtio statistics (mom.hypervisors.libvirt.stats): memory in KiB,
faults and the newer event counters as counts.

==========================  =================  =====================
guest-stats key             MOM field          unit
==========================  =================  =====================
stat-total-memory           mem_available      KiB (guest MemTotal)
stat-free-memory            mem_unused         KiB (guest MemFree)
stat-available-memory       mem_usable         KiB (guest MemAvailable)
stat-disk-caches            disk_caches        KiB
stat-swap-in, stat-swap-out swap_in, swap_out  KiB
stat-major-faults           major_fault        count
stat-minor-faults           minor_fault        count
stat-htlb-pgalloc           hugetlb_pgalloc    count
stat-htlb-pgfail            hugetlb_pgfail     count
stat-oom-kills              oom_kills          count (newer QEMU and guests)
stat-alloc-stalls           alloc_stalls       count (newer QEMU and guests)
==========================  =================  =====================

mem_free is mem_unused + disk_caches, as with libvirt.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

KIB = 1024

# guest-stats key -> (MOM field, divisor to MOM's unit)
MEMORY_FIELDS: dict[str, tuple[str, int]] = {
    "stat-total-memory": ("mem_available", KIB),
    "stat-free-memory": ("mem_unused", KIB),
    "stat-available-memory": ("mem_usable", KIB),
    "stat-disk-caches": ("disk_caches", KIB),
    "stat-swap-in": ("swap_in", KIB),
    "stat-swap-out": ("swap_out", KIB),
    "stat-major-faults": ("major_fault", 1),
    "stat-minor-faults": ("minor_fault", 1),
    "stat-htlb-pgalloc": ("hugetlb_pgalloc", 1),
    "stat-htlb-pgfail": ("hugetlb_pgfail", 1),
    "stat-oom-kills": ("oom_kills", 1),
    "stat-alloc-stalls": ("alloc_stalls", 1),
}
# The keys that say the guest's balloon driver really reports statistics.
GUEST_STAT_KEYS = ("stat-total-memory", "stat-free-memory")

NO_BALLOON_STATS = ("the guest reports no balloon statistics yet "
                    "(no virtio-balloon driver in the guest, or its first report is due)")


def memory_section(guest_stats: Mapping[str, Any]) -> dict[str, int] | None:
    """GuestData.memory from a ``guest-stats`` value; None when the guest has reported nothing."""
    raw = guest_stats.get("stats")
    if not isinstance(raw, Mapping) or not guest_stats.get("last-update"):
        return None
    out: dict[str, int] = {}
    for key, (field, divisor) in MEMORY_FIELDS.items():
        value = raw.get(key)
        if isinstance(value, int) and value >= 0:
            out[field] = value // divisor
    if not all(MEMORY_FIELDS[k][0] in out for k in GUEST_STAT_KEYS):
        return None
    if "disk_caches" in out:
        out["mem_free"] = out["mem_unused"] + out["disk_caches"]
    return out


def balloon_section(actual_bytes: int, base_bytes: int, free_page_reporting: bool | None) -> dict[str, int]:
    """GuestData.balloon: ``query-balloon``'s actual and the guest's base memory
    (``query-memory-size-summary``), KiB. balloon_min is 0: QEMU keeps no
    guaranteed minimum (a policy's floor is its own)."""
    out = {"balloon_cur": actual_bytes // KIB, "balloon_max": base_bytes // KIB, "balloon_min": 0}
    if free_page_reporting is not None:
        out["balloon_free_page_reporting"] = int(free_page_reporting)
    return out


def virtio_mem_entry(devices: Any) -> dict[str, Any] | None:
    """The first virtio-mem entry's ``data`` of ``query-memory-devices``; None without one."""
    if not isinstance(devices, list):
        return None
    for dev in devices:
        if isinstance(dev, Mapping) and dev.get("type") == "virtio-mem" and isinstance(dev.get("data"), Mapping):
            return dict(dev["data"])
    return None


def virtio_mem_section(data: Mapping[str, Any]) -> dict[str, int]:
    """GuestData.virtio_mem from a virtio-mem entry (bytes) in KiB."""
    return {"virtio_mem_size": int(data["size"]) // KIB, "virtio_mem_requested": int(data["requested-size"]) // KIB,
            "virtio_mem_block": int(data["block-size"]) // KIB, "virtio_mem_max": int(data["max-size"]) // KIB}
