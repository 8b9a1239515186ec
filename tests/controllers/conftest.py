import pytest

from mom.controllers.base import ControllerContext, GuestView, TickView
from mom.core.clock import ManualClock
from mom.hypervisors.base import SECTIONS
from mom.hypervisors.sim import SimHypervisor
from mom.sim.scenario import loads_scenario

SCENARIO = """
[host]
memory = 4096
cpus = 4
[[guest]]
name = "web1"
max = 2048
min = 512
workload = { type = "steady", level = 900 }
[[guest]]
name = "web2"
max = 2048
min = 512
workload = { type = "steady", level = 700 }
[[guest]]
name = "db"
max = 1024
workload = { type = "steady", level = 600 }
"""

KSM_FILES = ("run", "pages_to_scan", "sleep_millisecs", "merge_across_nodes",
             "pages_shared", "pages_sharing")


class Sim:
    """A SimHypervisor plus helpers to build what the engine would hand a controller."""

    def __init__(self, tmp_path, hv_class=SimHypervisor) -> None:
        self.clock = ManualClock()
        self.root = tmp_path
        self.hv = hv_class(loads_scenario(SCENARIO), clock=self.clock, tree_dir=str(tmp_path))
        self.ctx = ControllerContext(hypervisor=self.hv, sys_root=self.hv.sys_root, clock=self.clock.time)

    def advance(self, seconds: float) -> None:
        self.clock.now += seconds
        self.hv.list_guests()

    def host_stats(self) -> dict:
        """What HostKSM reads from the tree."""
        base = self.root / "sys/kernel/mm/ksm"
        return {f"ksm_{k}": int((base / k).read_text()) for k in KSM_FILES}

    def tick(self, guest_controls=None, host_controls=None, host_stats=None) -> TickView:
        guest_controls = guest_controls or {}
        guests = self.hv.list_guests()
        data = self.hv.collect_all(guests, SECTIONS)
        views = []
        for g in guests:
            d = data[g.uuid]
            stats = {**d.memory, **d.balloon, **d.cpu_tune, "io_tune": d.io_tune}
            views.append(GuestView(info=g, stats=stats, controls=dict(guest_controls.get(g.name, {}))))
        return TickView(time=self.clock.now,
                        host_stats=self.host_stats() if host_stats is None else host_stats,
                        host_controls=dict(host_controls or {}), guests=views)

    def guest(self, name):
        return next(g for g in self.hv.list_guests() if g.name == name)


@pytest.fixture
def sim(tmp_path):
    return Sim(tmp_path)


@pytest.fixture
def make_sim(tmp_path):
    """Build a Sim around another SimHypervisor subclass."""
    return lambda hv_class: Sim(tmp_path, hv_class)
