"""VirtioMem: mem_requested_size reaches the simulated device, rounded down to the
block and kept within [0, virtio_mem_max]; bad values are refused with one line;
guests without a device are skipped quietly."""

from __future__ import annotations

import logging

import pytest

from mom.controllers.base import REGISTRY, ControllerContext, GuestView, TickView
from mom.controllers.virtio_mem import VirtioMem
from mom.core.clock import ManualClock
from mom.hypervisors.base import SECTIONS
from mom.hypervisors.sim import SimHypervisor
from mom.sim.scenario import loads_scenario

MIB = 1024
ELASTIC = """
[[guest]]
name = "elastic"
max = 1024
workload = { type = "steady", level = 300 }
[guest.virtio_mem]
max = "2G"
block = "128M"
requested = "512M"
"""
FIXED = """
[[guest]]
name = "fixed"
max = 1024
workload = { type = "steady", level = 300 }
"""
SCENARIO = "[host]\nmemory = 8192\n" + ELASTIC + FIXED


class VmemSim:
    """A simulated host with one virtio-mem guest and one without, and the ticks
    the engine would hand the controller (stats: every section merged)."""

    def __init__(self, tmp_path, scenario: str = SCENARIO) -> None:
        self.clock = ManualClock()
        self.hv = SimHypervisor(loads_scenario(scenario), clock=self.clock, tree_dir=str(tmp_path))
        self.ctl = VirtioMem(ControllerContext(hypervisor=self.hv, sys_root=self.hv.sys_root, clock=self.clock.time))

    def tick(self, controls: dict[str, dict]) -> TickView:
        guests = self.hv.list_guests()
        data = self.hv.collect_all(guests, SECTIONS)
        views = []
        for g in guests:
            d = data[g.uuid]
            stats = {**d.memory, **d.balloon, **(d.virtio_mem or {})}
            views.append(GuestView(info=g, stats=stats, controls=dict(controls.get(g.name, {}))))
        return TickView(time=self.clock.now, host_stats={}, host_controls={}, guests=views)

    def device(self, name: str = "elastic") -> dict:
        guest = next(g for g in self.hv.list_guests() if g.name == name)
        return self.hv.guest_virtio_mem(guest)

    def advance(self, seconds: float) -> None:
        self.clock.now += seconds
        self.hv.list_guests()


@pytest.fixture
def sim(tmp_path):
    s = VmemSim(tmp_path)
    yield s
    s.hv.close()


def test_registered_with_its_control():
    import mom.controllers  # noqa: F401
    assert REGISTRY["VirtioMem"] is VirtioMem and VirtioMem.guest_controls == {"mem_requested_size"}


def test_size_is_rounded_down_to_the_block_and_the_guest_follows(sim):
    [a] = sim.ctl.apply(sim.tick({"elastic": {"mem_requested_size": 1000 * MIB + 0.5}}))
    assert (a.target, a.control, a.old, a.new, a.applied) == (
        "elastic", "mem_requested_size", 512 * MIB, 896 * MIB, True)
    assert a.reason == f"rounded down from {1000 * MIB} to a multiple of the {128 * MIB} KiB block"
    assert sim.device()["virtio_mem_requested"] == 896 * MIB
    sim.advance(10)
    assert sim.device()["virtio_mem_size"] == 896 * MIB


def test_clamped_to_the_region_and_to_zero(sim):
    [big] = sim.ctl.apply(sim.tick({"elastic": {"mem_requested_size": 9000 * MIB}}))
    assert big.new == 2048 * MIB and big.applied and big.reason == f"clamped from {9000 * MIB} to virtio_mem_max"
    sim.advance(10)
    [neg] = sim.ctl.apply(sim.tick({"elastic": {"mem_requested_size": -5}}))
    assert neg.new == 0 and neg.applied and neg.reason == "clamped from -5 to 0"
    assert sim.device()["virtio_mem_requested"] == 0


def test_no_call_when_the_device_already_has_that_size(sim):
    assert sim.ctl.apply(sim.tick({"elastic": {"mem_requested_size": 512 * MIB + 100}})) == []


@pytest.mark.parametrize("bad", ["lots", "12G", [1], float("nan"), float("inf"), True])
def test_a_value_that_is_not_a_number_is_refused_with_one_line(sim, bad):
    actions = sim.ctl.apply(sim.tick({"elastic": {"mem_requested_size": bad}}))
    [a] = actions
    assert not a.applied and a.reason.startswith("not a number: ") and "\n" not in a.reason
    assert (a.old, a.new) == (512 * MIB, bad)
    assert sim.device()["virtio_mem_requested"] == 512 * MIB  # unchanged


def test_unknown_block_size_is_refused(sim):
    tick = sim.tick({"elastic": {"mem_requested_size": 1024 * MIB}})
    tick.guests[0].stats["virtio_mem_block"] = 0
    [a] = [x for x in sim.ctl.apply(tick) if x.target == "elastic"]
    assert not a.applied and a.reason == "the guest's virtio-mem block size is unknown (0)"


def test_guest_without_device_is_skipped_quietly(sim, caplog):
    caplog.set_level(logging.INFO)
    actions = sim.ctl.apply(sim.tick({"fixed": {"mem_requested_size": 1024 * MIB},
                                      "elastic": {"mem_requested_size": 1024 * MIB}}))
    assert [(a.target, a.new, a.applied) for a in actions] == [("elastic", 1024 * MIB, True)]
    assert caplog.records == []


def test_one_guest_failing_does_not_stop_the_others(tmp_path):
    sim = VmemSim(tmp_path, SCENARIO + "[guest.virtio_mem]\nmax = 1024\n")  # fixed gets a device too
    try:
        tick = sim.tick({"elastic": {"mem_requested_size": 0}, "fixed": {"mem_requested_size": 256 * MIB}})
        sim.hv.inject_fault("fixed", "raise", message="monitor socket closed")
        actions = {a.target: a for a in sim.ctl.apply(tick)}
        assert actions["elastic"].applied
        assert not actions["fixed"].applied and "monitor socket closed" in actions["fixed"].reason
    finally:
        sim.hv.close()
