"""The engine with a guest whose hypervisor calls hang or fail: the others are
collected and decided on in the same tick, within the call deadline, and the
thread count stays fixed."""

from __future__ import annotations

import threading
import time

from mom.core.clock import ManualClock
from mom.daemon.config import load_config
from mom.engine.engine import Engine, EngineSettings
from mom.engine.status import TickRecord
from mom.hypervisors.sim import SimHypervisor
from mom.policy.policy import PolicySet
from mom.sim.scenario import loads_scenario
from tests.support.wait import wait_until

SCENARIO = """
[host]
memory = 8192
""" + "".join(f"""
[[guest]]
name = "vm{i}"
max = 1024
workload = {{ type = "steady", level = 300 }}
""" for i in range(6))


def make_engine(tmp_path, timeout: float) -> tuple[Engine, SimHypervisor, ManualClock]:
    clock = ManualClock()
    hv = SimHypervisor(loads_scenario(SCENARIO, "s.toml"), clock=clock, tree_dir=str(tmp_path / "tree"))
    settings = EngineSettings.from_config(
        load_config(None), call_timeout=timeout, host_collectors=("HostMemory",),
        guest_collectors=("GuestMemory", "GuestBalloon"), controllers=("Balloon",),
        proc_root=hv.proc_root, sys_root=hv.sys_root)
    policies = PolicySet()
    policies.set("shrink", '(with Guests g (g.Control "balloon_target" (- g.balloon_cur 10240)))')
    return Engine(settings, hv, policies, clock), hv, clock


def tick(engine: Engine, clock: ManualClock) -> None:
    clock.now += 10
    engine.discover()
    engine.collect_host()
    engine.collect_guests()
    engine.run_policy()


def last_tick(engine: Engine) -> TickRecord:
    record = engine.status().last_tick
    assert record is not None
    return record


def active_faults(engine: Engine) -> dict[str, str]:
    return engine.status().active_faults()


def test_a_hung_guest_costs_only_its_own_data(tmp_path) -> None:
    engine, hv, clock = make_engine(tmp_path, timeout=0.5)
    try:
        tick(engine, clock)
        assert len(last_tick(engine).snapshot.guests) == 6
        hv.inject_fault("vm3", "hang", seconds=30)
        threads_before = threading.active_count()
        t0 = time.monotonic()
        tick(engine, clock)
        took = time.monotonic() - t0
        names = sorted(g.properties["name"] for g in last_tick(engine).snapshot.guests)
        assert names == ["vm0", "vm1", "vm2", "vm4", "vm5"]  # vm3 left out this tick, the rest decided on
        assert {a.target for a in last_tick(engine).actions if a.applied} == set(names)
        assert took < 2.0  # one deadline (0.5 s), not one per guest
        # vm3's call still hangs: the next ticks do not stack more calls behind it.
        for _ in range(3):
            tick(engine, clock)
        assert threading.active_count() == threads_before
        assert len(last_tick(engine).snapshot.guests) == 5
        active = active_faults(engine)
        assert any(k.startswith("guest vm3") and "no answer" in v for k, v in active.items()), active
        assert not any(k.startswith("guest vm1 ") for k in active)
    finally:
        hv.inject_fault("vm3", None)
        engine.close()
        hv.close()


def test_a_failing_guest_is_one_fault_and_recovers(tmp_path, caplog) -> None:
    engine, hv, clock = make_engine(tmp_path, timeout=2)
    try:
        hv.inject_fault("vm2", "raise", message="monitor socket closed")
        with caplog.at_level("WARNING", logger="mom.faults"):
            for _ in range(4):
                tick(engine, clock)
        lines = [r.getMessage() for r in caplog.records if "monitor socket closed" in r.getMessage()]
        # Both sections fail with the same message: one fault, one line, not one per section or tick.
        assert len(lines) == 1, lines
        assert sorted(g.properties["name"] for g in last_tick(engine).snapshot.guests) == \
            ["vm0", "vm1", "vm3", "vm4", "vm5"]
        hv.inject_fault("vm2", None)
        caplog.clear()
        with caplog.at_level("INFO", logger="mom.faults"):
            tick(engine, clock)
        assert len(last_tick(engine).snapshot.guests) == 6
        assert any("vm2" in r.getMessage() and "recovered" in r.getMessage() for r in caplog.records)
    finally:
        engine.close()
        hv.close()


def test_a_blocking_collector_that_hangs_for_one_guest(tmp_path) -> None:
    """Collectors that may wait on the guest (the agent) run on the pool under the deadline."""
    from mom.collectors.base import REGISTRY, Collector

    release = threading.Event()

    class SlowAgent(Collector):
        name = "TestSlowAgent"
        scope = "guest"
        optional = frozenset({"agent_value"})
        blocking = True

        def collect(self, subject):  # vm1's agent never answers (until released)
            if subject.info.name == "vm1":
                release.wait(30)
            return {"agent_value": 1}

    REGISTRY[SlowAgent.name] = SlowAgent
    clock = ManualClock()
    hv = SimHypervisor(loads_scenario(SCENARIO, "s.toml"), clock=clock, tree_dir=str(tmp_path / "tree"))
    settings = EngineSettings.from_config(
        load_config(None), call_timeout=0.5, host_collectors=("HostMemory",),
        guest_collectors=("GuestMemory", "GuestBalloon", SlowAgent.name), controllers=(),
        proc_root=hv.proc_root, sys_root=hv.sys_root)
    engine = Engine(settings, hv, PolicySet(), clock)
    try:
        t0 = time.monotonic()
        tick(engine, clock)
        assert time.monotonic() - t0 < 3.0  # one deadline, not a wait on the scheduler thread
        names = sorted(g.properties["name"] for g in last_tick(engine).snapshot.guests)
        assert names == ["vm0", "vm2", "vm3", "vm4", "vm5"]
        tick(engine, clock)  # vm1's collectors are still busy: not resubmitted, others go on
        assert len(last_tick(engine).snapshot.guests) == 5
        assert "guest vm1 collectors" in active_faults(engine)
        release.set()
        def six_guests() -> bool:
            tick(engine, clock)
            return len(last_tick(engine).snapshot.guests) >= 6
        wait_until(six_guests, 5, 0, what="vm1 back in the snapshot")
        assert len(last_tick(engine).snapshot.guests) == 6
        assert "guest vm1 collectors" not in active_faults(engine)
    finally:
        release.set()
        del REGISTRY[SlowAgent.name]
        engine.close()
        hv.close()
