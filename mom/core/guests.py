"""Guests as the tick passes them between layers: who a guest is and what one
collection round learned about it.

- :class:`GuestInfo`: a running guest's identity (UUID, name, QEMU pid), from
  the hypervisor interface's discovery; the key of everything per guest.
- :class:`GuestData`: one guest's data sections from one collection round, as
  the interface returns them and the guest collectors read them.

Units follow the original MOM: memory in KiB, CPU quota and period in
microseconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Data sections a guest collector may ask the hypervisor interface for, in collection order.
SECTIONS = ("memory", "balloon", "cpu_tune", "io_tune", "virtio_mem")


@dataclass(frozen=True)
class GuestInfo:
    """What discovery knows about a running guest."""

    uuid: str
    name: str
    pid: int | None = None


@dataclass
class GuestData:
    """One guest's data from one bulk collection; a section is None when unavailable.

    - memory: mem_available (guest total), mem_unused, mem_free, major_fault,
      minor_fault, swap_in, swap_out, swap_total, swap_usage, and where known
      mem_usable, disk_caches (KiB), hugetlb_pgalloc, hugetlb_pgfail, oom_kills,
      alloc_stalls (counts).
    - balloon: balloon_cur, balloon_max, balloon_min (KiB); where known
      balloon_free_page_reporting (1/0: the balloon device reports free pages).
    - cpu_tune: vcpu_quota, vcpu_period, vcpu_user_limit, vcpu_count.
    - io_tune: list of {name, path, guaranteed, maximum, current}, the value maps
      keyed by :data:`mom.core.disks.IO_KEYS`.
    - virtio_mem: virtio_mem_size (plugged), virtio_mem_requested,
      virtio_mem_block, virtio_mem_max (the device's region) in KiB; None
      when the guest has no virtio-mem device.
    - errors: section -> message for sections that failed.
    - unsupported: the sections in errors that failed because the guest or the
      interface lacks the device or feature (NotSupported), not because a call
      failed: normal for a section that only optional collectors read.
    """

    memory: dict[str, Any] | None = None
    balloon: dict[str, Any] | None = None
    cpu_tune: dict[str, Any] | None = None
    io_tune: list[dict[str, Any]] | None = None
    virtio_mem: dict[str, Any] | None = None
    errors: dict[str, str] = field(default_factory=dict)
    unsupported: set[str] = field(default_factory=set)
