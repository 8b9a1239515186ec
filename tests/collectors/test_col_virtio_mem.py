"""GuestVirtioMem against GuestData's virtio_mem section, and the optional newer
balloon statistics of GuestMemory and GuestBalloon."""

from __future__ import annotations

import pytest

from mom.collectors.base import CollectionError, CollectorContext, GuestSubject
from mom.collectors.guest_balloon import GuestBalloon
from mom.collectors.guest_memory import GuestMemory
from mom.collectors.guest_virtio_mem import GuestVirtioMem, GuestVirtioMemOptional
from mom.hypervisors.base import GuestData

from .test_col_guest import BALLOON, INFO, MEMORY, VIRTIO_MEM


def collect(cls: type, data: GuestData) -> dict:
    return cls(CollectorContext()).collect(GuestSubject(INFO, data))


def test_virtio_mem_fields_are_copied_and_nothing_else() -> None:
    section = {**VIRTIO_MEM, "virtio_mem_node": 0}  # an interface's extra key stays out
    assert collect(GuestVirtioMem, GuestData(virtio_mem=section)) == VIRTIO_MEM
    assert collect(GuestVirtioMemOptional, GuestData(virtio_mem=section)) == VIRTIO_MEM


def test_guest_without_device_is_left_out_with_the_interfaces_reason() -> None:
    bare = GuestData(errors={"virtio_mem": "guest web01 has no virtio-mem device"})
    with pytest.raises(CollectionError, match=r"GuestVirtioMem: no virtio_mem data for guest web01 .*: "
                                              r"guest web01 has no virtio-mem device"):
        collect(GuestVirtioMem, bare)
    assert collect(GuestVirtioMemOptional, bare) == {}


def test_missing_field_names_it() -> None:
    partial = {k: v for k, v in VIRTIO_MEM.items() if k != "virtio_mem_block"}
    with pytest.raises(CollectionError, match="lacks virtio_mem_block"):
        collect(GuestVirtioMem, GuestData(virtio_mem=partial))
    assert collect(GuestVirtioMemOptional, GuestData(virtio_mem=partial)) == partial


def test_newer_statistics_are_optional() -> None:
    """A driver before Linux 6.12 reports no OOM kills or allocation stalls, and an
    interface may not know free page reporting: the guest stays in, fields absent."""
    older = {k: v for k, v in MEMORY.items() if k not in ("oom_kills", "alloc_stalls", "hugetlb_pgalloc",
                                                          "hugetlb_pgfail", "last_update")}
    assert collect(GuestMemory, GuestData(memory=dict(older))) == older
    newer = collect(GuestMemory, GuestData(memory=dict(MEMORY)))
    assert {k: newer[k] for k in ("oom_kills", "alloc_stalls", "hugetlb_pgalloc", "hugetlb_pgfail")} == {
        "oom_kills": 2, "alloc_stalls": 345, "hugetlb_pgalloc": 12, "hugetlb_pgfail": 1}
    plain = {k: v for k, v in BALLOON.items() if k != "balloon_free_page_reporting"}
    assert collect(GuestBalloon, GuestData(balloon=dict(plain))) == plain
    assert collect(GuestBalloon, GuestData(balloon=dict(BALLOON)))["balloon_free_page_reporting"] == 1
