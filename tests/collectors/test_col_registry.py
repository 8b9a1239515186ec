"""Every collector is registered and returns exactly the fields it declares."""

import copy

import pytest

import mom.collectors  # noqa: F401  (registers everything)
from mom.collectors.base import REGISTRY, CollectorContext, GuestSubject
from mom.hypervisors.base import SECTIONS, GuestData

from .conftest import PROC_BASIC, SYS_BASIC, FakeHypervisor
from .test_col_guest import BALLOON, CPU_TUNE, INFO, IO_TUNE, MEMORY, VIRTIO_MEM

EXPECTED = {
    "HostMemory", "HostKSM", "HostCpu", "HostTime", "HostPressure",
    "GuestMemory", "GuestMemoryOptional", "GuestBalloon", "GuestBalloonOptional",
    "GuestCpuTune", "GuestCpuTuneOptional", "GuestIoTune", "GuestIoTuneOptional",
    "GuestQemuProc", "GuestQemuAgent", "GuestVirtioMem", "GuestVirtioMemOptional",
}
# Collectors that need a live agent; their own tests: tests/libvirt/test_lv_agent.py.
NEEDS_AGENT = {"GuestQemuAgent"}


def test_registry_complete() -> None:
    assert set(REGISTRY) == EXPECTED
    for name, cls in REGISTRY.items():
        assert cls.name == name
        assert not (cls.mandatory & cls.optional), name
        assert cls.sections <= set(SECTIONS), name
        assert (cls.scope == "host") == name.startswith("Host"), name


@pytest.mark.parametrize("name", sorted(EXPECTED - NEEDS_AGENT))
def test_declared_fields_equal_returned_on_full_fixture(name: str) -> None:
    cls = REGISTRY[name]
    ctx = CollectorContext(
        proc_root=str(PROC_BASIC), sys_root=str(SYS_BASIC),
        hypervisor=FakeHypervisor([INFO]), clock=lambda: 1700000000.0,
    )
    collector = cls(ctx)
    if cls.scope == "host":
        subject = None
    else:
        subject = GuestSubject(INFO, GuestData(
            memory=dict(MEMORY), balloon=dict(BALLOON), cpu_tune=dict(CPU_TUNE),
            io_tune=copy.deepcopy(IO_TUNE), virtio_mem=dict(VIRTIO_MEM),
        ))
    assert set(collector.collect(subject)) == cls.fields()
