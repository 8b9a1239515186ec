"""The simulator's proc/sys tree: real files in the kernel's formats."""

import os
import re

from mom.collectors.base import read_key_value_file
from mom.hypervisors.sim import SimHypervisor
from mom.sim.model import KSMD_PID

MEMINFO_LINE = re.compile(r"^[A-Za-z_()]+:\s+\d+( kB)?$")
PSI_LINE = re.compile(r"^(some|full) avg10=\d+\.\d\d avg60=\d+\.\d\d avg300=\d+\.\d\d total=\d+$")


def test_meminfo_vmstat_pressure_cpuinfo_formats(tmp_path, clock, small):
    hv = SimHypervisor(small, clock=clock, tree_dir=str(tmp_path))
    clock.now += 30
    hv.list_guests()
    text = (tmp_path / "proc/meminfo").read_text()
    assert all(MEMINFO_LINE.match(line) for line in text.splitlines()), text
    info = read_key_value_file(str(tmp_path / "proc/meminfo"))
    for key in ("MemTotal", "MemFree", "MemAvailable", "Buffers", "Cached",
                "SwapTotal", "SwapFree", "AnonPages"):
        assert key in info
    assert info["MemTotal"] == 4096 * 1024
    assert info["SwapTotal"] == 1024 * 1024
    assert 0 < info["MemFree"] < info["MemTotal"]
    assert info["MemAvailable"] >= info["MemFree"]
    vmstat = read_key_value_file(str(tmp_path / "proc/vmstat"))
    assert {"pswpin", "pswpout", "pgmajfault", "nr_free_pages"} <= set(vmstat)
    psi = (tmp_path / "proc/pressure/memory").read_text().splitlines()
    assert [line.split()[0] for line in psi] == ["some", "full"]
    assert all(PSI_LINE.match(line) for line in psi), psi
    cpuinfo = (tmp_path / "proc/cpuinfo").read_text()
    assert sum(1 for line in cpuinfo.splitlines() if line.startswith("processor")) == 4
    # Atomic writes leave no temporary files behind.
    leftovers = [f for _, _, files in os.walk(tmp_path) for f in files if ".tmp" in f]
    assert leftovers == []


def test_ksm_files_and_processes(tmp_path, clock, small):
    hv = SimHypervisor(small, clock=clock, tree_dir=str(tmp_path))
    assert hv.sys_root == str(tmp_path / "sys")
    assert hv.proc_root == str(tmp_path / "proc")
    ksm = tmp_path / "sys/kernel/mm/ksm"
    for name in ("run", "pages_to_scan", "sleep_millisecs", "merge_across_nodes", "pages_shared",
                 "pages_sharing", "pages_unshared", "pages_volatile", "full_scans"):
        int((ksm / name).read_text())
    assert (ksm / "pages_to_scan").read_text() == "100\n"
    assert (tmp_path / f"proc/{KSMD_PID}/comm").read_text() == "ksmd\n"
    guests = hv.list_guests()
    assert sorted(g.name for g in guests) == ["a", "b"]
    for g in guests:
        status = (tmp_path / f"proc/{g.pid}/status").read_text()
        size = int(re.search(r"VmSize:\s+(\d+) kB", status).group(1))
        assert size > hv.guest_balloon_info(g)["balloon_max"]
        stat = (tmp_path / f"proc/{g.pid}/stat").read_text().split()
        assert len(stat) == 52 and stat[1] == "(qemu-kvm)"


def test_guests_start_and_stop_per_scenario(tmp_path, clock):
    from mom.sim.scenario import loads_scenario
    sc = loads_scenario("""
[[guest]]
name = "early"
max = 1024
stop = 20
workload = { type = "idle" }
[[guest]]
name = "late"
max = 1024
start = 30
workload = { type = "steady", level = 300 }
""")
    hv = SimHypervisor(sc, clock=clock, tree_dir=str(tmp_path))
    first = hv.list_guests()
    assert [g.name for g in first] == ["early"]
    clock.now += 25
    assert hv.list_guests() == []
    assert not (tmp_path / f"proc/{first[0].pid}").exists()
    clock.now += 10
    late = hv.list_guests()
    assert [g.name for g in late] == ["late"]
    assert (tmp_path / f"proc/{late[0].pid}/status").exists()
    # A guest that stopped is gone for collection: left out of collect_all.
    assert hv.collect_all(first + late, ["memory"]).keys() == {late[0].uuid}
