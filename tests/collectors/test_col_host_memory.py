from pathlib import Path

import pytest

from mom.collectors.base import CollectionError, CollectorContext
from mom.collectors.host_memory import HostMemory

from .conftest import replace_line


def test_values_from_fixture(basic_ctx: CollectorContext) -> None:
    data = HostMemory(basic_ctx).collect(None)
    assert data == {
        "mem_available": 65798292,
        "mem_unused": 8123456,
        "mem_free": 8123456 + 412332 + 21034580,
        "anon_pages": 33456120,
        "swap_total": 8388604,
        "swap_usage": 8388604 - 7340028,
        "swap_in": 0,
        "swap_out": 0,
        "mem_available_kernel": 30514212,
    }


def test_swap_traffic_is_delta_since_last_collection(proc_tree: Path) -> None:
    collector = HostMemory(CollectorContext(proc_root=str(proc_tree), sys_root="/nonexistent"))
    assert collector.collect(None)["swap_in"] == 0
    vmstat = proc_tree / "vmstat"
    replace_line(vmstat, "pswpin ", "pswpin 183500")
    replace_line(vmstat, "pswpout ", "pswpout 262400")
    data = collector.collect(None)
    assert (data["swap_in"], data["swap_out"]) == (88, 256)
    # Deltas, not totals: an unchanged counter gives 0 the next time.
    replace_line(vmstat, "pswpout ", "pswpout 262410")
    data = collector.collect(None)
    assert (data["swap_in"], data["swap_out"]) == (0, 10)


def test_counter_going_back_reports_zero(proc_tree: Path) -> None:
    collector = HostMemory(CollectorContext(proc_root=str(proc_tree)))
    collector.collect(None)
    replace_line(proc_tree / "vmstat", "pswpin ", "pswpin 5")
    assert collector.collect(None)["swap_in"] == 0


def test_mem_available_kernel_optional(proc_tree: Path) -> None:
    meminfo = proc_tree / "meminfo"
    kept = [line for line in meminfo.read_text().splitlines(True) if not line.startswith("MemAvailable:")]
    meminfo.write_text("".join(kept))
    data = HostMemory(CollectorContext(proc_root=str(proc_tree))).collect(None)
    assert "mem_available_kernel" not in data
    assert data["mem_available"] == 65798292


def test_malformed_meminfo_names_file_and_line(proc_tree: Path) -> None:
    replace_line(proc_tree / "meminfo", "Cached:", "Cached:         lots kB")
    with pytest.raises(CollectionError) as err:
        HostMemory(CollectorContext(proc_root=str(proc_tree))).collect(None)
    assert str(err.value) == f"{proc_tree / 'meminfo'}:5: not a number: 'lots'"


def test_missing_key_names_file_and_key(proc_tree: Path) -> None:
    meminfo = proc_tree / "meminfo"
    kept = [line for line in meminfo.read_text().splitlines(True) if not line.startswith("AnonPages:")]
    meminfo.write_text("".join(kept))
    with pytest.raises(CollectionError, match=r"meminfo: no AnonPages line"):
        HostMemory(CollectorContext(proc_root=str(proc_tree))).collect(None)


def test_missing_vmstat(proc_tree: Path) -> None:
    (proc_tree / "vmstat").unlink()
    with pytest.raises(CollectionError, match=r"cannot read .*/vmstat: No such file"):
        HostMemory(CollectorContext(proc_root=str(proc_tree))).collect(None)
