"""The engine runs the controllers' planned calls on its pool, in parallel under
one deadline: a hung control call for one guest costs only that guest's
control, on this tick and the next, and every call that was answered is in the
tick record (and so the flight recorder, recent actions and metrics)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import pytest

from mom.controllers.base import REGISTRY, Controller, Plan, TickView
from mom.core.clock import ManualClock
from mom.core.pool import CallPool
from mom.daemon.config import load_config
from mom.daemon.recorder import FlightRecorder
from mom.engine.engine import Engine, EngineSettings
from mom.engine.gateway import POOL_SIZE
from mom.engine.status import EngineStatus, TickRecord
from mom.hypervisors.base import GuestInfo
from mom.hypervisors.sim import SimHypervisor
from mom.policy.policy import PolicySet
from mom.sim.scenario import loads_scenario
from tests.support.momd import read_records
from tests.support.wait import wait_until

from .test_engine_hang import SCENARIO  # six idle 1 GiB guests on an 8 GiB host

MIB = 1024
SHRINK = '(with Guests g (g.Control "balloon_target" (- g.balloon_cur 10240)))'


class StuckBalloonSim(SimHypervisor):
    """The simulator, except that set_balloon_target blocks for the guests in
    ``stuck`` until ``release`` is set (as a QEMU monitor that stops answering
    would), while collection for them goes on."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stuck: set[str] = set()
        self.release = threading.Event()
        self.balloon_calls: list[str] = []
        self.entered = threading.Event()  # a stuck call has started

    def set_balloon_target(self, guest: GuestInfo, target_kib: int) -> None:
        if guest.name in self.stuck:
            self.entered.set()
            self.release.wait(60)
        super().set_balloon_target(guest, target_kib)
        self.balloon_calls.append(guest.name)  # calls that returned


class Rig:
    def __init__(self, tmp_path: Path, timeout: float = 0.5, controllers: tuple[str, ...] = ("Balloon",)) -> None:
        self.clock = ManualClock()
        self.hv = StuckBalloonSim(loads_scenario(SCENARIO, "s.toml"), clock=self.clock,
                                  tree_dir=str(tmp_path / "tree"))
        settings = EngineSettings.from_config(
            load_config(None), call_timeout=timeout, host_collectors=("HostMemory",),
            guest_collectors=("GuestMemory", "GuestBalloon"), controllers=controllers,
            proc_root=self.hv.proc_root, sys_root=self.hv.sys_root)
        policies = PolicySet()
        policies.set("shrink", SHRINK)
        self.record_path = tmp_path / "record.jsonl"
        self.recorder = FlightRecorder(str(self.record_path))
        self.pool = CallPool(POOL_SIZE)
        self.engine = Engine(settings, self.hv, policies, self.clock, pool=self.pool, on_tick=self.recorder.write_tick)

    def last_tick(self) -> TickRecord:
        record = self.engine.status().last_tick
        assert record is not None
        return record

    def status(self) -> EngineStatus:
        return self.engine.status()

    def tick(self) -> TickRecord:
        self.clock.now += 10
        self.engine.discover()
        self.engine.collect_host()
        self.engine.collect_guests()
        self.engine.run_policy()
        return self.last_tick()

    def balloon(self, name: str) -> int:
        guest = next(g for g in self.hv.list_guests() if g.name == name)
        return self.hv.guest_balloon_info(guest)["balloon_cur"]

    def close(self) -> None:
        self.hv.release.set()
        self.engine.close()
        self.hv.close()


@pytest.fixture
def rig(tmp_path: Path):  # type: ignore[no-untyped-def]
    made: list[Rig] = []

    def make(**kwargs: Any) -> Rig:
        made.append(Rig(tmp_path, **kwargs))
        return made[-1]
    yield make
    for r in made:
        r.close()


def by_target(actions: list[Any]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for a in actions:
        out.setdefault(a.target, []).append(a)
    return out


OTHERS = ["vm0", "vm1", "vm2", "vm4", "vm5"]


def test_a_hung_balloon_call_costs_only_its_guest(rig) -> None:  # type: ignore[no-untyped-def]
    r = rig()
    r.tick()
    r.hv.stuck.add("vm3")
    threads_before = threading.active_count()
    before = {name: r.balloon(name) for name in OTHERS}

    first = by_target(r.tick().actions)
    assert sorted(first) == sorted(OTHERS + ["vm3"])
    assert all(len(first[n]) == 1 and first[n][0].applied for n in OTHERS)
    [hung] = first["vm3"]
    assert not hung.applied and hung.reason == "no answer within 0.5 s"
    assert hung.new == hung.old - 10 * MIB  # what it was asked to do

    # Later ticks: the other guests are ballooned as usual, vm3 is refused at once
    # (not queued behind its hung call) and its call is not made again.
    for _ in range(3):
        later = by_target(r.tick().actions)
        assert all(later[n][0].applied for n in OTHERS)
        assert [(a.applied, a.reason) for a in later["vm3"]] == [
            (False, "previous balloon_target call for vm3 has not returned")]
    r.hv.list_guests()  # the simulator moves balloons when it advances
    assert all(r.balloon(n) < before[n] for n in OTHERS)
    assert r.hv.balloon_calls.count("vm3") == 1  # tick 1's: the hung call has not returned, none was added
    assert threading.active_count() == threads_before

    # The record of each tick holds the controls sent to the others and vm3's refusal.
    records = read_records(r.record_path)
    assert len(records) == 5
    for rec in records[1:]:
        assert sorted(a["target"] for a in rec["actions"] if a["applied"]) == OTHERS
        [refused] = [a for a in rec["actions"] if not a["applied"]]
        assert refused["target"] == "vm3" and refused["control"] == "balloon_target"
    assert records[1]["actions"][3]["reason"] == "no answer within 0.5 s"
    assert {a.target for a in r.status().recent_actions} == set(OTHERS + ["vm3"])  # vm3 from the first tick
    assert all(a.applied for a in r.status().recent_actions)
    faults = r.status().active_faults()
    assert faults.get("guest vm3 controller Balloon") == "previous balloon_target call for vm3 has not returned"
    assert not [k for k in faults if "controller" in k and "vm3" not in k], faults

    # vm3 answers at last: the late answer is recorded, and vm3 is ballooned again.
    r.hv.release.set()
    r.hv.stuck.clear()
    wait_until(lambda: r.hv.balloon_calls.count("vm3") >= 2)  # the hung call has returned
    after = by_target(r.tick().actions)
    assert [(a.applied, a.reason, a.new) for a in after["vm3"]] == [
        (True, "answered after the 0.5 s deadline", hung.new), (True, None, after["vm3"][1].new)]
    assert "guest vm3 controller Balloon" not in r.status().active_faults()


def test_a_hung_call_is_one_warning_and_recovers(rig, caplog) -> None:  # type: ignore[no-untyped-def]
    r = rig()
    r.tick()
    r.hv.stuck.add("vm1")
    with caplog.at_level(logging.INFO, logger="mom.faults"):
        for _ in range(5):
            r.tick()
        r.hv.stuck.clear()
        r.hv.release.set()
        wait_until(lambda: r.hv.balloon_calls.count("vm1") >= 2)
        r.tick()
        r.tick()
    lines = [rec.getMessage() for rec in caplog.records]
    # The timeout, then that the call is still out, then the recovery: not a line per tick.
    assert lines == ["guest vm1 controller Balloon: no answer within 0.5 s",
                     "guest vm1 controller Balloon: previous balloon_target call for vm1 has not returned",
                     "guest vm1 controller Balloon: recovered"], lines


def test_calls_that_never_got_a_worker_are_not_made_later(rig) -> None:  # type: ignore[no-untyped-def]
    """With every worker stuck in a hung call, the calls still queued at the
    deadline are withdrawn: stale controls do not reach the guests later."""
    r = rig()
    r.tick()
    stuck = [f"vm{i}" for i in range(POOL_SIZE)]
    free = [f"vm{i}" for i in range(POOL_SIZE, 6)]
    r.hv.stuck.update(stuck)
    r.hv.balloon_calls.clear()
    actions = by_target(r.tick().actions)
    assert all(actions[n][0].reason == "no answer within 0.5 s" for n in stuck)
    assert all(actions[n][0].reason == "not sent: no free worker within 0.5 s" for n in free)
    r.hv.stuck.clear()
    r.hv.release.set()
    wait_until(lambda: len(r.hv.balloon_calls) >= POOL_SIZE)  # the hung calls return
    r.pool.submit(lambda: None).result(5)  # one more call behind the withdrawn ones: the queue is drained
    assert sorted(r.hv.balloon_calls) == stuck


def test_a_guest_gone_before_its_control_is_quiet(rig, caplog) -> None:  # type: ignore[no-untyped-def]
    """A guest destroyed between collection and control: its refused action is in
    the record, but that is normal under churn and not a warning."""
    r = rig()
    r.tick()
    r.clock.now += 10
    r.engine.discover()
    r.engine.collect_host()
    r.engine.collect_guests()
    r.hv.vanish("vm2")
    with caplog.at_level(logging.DEBUG, logger="mom.faults"):
        r.engine.run_policy()
    actions = by_target(r.last_tick().actions)
    assert not actions["vm2"][0].applied and "not running" in actions["vm2"][0].reason
    assert all(actions[n][0].applied for n in ("vm0", "vm1", "vm3", "vm4", "vm5"))
    assert not [rec for rec in caplog.records if rec.levelno >= logging.WARNING]
    assert any("vm2" in rec.getMessage() for rec in caplog.records)  # at debug level


def test_stopping_during_control_ends_the_wait_quietly(rig, caplog) -> None:  # type: ignore[no-untyped-def]
    """momd stopping while a control call hangs: the tick ends without waiting out
    the deadline, the call is recorded as not answered, and no fault is logged."""
    r = rig(timeout=60)
    r.tick()
    r.hv.stuck.add("vm3")
    r.hv.balloon_calls.clear()

    def stop_when_only_vm3_is_out() -> None:
        r.hv.entered.wait(30)
        wait_until(lambda: len(r.hv.balloon_calls) == len(OTHERS))
        r.engine.stop()
    threading.Thread(target=stop_when_only_vm3_is_out, daemon=True).start()
    with caplog.at_level(logging.DEBUG, logger="mom.faults"):
        record = r.tick()
    actions = by_target(record.actions)
    assert [(a.applied, a.reason) for a in actions["vm3"]] == [(False, "not answered: momd is stopping")]
    assert all(actions[n][0].applied for n in OTHERS)
    assert not [rec for rec in caplog.records if "vm3" in rec.getMessage()]


class Buggy(Controller):
    name = "TestBuggy"

    def plan(self, tick: TickView) -> Plan:
        raise KeyError("oops")


def test_a_controller_bug_is_one_fault_and_spares_the_others(rig, caplog) -> None:  # type: ignore[no-untyped-def]
    REGISTRY[Buggy.name] = Buggy
    try:
        r = rig(controllers=(Buggy.name, "Balloon"))
        with caplog.at_level(logging.WARNING, logger="mom.faults"):
            for _ in range(3):
                record = r.tick()
        assert len(record.actions) == 6 and all(a.applied for a in record.actions)
        assert [rec.getMessage() for rec in caplog.records] == ["controller TestBuggy: KeyError: 'oops'"]
    finally:
        del REGISTRY[Buggy.name]
