"""The simulator's virtio-mem device and free page reporting, through the model
and the hypervisor interface (doc/sim-model.md, rules V1-V3 and G5)."""

from __future__ import annotations

import dataclasses

import pytest

from mom.core.clock import ManualClock
from mom.hypervisors.base import GuestInfo, HypervisorError, NotSupported
from mom.hypervisors.sim import SimHypervisor
from mom.sim.guest import VMEM_PLUG_RATE, VMEM_UNPLUG_RATE
from mom.sim.scenario import ScenarioError, loads_scenario

from .test_sim_rules import STEP_DOWN, guest, model, scenario

MIB = 1024
STEADY = '{ type = "steady", level = 300 }'
DOWN_AND_UP = '{ type = "steps", steps = [[0, 1500], [30, 300], [300, 1500]] }'


def vmem_guest(name: str = "g", workload: str = STEADY, device: str = 'max = "4G"', **keys: object) -> str:
    return guest(name, workload, **keys) + f"[guest.virtio_mem]\n{device}\n"


def test_plugging_moves_at_its_rate_and_adds_untouched_memory():
    m = model(scenario(vmem_guest(max=1024, cache_fraction=0.0)))
    g = m.guest("g")
    m.advance_to(5)
    touched = g.touched
    assert (g.vmem_size, g.size) == (0, 1024 * MIB)
    g.set_vmem_requested(3 * 1024 * MIB)
    m.advance(1)
    assert g.vmem_size == VMEM_PLUG_RATE  # one second's worth
    m.advance(5)
    assert g.vmem_size == 3 * 1024 * MIB
    assert g.memory_stats()["mem_available"] == 4 * 1024 * MIB  # boot memory + plugged
    assert g.touched == pytest.approx(touched, abs=MIB)  # the host backs plugged blocks on first use only


def test_the_guest_uses_plugged_memory_and_the_host_accounts_it():
    grow = '{ type = "steps", steps = [[0, 300], [20, 2500]] }'
    m = model(scenario(vmem_guest(workload=grow, max=1024, cache_fraction=0.0, swap=0,
                                  device='max = "4G"\nrequested = "2G"')))
    g = m.guest("g")
    m.advance_to(60)
    assert g.oom_kills == 0 and g.anon_ram >= 2400 * MIB  # more than its 1 GiB of boot memory
    obs = m.observe().guests[0]
    assert obs.virtio_mem_kib == 2048 * MIB and obs.resident_kib > 2400 * MIB
    assert m.meminfo()["Committed_AS"] >= 3072 * MIB


def test_unplugging_moves_at_its_rate_in_whole_blocks():
    m = model(scenario(vmem_guest(max=1024, cache_fraction=0.0, device='max = "4G"\nrequested = "4G"')))
    g = m.guest("g")
    m.advance_to(5)
    g.set_vmem_requested(1024 * MIB)
    m.advance(1)
    assert g.vmem_size == 4096 * MIB - VMEM_UNPLUG_RATE
    m.advance(20)
    assert g.vmem_size == 1024 * MIB and not g.vmem_stalled


def test_a_block_larger_than_a_steps_worth_takes_several_steps():
    m = model(scenario(vmem_guest(max=1024, device='max = "4G"\nblock = "1G"\nrequested = "2G"')))
    g = m.guest("g")
    g.set_vmem_requested(1024 * MIB)
    steps = 0
    while g.vmem_size > 1024 * MIB:
        m.advance(1)
        steps += 1
    assert steps == 1024 * MIB // VMEM_UNPLUG_RATE


def test_unplug_takes_only_free_memory_and_waits_instead_of_killing():
    """Used memory must migrate out of the blocks into free memory elsewhere: with
    4 GiB in use, a guest of 1 GiB + 4 GiB plugged cannot unplug all of it, and
    unlike an over-inflated balloon this never starts the guest's OOM killer."""
    busy = '{ type = "steady", level = 4000 }'
    m = model(scenario(vmem_guest(workload=busy, max=1024, cache_fraction=0.0, swap=0,
                                  device='max = "4G"\nrequested = "4G"')), seed=1)
    g = m.guest("g")
    m.advance_to(10)
    free = g.untouched + g.free_touched
    g.set_vmem_requested(0)
    m.advance(60)
    assert g.vmem_stalled and g.oom_kills == 0
    assert g.vmem_size >= 4096 * MIB - free - 2 * MIB  # at most the free memory, in 2 MiB blocks
    assert g.vmem_size % (2 * MIB) == 0


def test_a_device_that_is_never_changed_changes_nothing_else():
    """Opting in with requested = 0 leaves every figure of the guest and host as without a device."""
    plain = model(scenario(guest("g", STEP_DOWN, free_page_reporting=True)))
    device = model(scenario(vmem_guest(workload=STEP_DOWN, free_page_reporting=True)))
    for m in (plain, device):
        m.advance_to(400)
    skip = {"virtio_mem_kib", "virtio_mem_requested_kib", "virtio_mem_max_kib"}
    a, b = (dataclasses.asdict(m.observe()) for m in (plain, device))
    for obs in (a, b):
        for g in obs["guests"]:
            for key in skip:
                g.pop(key)
    assert a == b
    assert plain.meminfo() == device.meminfo()


def test_scenario_sizes_and_errors():
    spec = loads_scenario(scenario(vmem_guest(device='max = 4096\nblock = "128MiB"\nrequested = "1G"'))).guests[0]
    assert spec.virtio_mem is not None
    assert (spec.virtio_mem.max_kib, spec.virtio_mem.block_kib, spec.virtio_mem.requested_kib) == (
        4096 * MIB, 128 * MIB, 1024 * MIB)
    for device, message in [('block = "2M"', "virtio_mem: missing max"),
                            ('max = "4G"\nblock = "3M"', "block: must be a power of two"),
                            ('max = "4G"\nrequested = "1M"', "requested: must be a multiple of block"),
                            ('max = "lots"', r"max: expected a size"),
                            ('max = "4G"\nspeed = 2', "unknown key")]:
        with pytest.raises(ScenarioError, match=message):
            loads_scenario(scenario(vmem_guest(device=device)))


# -- through the hypervisor interface -------------------------------------------------------------
@pytest.fixture
def hv(tmp_path):
    text = scenario(vmem_guest("elastic", device='max = "2G"\nrequested = "512M"', max=1024)
                    + guest("fixed", DOWN_AND_UP, max=2048, cache_fraction=0.0, free_page_reporting=True))
    h = SimHypervisor(loads_scenario(text), clock=ManualClock(), tree_dir=str(tmp_path))
    yield h
    h.close()


def info(hv: SimHypervisor, name: str) -> GuestInfo:
    return next(g for g in hv.list_guests() if g.name == name)


def test_interface_reports_and_sets_the_device(hv):
    elastic = info(hv, "elastic")
    assert hv.guest_virtio_mem(elastic) == {"virtio_mem_size": 512 * MIB, "virtio_mem_requested": 512 * MIB,
                                            "virtio_mem_block": 2 * MIB, "virtio_mem_max": 2048 * MIB}
    hv.set_virtio_mem_requested(elastic, 1024 * MIB)
    hv.clock.now += 5
    assert hv.guest_virtio_mem(info(hv, "elastic"))["virtio_mem_size"] == 1024 * MIB
    assert hv.guest_memory_stats(elastic)["mem_available"] == 2048 * MIB


@pytest.mark.parametrize(("size", "why"), [(-2048, r"is outside the device's region \[0, 2097152\] KiB"),
                                           (2048 * MIB + 2048, r"is outside the device's region \[0, 2097152\] KiB"),
                                           (1000, "is not a multiple of its 2048 KiB block")])
def test_interface_refuses_what_qemu_refuses(hv, size, why):
    elastic = info(hv, "elastic")
    with pytest.raises(HypervisorError, match=f"^guest elastic: virtio-mem requested size {size} KiB {why}$"):
        hv.set_virtio_mem_requested(elastic, size)
    assert hv.guest_virtio_mem(elastic)["virtio_mem_requested"] == 512 * MIB


def test_guest_without_device_is_not_supported(hv):
    fixed = info(hv, "fixed")
    with pytest.raises(NotSupported, match="guest fixed has no virtio-mem device"):
        hv.guest_virtio_mem(fixed)
    with pytest.raises(NotSupported):
        hv.set_virtio_mem_requested(fixed, 0)


def test_free_page_reporting_lowers_qemus_rss_and_reuse_costs_faults(hv, tmp_path):
    """The interface says the balloon reports free pages; QEMU's rss (what
    GuestQemuProc reads) falls to what the guest uses once its programs free
    memory; using the pages again makes the host back them anew (minor faults)."""
    fixed = info(hv, "fixed")
    assert hv.guest_balloon_info(fixed)["balloon_free_page_reporting"] == 1
    assert hv.guest_balloon_info(info(hv, "elastic"))["balloon_free_page_reporting"] == 0

    def rss_kib() -> int:
        status = (tmp_path / "proc" / str(fixed.pid) / "status").read_text()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))

    start = hv.clock.now
    hv.clock.now = start + 29
    hv.refresh()
    peak = rss_kib()
    hv.clock.now = start + 299
    hv.refresh()
    assert peak > 1500 * MIB and rss_kib() < 450 * MIB
    g = hv.model.guest("fixed")
    faults = g.minor_fault
    qemu_faults = qemu_minflt(tmp_path, fixed.pid)
    hv.clock.now = start + 320  # the programs want the memory back
    hv.refresh()
    assert rss_kib() > 1500 * MIB
    assert g.minor_fault - faults > 1000 * MIB / 4  # a minor fault per page the guest allocates anew
    # ... and one of QEMU's on the host, which backs each reported page again (what GuestQemuProc reads)
    assert qemu_minflt(tmp_path, fixed.pid) - qemu_faults > 1000 * MIB / 4


def qemu_minflt(tree, pid: int | None) -> int:
    """Field 10 of the QEMU process's /proc/PID/stat in the simulator's tree."""
    text = (tree / "proc" / str(pid) / "stat").read_text()
    return int(text[text.rindex(")") + 2:].split()[10 - 3])


def test_without_reporting_reused_free_pages_cost_the_host_nothing(tmp_path):
    text = scenario(guest("g", DOWN_AND_UP, max=2048, cache_fraction=0.0))
    hv = SimHypervisor(loads_scenario(text), clock=ManualClock(), tree_dir=str(tmp_path))
    try:
        start = hv.clock.now
        hv.clock.now = start + 299
        pid = info(hv, "g").pid
        before = qemu_minflt(tmp_path, pid)
        hv.clock.now = start + 320
        hv.refresh()
        assert hv.model.guest("g").anon_ram > 1400 * MIB  # it took its memory back
        assert qemu_minflt(tmp_path, pid) - before < 10 * MIB / 4  # from pages the host still backed
    finally:
        hv.close()
