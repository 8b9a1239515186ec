"""Log noise on libvirt: a guest that goes away mid-tick is normal (debug, not a
warning), and a per-guest problem of one kind is one warning, not one per guest."""

from __future__ import annotations

import logging
import random
import uuid as uuidlib
from pathlib import Path

import pytest

from .conftest import NO_BINDING

libvirt = pytest.importorskip("libvirt", reason=NO_BINDING)

from mom.hypervisors.base import GuestGone, HypervisorError  # noqa: E402

from .lvtest import FaultyConnection, domain_uuid, lv_error, new_domain_xml, node_file  # noqa: E402


class Opener:
    def __init__(self, no_bulk: bool = False) -> None:
        self.conn: FaultyConnection | None = None
        self.no_bulk = no_bulk

    def __call__(self, uri):  # type: ignore[no-untyped-def]
        self.conn = FaultyConnection(libvirt.open(uri))
        self.conn.no_bulk = self.no_bulk
        return self.conn


def warnings_of(caplog) -> list[str]:  # type: ignore[no-untyped-def]
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_stats_period_failures_are_one_warning_per_kind(iface_factory, tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="mom.libvirt")
    opener = Opener()
    h = iface_factory(node_file(tmp_path / "n.xml", 12), opener=opener, stats_period=5)
    h.list_guests()
    for i in range(10):
        opener.conn.faults[("setMemoryStatsPeriod", domain_uuid(i))] = lv_error(
            libvirt.VIR_ERR_OPERATION_INVALID, "Requested operation is not valid: no memory balloon device")
    for i in (10, 11):
        opener.conn.faults[("setMemoryStatsPeriod", domain_uuid(i))] = lv_error(
            libvirt.VIR_ERR_INTERNAL_ERROR, "monitor busy")
    h.refresh()
    assert sorted(warnings_of(caplog)) == [
        "libvirt: cannot set the balloon statistics period for 10 guests (vm0, vm1, vm2 and 7 more): Requested "
        "operation is not valid: no memory balloon device; later guests with this error are logged at debug level",
        "libvirt: cannot set the balloon statistics period for 2 guests (vm10, vm11): monitor busy; later guests "
        "with this error are logged at debug level"]
    # A guest found later with the same problem: a debug line, no other warning.
    uuid = str(uuidlib.uuid4())
    opener.conn.faults[("setMemoryStatsPeriod", uuid)] = lv_error(
        libvirt.VIR_ERR_OPERATION_INVALID, "Requested operation is not valid: no memory balloon device")
    h.conn.createXML(new_domain_xml("late", uuid), 0)
    h.list_guests()
    caplog.clear()
    h.refresh()
    assert not warnings_of(caplog)
    assert [r.getMessage() for r in caplog.records if "late" in r.getMessage()] == [
        "libvirt: cannot set the balloon statistics period for 1 guest (late): Requested operation is not valid: "
        "no memory balloon device"]
    h.refresh()
    assert opener.conn.calls.count("setMemoryStatsPeriod") == 13  # each domain tried once


def test_a_domain_that_dies_during_a_call_is_gone(iface_factory, tmp_path: Path) -> None:
    """QEMU exiting mid-call gives an error that does not say "no domain"; whether the
    domain still runs decides between a guest's error and a guest that is gone."""
    opener = Opener(no_bulk=True)
    h = iface_factory(node_file(tmp_path / "n.xml", 3), opener=opener)
    guests = {g.name: g for g in h.list_guests()}
    died = lv_error(libvirt.VIR_ERR_OPERATION_FAILED, "Unable to read from monitor: Connection reset by peer")
    for i in (1, 2):
        opener.conn.faults[("setMemory", domain_uuid(i))] = died
        opener.conn.faults[("memoryStats", domain_uuid(i))] = died
    with pytest.raises(HypervisorError) as still_running:
        h.set_balloon_target(guests["vm1"], 500_000)
    assert not isinstance(still_running.value, GuestGone) and "Unable to read from monitor" in str(still_running.value)
    h.conn.lookupByName("vm2").destroy()
    with pytest.raises(GuestGone):
        h.set_balloon_target(guests["vm2"], 500_000)
    data = h.collect_all(list(guests.values()), ["memory", "balloon"])
    assert set(data) == {domain_uuid(0), domain_uuid(1)}  # vm2 left out, vm1 with its error
    assert "Unable to read from monitor" in data[domain_uuid(1)].errors["memory"]


def test_churn_is_recorded_but_not_warned_about(iface_factory, tmp_path: Path, caplog) -> None:
    """Guests destroyed between listing, collection and control, tick after tick:
    their refused controls are in the tick record, and nothing is a warning."""
    from mom.core.clock import ManualClock
    from mom.daemon.config import load_config
    from mom.engine.engine import Engine, EngineSettings
    from mom.policy.policy import PolicySet

    h = iface_factory(node_file(tmp_path / "n.xml", 12), stats_period=2)
    clock = ManualClock()
    policies = PolicySet()
    policies.set("shrink", '(with Guests g (g.Control "balloon_target" (- g.balloon_cur 10240)))')
    engine = Engine(EngineSettings.from_config(
        load_config(None),
        host_collectors=("HostTime",), guest_collectors=("GuestMemory", "GuestBalloon"),
        controllers=("Balloon",), call_timeout=5), h, policies, clock)
    rnd = random.Random(7)
    created = 0

    def churn() -> None:
        nonlocal created
        for dom in h.conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
            if rnd.random() < 0.15:
                dom.destroy()
        for _ in range(2):
            created += 1
            h.conn.createXML(new_domain_xml(f"new{created}", str(uuidlib.uuid4())), 0)

    gone = 0
    try:
        with caplog.at_level(logging.DEBUG):
            for _ in range(8):
                clock.now += 10
                engine.discover()
                churn()
                engine.collect_host()
                engine.collect_guests()
                churn()
                engine.run_policy()
                record = engine.status().last_tick
                assert record is not None and record.decisions.ok
                gone += sum(not a.applied for a in record.actions)
                assert all(a.applied or "not running" in a.reason or "not found" in a.reason
                           for a in record.actions), record.actions
    finally:
        engine.close()
    assert gone > 0  # guests did vanish before their control
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("mom")], \
        warnings_of(caplog)
