import os
from pathlib import Path

import pytest

from mom.collectors.base import CollectionError, CollectorContext
from mom.collectors.host_ksm import HostKSM
from mom.hypervisors.base import GuestInfo

from .conftest import PROC_BASIC, SYS_BASIC, FakeHypervisor, set_stat_fields

TICKS = os.sysconf("SC_CLK_TCK")
GUESTS = [
    GuestInfo("u-1", "vm1", 4321),
    GuestInfo("u-2", "vm2", 4388),
    GuestInfo("u-3", "no-pid", None),
    GuestInfo("u-4", "exited", 9999),  # no /proc entry: gone since listed
]


def test_values_from_fixture(basic_ctx: CollectorContext) -> None:
    data = HostKSM(basic_ctx).collect(None)
    assert data == {
        "ksm_run": 1,
        "ksm_pages_to_scan": 64,
        "ksm_sleep_millisecs": 20,
        "ksm_pages_shared": 12345,
        "ksm_pages_sharing": 67890,
        "ksm_pages_unshared": 23456,
        "ksm_pages_volatile": 789,
        "ksm_full_scans": 42,
        "ksm_merge_across_nodes": 1,
        "ksm_shareable": 0,  # no hypervisor
        "ksmd_cpu_usage": 0.0,  # first collection
    }


def test_shareable_sums_guest_qemu_vmsize() -> None:
    ctx = CollectorContext(str(PROC_BASIC), str(SYS_BASIC), hypervisor=FakeHypervisor(GUESTS))
    assert HostKSM(ctx).collect(None)["ksm_shareable"] == 4395972 + 8691260


def test_shareable_hypervisor_failure() -> None:
    ctx = CollectorContext(str(PROC_BASIC), str(SYS_BASIC), hypervisor=FakeHypervisor(fail=True))
    with pytest.raises(CollectionError, match="cannot list guests for ksm_shareable: connection refused"):
        HostKSM(ctx).collect(None)


def test_ksmd_cpu_usage_between_collections(proc_tree: Path) -> None:
    collector = HostKSM(CollectorContext(str(proc_tree), str(SYS_BASIC), interval=10.0))
    assert collector.collect(None)["ksmd_cpu_usage"] == 0.0
    # 1523+4210 -> 1600+4333: 77 + 123 = 200 jiffies in a 10 s interval.
    set_stat_fields(proc_tree / "87" / "stat", {14: 1600, 15: 4333})
    usage = collector.collect(None)["ksmd_cpu_usage"]
    assert usage == pytest.approx(100.0 * 200 / (TICKS * 10.0))
    assert collector.collect(None)["ksmd_cpu_usage"] == 0.0  # nothing used since


def test_ksmd_found_by_name_not_pid(proc_tree: Path) -> None:
    os.rename(proc_tree / "87", proc_tree / "91")
    collector = HostKSM(CollectorContext(str(proc_tree), str(SYS_BASIC), interval=5.0))
    collector.collect(None)
    set_stat_fields(proc_tree / "91" / "stat", {14: 1523 + TICKS})
    assert collector.collect(None)["ksmd_cpu_usage"] == pytest.approx(20.0)


def test_ksmd_restart_resets_baseline(proc_tree: Path) -> None:
    collector = HostKSM(CollectorContext(str(proc_tree), str(SYS_BASIC), interval=5.0))
    collector.collect(None)
    os.rename(proc_tree / "87", proc_tree / "95")
    set_stat_fields(proc_tree / "95" / "stat", {14: 9000})
    assert collector.collect(None)["ksmd_cpu_usage"] == 0.0


def test_no_ksmd_reports_zero(proc_tree: Path) -> None:
    (proc_tree / "87" / "comm").write_text("kworker/0:1\n")
    collector = HostKSM(CollectorContext(str(proc_tree), str(SYS_BASIC)))
    assert collector.collect(None)["ksmd_cpu_usage"] == 0.0
    assert collector.collect(None)["ksmd_cpu_usage"] == 0.0


def test_merge_across_nodes_optional(sys_tree: Path) -> None:
    (sys_tree / "kernel/mm/ksm/merge_across_nodes").unlink()
    data = HostKSM(CollectorContext(str(PROC_BASIC), str(sys_tree))).collect(None)
    assert "ksm_merge_across_nodes" not in data
    assert data["ksm_pages_sharing"] == 67890


def test_missing_mandatory_file(sys_tree: Path) -> None:
    (sys_tree / "kernel/mm/ksm/pages_volatile").unlink()
    with pytest.raises(CollectionError, match=r"cannot read .*kernel/mm/ksm/pages_volatile: No such file"):
        HostKSM(CollectorContext(str(PROC_BASIC), str(sys_tree))).collect(None)


def test_garbage_in_sysfs_file(sys_tree: Path) -> None:
    (sys_tree / "kernel/mm/ksm/run").write_text("on\n")
    with pytest.raises(CollectionError, match=r"kernel/mm/ksm/run: not a number: 'on'"):
        HostKSM(CollectorContext(str(PROC_BASIC), str(sys_tree))).collect(None)
