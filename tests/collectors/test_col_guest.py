import copy
from pathlib import Path

import pytest

from mom.collectors.base import CollectionError, CollectorContext, GuestSubject
from mom.collectors.guest_balloon import GuestBalloon, GuestBalloonOptional
from mom.collectors.guest_cpu_tune import GuestCpuTune, GuestCpuTuneOptional
from mom.collectors.guest_io_tune import GuestIoTune, GuestIoTuneOptional
from mom.collectors.guest_memory import GuestMemory, GuestMemoryOptional
from mom.collectors.guest_qemu_proc import GuestQemuProc
from mom.hypervisors.base import GuestData, GuestInfo

from .conftest import PROC_BASIC, set_stat_fields

INFO = GuestInfo("6f1c0d6e-8a4b-4bb2-9a8e-1d2c3b4a5f60", "web01", 4321)

MEMORY = {
    "mem_available": 4194304, "mem_unused": 1048576, "mem_free": 2621440,
    "major_fault": 312, "minor_fault": 912344, "swap_in": 0, "swap_out": 64,
    "swap_total": 2097148, "swap_usage": 1024, "mem_usable": 2883584,
    "disk_caches": 1572864, "hugetlb_pgalloc": 12, "hugetlb_pgfail": 1, "oom_kills": 2, "alloc_stalls": 345,
    "last_update": 1700000000,  # not a MOM field: must not leak through
}
BALLOON = {"balloon_cur": 4194304, "balloon_max": 8388608, "balloon_min": 2097152, "balloon_free_page_reporting": 1}
VIRTIO_MEM = {"virtio_mem_size": 1048576, "virtio_mem_requested": 2097152, "virtio_mem_block": 2048,
              "virtio_mem_max": 4194304}
CPU_TUNE = {"vcpu_quota": 50000, "vcpu_period": 100000, "vcpu_user_limit": 50, "vcpu_count": 2}
IO_TUNE = [{
    "name": "vda", "path": "/var/lib/libvirt/images/web01.qcow2",
    "guaranteed": {"total_bytes_sec": 1000000, "read_bytes_sec": 0, "write_bytes_sec": 0,
                   "total_iops_sec": 100, "read_iops_sec": 0, "write_iops_sec": 0},
    "maximum": {"total_bytes_sec": 5000000, "read_bytes_sec": 0, "write_bytes_sec": 0,
                "total_iops_sec": 500, "read_iops_sec": 0, "write_iops_sec": 0},
    "current": {"total_bytes_sec": 3000000, "read_bytes_sec": 0, "write_bytes_sec": 0,
                "total_iops_sec": 300, "read_iops_sec": 0, "write_iops_sec": 0},
}]


def full_subject() -> GuestSubject:
    return GuestSubject(INFO, GuestData(
        memory=dict(MEMORY), balloon=dict(BALLOON), cpu_tune=dict(CPU_TUNE),
        io_tune=copy.deepcopy(IO_TUNE), virtio_mem=dict(VIRTIO_MEM),
    ))


def ctx() -> CollectorContext:
    return CollectorContext(proc_root=str(PROC_BASIC), sys_root="/nonexistent")


def test_guest_memory_full() -> None:
    expected = {k: v for k, v in MEMORY.items() if k != "last_update"}
    assert GuestMemory(ctx()).collect(full_subject()) == expected
    assert GuestMemoryOptional(ctx()).collect(full_subject()) == expected


def test_guest_memory_without_optional_fields() -> None:
    mem = {k: MEMORY[k] for k in GuestMemory.mandatory}
    subject = GuestSubject(INFO, GuestData(memory=mem))
    assert GuestMemory(ctx()).collect(subject) == mem


def test_guest_memory_missing_section_names_guest_and_reason() -> None:
    subject = GuestSubject(INFO, GuestData(errors={"memory": "balloon stats period not set"}))
    with pytest.raises(CollectionError) as err:
        GuestMemory(ctx()).collect(subject)
    assert str(err.value) == (
        "GuestMemory: no memory data for guest web01 "
        "(6f1c0d6e-8a4b-4bb2-9a8e-1d2c3b4a5f60): balloon stats period not set"
    )
    assert GuestMemoryOptional(ctx()).collect(subject) == {}


def test_guest_memory_missing_section_without_reason() -> None:
    with pytest.raises(CollectionError, match=r"no memory data for guest web01 .*: the hypervisor returned no data"):
        GuestMemory(ctx()).collect(GuestSubject(INFO, GuestData()))


def test_guest_memory_missing_mandatory_field() -> None:
    mem = {k: v for k, v in MEMORY.items() if k not in ("major_fault", "swap_out")}
    with pytest.raises(CollectionError, match=r"guest web01 .* lacks major_fault, swap_out"):
        GuestMemory(ctx()).collect(GuestSubject(INFO, GuestData(memory=mem)))
    assert GuestMemoryOptional(ctx()).collect(GuestSubject(INFO, GuestData(memory=mem))) == {
        k: v for k, v in mem.items() if k != "last_update"
    }


def test_guest_balloon() -> None:
    assert GuestBalloon(ctx()).collect(full_subject()) == BALLOON
    assert GuestBalloonOptional(ctx()).collect(full_subject()) == BALLOON
    bare = GuestSubject(INFO, GuestData(errors={"balloon": "no balloon device"}))
    with pytest.raises(CollectionError, match=r"GuestBalloon: no balloon data for guest web01 .*: no balloon device"):
        GuestBalloon(ctx()).collect(bare)
    assert GuestBalloonOptional(ctx()).collect(bare) == {}


def test_guest_cpu_tune() -> None:
    assert GuestCpuTune(ctx()).collect(full_subject()) == CPU_TUNE
    partial = GuestSubject(INFO, GuestData(cpu_tune={"vcpu_count": 2, "vcpu_quota": -1}))
    with pytest.raises(CollectionError, match="lacks vcpu_period, vcpu_user_limit"):
        GuestCpuTune(ctx()).collect(partial)
    assert GuestCpuTuneOptional(ctx()).collect(partial) == {"vcpu_count": 2, "vcpu_quota": -1}


def test_guest_io_tune_copies() -> None:
    subject = full_subject()
    data = GuestIoTune(ctx()).collect(subject)
    assert data["io_tune"] == IO_TUNE
    assert data["io_tune_current"] == [{
        "name": "vda", "path": "/var/lib/libvirt/images/web01.qcow2",
        "current": IO_TUNE[0]["current"],
    }]
    # The policy may change io_tune in place without touching the snapshot
    # of current values or the hypervisor's data.
    data["io_tune"][0]["current"]["total_iops_sec"] = 150
    assert data["io_tune_current"][0]["current"]["total_iops_sec"] == 300
    assert subject.data.io_tune[0]["current"]["total_iops_sec"] == 300
    assert data["io_tune"][0]["current"] is not data["io_tune_current"][0]["current"]


def test_guest_io_tune_empty_and_missing() -> None:
    empty = GuestSubject(INFO, GuestData(io_tune=[]))
    assert GuestIoTune(ctx()).collect(empty) == {"io_tune": [], "io_tune_current": []}
    missing = GuestSubject(INFO, GuestData(errors={"io_tune": "not supported"}))
    with pytest.raises(CollectionError, match=r"GuestIoTune: no io_tune data for guest web01 .*: not supported"):
        GuestIoTune(ctx()).collect(missing)
    assert GuestIoTuneOptional(ctx()).collect(missing) == {}


def test_guest_io_tune_malformed_entry() -> None:
    bad = GuestSubject(INFO, GuestData(io_tune=[{"name": "vda", "path": None, "current": {}}]))
    with pytest.raises(CollectionError, match="io_tune entry 0 lacks guaranteed, maximum"):
        GuestIoTune(ctx()).collect(bad)
    assert GuestIoTuneOptional(ctx()).collect(bad) == {}


def test_qemu_proc_from_fixture() -> None:
    data = GuestQemuProc(ctx()).collect(GuestSubject(INFO))
    assert data == {"host_minor_faults": 0, "host_major_faults": 0, "rss": 1048576}


def test_qemu_proc_fault_deltas(proc_tree: Path) -> None:
    collector = GuestQemuProc(CollectorContext(proc_root=str(proc_tree)))
    other = GuestInfo("u-2", "db01", 4388)
    collector.collect(GuestSubject(INFO))
    collector.collect(GuestSubject(other))
    set_stat_fields(proc_tree / "4321" / "stat", {10: 2583441 + 5000, 12: 1207 + 7, 24: 1050000})
    assert collector.collect(GuestSubject(INFO)) == {
        "host_minor_faults": 5000, "host_major_faults": 7, "rss": 1050000,
    }
    # Each guest has its own baseline.
    assert collector.collect(GuestSubject(other)) == {
        "host_minor_faults": 0, "host_major_faults": 0, "rss": 2097152,
    }


def test_qemu_proc_new_pid_restarts_baseline(proc_tree: Path) -> None:
    collector = GuestQemuProc(CollectorContext(proc_root=str(proc_tree)))
    collector.collect(GuestSubject(INFO))
    restarted = GuestInfo(INFO.uuid, INFO.name, 4388)
    assert collector.collect(GuestSubject(restarted))["host_minor_faults"] == 0


def test_qemu_proc_command_name_with_spaces(tmp_path: Path) -> None:
    (tmp_path / "77").mkdir()
    (tmp_path / "77" / "stat").write_text(
        "77 (qemu ) (x) S 1 77 77 0 -1 4194560 10 0 3 0 5 6 0 0 20 0 1 0 100 1000 42 "
        "18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n"
    )
    data = GuestQemuProc(CollectorContext(proc_root=str(tmp_path))).collect(
        GuestSubject(GuestInfo("u", "odd", 77)))
    assert data == {"host_minor_faults": 0, "host_major_faults": 0, "rss": 42}


def test_qemu_proc_no_pid() -> None:
    with pytest.raises(CollectionError, match=r"guest web01 \(.*\) has no known QEMU pid"):
        GuestQemuProc(ctx()).collect(GuestSubject(GuestInfo(INFO.uuid, "web01", None)))


def test_qemu_proc_gone(tmp_path: Path) -> None:
    with pytest.raises(CollectionError, match=r"cannot read .*/4321/stat: No such file"):
        GuestQemuProc(CollectorContext(proc_root=str(tmp_path))).collect(GuestSubject(INFO))
