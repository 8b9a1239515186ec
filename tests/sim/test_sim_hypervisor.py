"""SimHypervisor through the HypervisorInterface, plus scenario files."""

import time

import pytest

from mom.core.clock import FastClock
from mom.hypervisors.base import SECTIONS, GuestGone, HypervisorError
from mom.hypervisors.sim import SimHypervisor
from mom.sim.scenario import IO_KEYS, ScenarioError, load_scenario


def test_collect_all_sections(clock, small, tmp_path):
    hv = SimHypervisor(small, clock=clock, tree_dir=str(tmp_path))
    guests = hv.list_guests()
    clock.now += 20
    hv.refresh()  # a collection round starts with refresh(); collect_all itself does not advance
    data = hv.collect_all(guests, SECTIONS)
    assert set(data) == {g.uuid for g in guests}
    a = data[next(g.uuid for g in guests if g.name == "a")]
    # "a" has no virtio-mem device: that section alone fails, with a reason.
    assert a.errors == {"virtio_mem": "guest a has no virtio-mem device"} and a.virtio_mem is None
    assert set(a.memory) >= {"mem_available", "mem_unused", "mem_free", "major_fault", "minor_fault",
                             "swap_in", "swap_out", "swap_total", "swap_usage", "mem_usable", "disk_caches",
                             "oom_kills", "alloc_stalls"}
    assert a.balloon == {"balloon_cur": 2048 * 1024, "balloon_max": 2048 * 1024, "balloon_min": 512 * 1024,
                         "balloon_free_page_reporting": 0}
    assert a.cpu_tune == {"vcpu_quota": -1, "vcpu_period": 100000, "vcpu_user_limit": 100, "vcpu_count": 2}
    [disk] = a.io_tune
    assert disk["name"] == "vda" and disk["path"].endswith("a.qcow2")
    for part in ("guaranteed", "maximum", "current"):
        assert set(disk[part]) == set(IO_KEYS)
    assert hv.model.elapsed == 20


def test_fast_clock_accelerates_the_model(small, tmp_path):
    hv = SimHypervisor(small, clock=FastClock(speed=2000), tree_dir=str(tmp_path))
    time.sleep(0.05)
    hv.list_guests()
    assert hv.model.elapsed >= 90


def test_vanished_guest_and_injected_faults(clock, small, tmp_path):
    hv = SimHypervisor(small, clock=clock, tree_dir=str(tmp_path))
    a, b = sorted(hv.list_guests(), key=lambda g: g.name)
    hv.inject_fault("a", "raise", message="qemu monitor busy")
    with pytest.raises(HypervisorError, match="qemu monitor busy"):
        hv.guest_balloon_info(a)
    data = hv.collect_all([a, b], ["memory", "balloon"])
    assert data[a.uuid].errors == {"memory": "guest a: qemu monitor busy", "balloon": "guest a: qemu monitor busy"}
    assert data[b.uuid].memory is not None
    hv.inject_fault("a", "hang", seconds=0.2)
    started = time.monotonic()
    with pytest.raises(HypervisorError):
        hv.guest_memory_stats(a)
    assert time.monotonic() - started >= 0.2
    hv.inject_fault("a", None)
    assert hv.guest_memory_stats(a)["mem_available"] > 0
    hv.vanish("b")
    with pytest.raises(GuestGone):
        hv.set_balloon_target(b, 1024)
    assert [g.name for g in hv.list_guests()] == ["a"]


def test_controls_reach_the_guest_and_are_checked(clock, small, tmp_path):
    hv = SimHypervisor(small, clock=clock, tree_dir=str(tmp_path))
    a = next(g for g in hv.list_guests() if g.name == "a")
    hv.set_cpu_tune(a, quota=50000)
    assert hv.guest_cpu_tune(a)["vcpu_quota"] == 50000
    assert hv.guest_cpu_tune(a)["vcpu_period"] == 100000
    with pytest.raises(HypervisorError):
        hv.set_cpu_tune(a, period=10)
    [disk] = hv.guest_io_tune(a)
    hv.set_io_tune(a, [{"name": "vda", "path": disk["path"], "current": {"total_iops_sec": 500}}])
    assert hv.guest_io_tune(a)[0]["current"]["total_iops_sec"] == 500
    with pytest.raises(HypervisorError):
        hv.set_io_tune(a, [{"name": "vdz", "path": "/nope", "current": {"total_iops_sec": 1}}])
    with pytest.raises(HypervisorError):
        hv.set_ksm_tune({"run": 7})
    assert (tmp_path / "sys/kernel/mm/ksm/run").read_text() == "0\n"


def test_own_tempdir_removed_on_close(clock, small):
    import os
    hv = SimHypervisor(small, clock=clock)
    root = hv.root
    assert os.path.exists(os.path.join(root, "proc/meminfo"))
    hv.close()
    assert not os.path.exists(root)


def test_scenario_file_and_errors(tmp_path, clock):
    good = tmp_path / "s.toml"
    good.write_text('[host]\nmemory = 1024\n[[guest]]\nname = "x"\nmax = 512\n'
                    'workload = { type = "daily", mean = 200, amplitude = 100, period = 60 }\n')
    sc = load_scenario(good)
    assert sc.name == "s" and sc.host.memory_mib == 1024 and sc.guests[0].name == "x"
    hv = SimHypervisor(str(good), clock=clock, tree_dir=str(tmp_path / "t"))
    assert [g.name for g in hv.list_guests()] == ["x"]
    bad = {
        "unknown key": '[host]\nram = 1\n',
        "missing max": '[[guest]]\nname = "x"\nworkload = { type = "idle" }\n',
        "unknown workload type": '[[guest]]\nname = "x"\nmax = 5\nworkload = { type = "wild" }\n',
        "needs period": '[[guest]]\nname = "x"\nmax = 5\nworkload = { type = "ramp", low = 1, high = 2 }\n',
        "min exceeds max": '[[guest]]\nname = "x"\nmax = 5\nmin = 9\nworkload = { type = "idle" }\n',
        "duplicate": '[[guest]]\nname = "x"\nmax = 5\nworkload = { type = "idle" }\n' * 2,
    }
    for label, text in bad.items():
        path = tmp_path / "bad.toml"
        path.write_text(text)
        with pytest.raises(ScenarioError) as err:
            load_scenario(path)
        assert "bad.toml" in str(err.value), label
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "missing.toml")
