import datetime
from pathlib import Path

import pytest

from mom.collectors.base import CollectionError, CollectorContext
from mom.collectors.host_cpu import HostCpu
from mom.collectors.host_pressure import HostPressure
from mom.collectors.host_time import HostTime


def test_cpu_count(basic_ctx: CollectorContext) -> None:
    assert HostCpu(basic_ctx).collect(None) == {"cpu_count": 4}


def test_cpu_count_s390_style(tmp_path: Path) -> None:
    (tmp_path / "cpuinfo").write_text(
        "vendor_id       : IBM/S390\n# processors    : 2\nbogomips per cpu: 3033.00\n"
        "processor 0: version = FF,  identification = 0133E8,  machine = 2964\n"
        "processor 1: version = FF,  identification = 0133E8,  machine = 2964\n"
    )
    assert HostCpu(CollectorContext(proc_root=str(tmp_path))).collect(None) == {"cpu_count": 2}


def test_cpu_count_without_processor_lines(tmp_path: Path) -> None:
    (tmp_path / "cpuinfo").write_text("vendor_id\t: GenuineIntel\n")
    with pytest.raises(CollectionError, match="cpuinfo: no processor lines"):
        HostCpu(CollectorContext(proc_root=str(tmp_path))).collect(None)


def test_time_from_context_clock() -> None:
    stamp = 1700000000.25
    data = HostTime(CollectorContext(proc_root="/nonexistent", clock=lambda: stamp)).collect(None)
    local = datetime.datetime.fromtimestamp(stamp)
    assert data == {
        "time": stamp,
        "time_year": local.year,
        "time_month": local.month,
        "time_day": local.day,
        "time_hour": local.hour,
        "time_minute": local.minute,
        "time_second": local.second,
        "time_microsecond": 250000,
    }
    assert local.year == 2023 and local.month == 11


def test_time_defaults_to_wall_clock() -> None:
    import time

    before = time.time()
    data = HostTime(CollectorContext()).collect(None)
    assert before <= data["time"] <= time.time()


def test_pressure_values(basic_ctx: CollectorContext) -> None:
    assert HostPressure(basic_ctx).collect(None) == {
        "mem_pressure_some_avg10": 1.25,
        "mem_pressure_some_avg60": 0.87,
        "mem_pressure_some_avg300": 0.31,
        "mem_pressure_some_total": 48213977,
        "mem_pressure_full_avg10": 0.50,
        "mem_pressure_full_avg60": 0.22,
        "mem_pressure_full_avg300": 0.07,
        "mem_pressure_full_total": 19871234,
    }


def test_pressure_missing_file(proc_tree: Path) -> None:
    (proc_tree / "pressure" / "memory").unlink()
    with pytest.raises(CollectionError, match=r"cannot read .*pressure/memory: No such file.*PSI"):
        HostPressure(CollectorContext(proc_root=str(proc_tree))).collect(None)


def test_pressure_malformed_value(proc_tree: Path) -> None:
    (proc_tree / "pressure" / "memory").write_text(
        "some avg10=1.25 avg60=x avg300=0.31 total=1\nfull avg10=0 avg60=0 avg300=0 total=0\n"
    )
    with pytest.raises(CollectionError, match=r"pressure/memory:1: not a number: 'avg60=x'"):
        HostPressure(CollectorContext(proc_root=str(proc_tree))).collect(None)


def test_pressure_missing_full_line(proc_tree: Path) -> None:
    (proc_tree / "pressure" / "memory").write_text("some avg10=1.25 avg60=0.5 avg300=0.31 total=1\n")
    with pytest.raises(CollectionError, match=r"missing mem_pressure_full_avg10, mem_pressure_full_avg300"):
        HostPressure(CollectorContext(proc_root=str(proc_tree))).collect(None)
