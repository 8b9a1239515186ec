"""GuestMemory: a guest's memory statistics from the hypervisor (balloon driver).

Reads the "memory" section of the tick's GuestData. Raises CollectionError when
the section or a mandatory field is missing.

Mandatory fields:

- mem_available: memory the guest OS sees in total (KiB).
- mem_unused: memory the guest leaves completely unused (KiB).
- major_fault, minor_fault: the guest's page faults (counts, as the
  hypervisor reports them).
- swap_in, swap_out: memory the guest swapped in/out (KiB, as reported).

Optional fields:

- mem_free: unused memory plus reclaimable caches (KiB).
- swap_total, swap_usage: the guest's swap space and the part in use (KiB).
- mem_usable: what the guest could give without swapping (KiB; virtio
  "usable", close to the guest's MemAvailable).
- disk_caches: memory the guest uses for its page cache (KiB).
- hugetlb_pgalloc, hugetlb_pgfail: huge page allocations that succeeded and
  failed since the guest booted (counts; libvirt's ``hugetlb_pgalloc``,
  QEMU's ``stat-htlb-pgalloc``/``stat-htlb-pgfail``).
- oom_kills: the guest's OOM killer's kills since it booted (count; reported
  by Linux 6.12 and later guests).
- alloc_stalls: allocations that entered direct reclaim since the guest booted
  (count; Linux 6.12 and later guests).

The optional fields are there only when the guest's driver reports them (and
the interface passes them on): a policy asks with ``(guest.Has ...)`` or reads
nil.
"""

from __future__ import annotations

from mom.collectors._common import SectionCollector
from mom.collectors.base import optional_variant, register

MEMORY_MANDATORY = frozenset({
    "mem_available", "mem_unused", "major_fault", "minor_fault", "swap_in", "swap_out",
})
MEMORY_OPTIONAL = frozenset({"mem_free", "swap_total", "swap_usage", "mem_usable", "disk_caches",
                             "hugetlb_pgalloc", "hugetlb_pgfail", "oom_kills", "alloc_stalls"})


@register
class GuestMemory(SectionCollector):
    """Guest memory statistics; the guest is skipped when they are missing."""

    name = "GuestMemory"
    section = "memory"
    sections = frozenset({"memory"})
    mandatory = MEMORY_MANDATORY
    optional = MEMORY_OPTIONAL


# MOM's GuestMemoryOptional: the same fields, all optional; never raises.
GuestMemoryOptional = optional_variant(GuestMemory)
