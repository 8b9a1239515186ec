"""FaultLog: each distinct fault logged once; the same message under several keys
is one fault; debug-level faults (an outage the interface logs itself) are
recorded for health but not logged again; 'recovered' only for logged faults."""

from __future__ import annotations

import logging

from mom.core.faults import FaultKey, FaultLog

KSM = FaultKey("collector", "HostKSM")
LIST_GUESTS = FaultKey("hypervisor", "list_guests")
REFRESH = FaultKey("hypervisor", "refresh")
KSM_CONTROL = FaultKey("controller", "controller KSM", "host")


def fault_log() -> FaultLog:
    return FaultLog(logging.getLogger("t.faults"), lambda: 1000.0)


def messages(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "t.faults"]


def test_once_per_fault_and_recovery(caplog) -> None:
    faults = fault_log()
    with caplog.at_level(logging.DEBUG, logger="t.faults"):
        for _ in range(5):
            faults.report(KSM, "cannot read run")
        faults.report(KSM, "cannot read pages_to_scan")  # a new message is a new fault
        faults.clear(KSM)
        faults.clear(KSM)
    assert messages(caplog) == ["collector HostKSM: cannot read run", "collector HostKSM: cannot read pages_to_scan",
                                "collector HostKSM: recovered"]
    assert faults.counts["collector"] == 6 and faults.active() == {}


def test_same_message_under_several_keys_is_one_line(caplog) -> None:
    faults = fault_log()
    down = "no connection to vdsm at 127.0.0.1:54321 (reconnecting in the background)"
    with caplog.at_level(logging.DEBUG, logger="t.faults"):
        faults.report(LIST_GUESTS, down)
        faults.report(REFRESH, down)
        faults.report(KSM_CONTROL, down)
        for key in (LIST_GUESTS, REFRESH, KSM_CONTROL):
            faults.clear(key)
    assert messages(caplog) == [f"hypervisor list_guests: {down}", "hypervisor list_guests: recovered"]


def test_debug_faults_are_recorded_but_not_logged_as_warnings(caplog) -> None:
    faults = fault_log()
    down = "libvirtd is not reachable"
    with caplog.at_level(logging.INFO, logger="t.faults"):
        faults.report(LIST_GUESTS, down, logging.DEBUG)
        faults.report(KSM_CONTROL, down)  # same outage seen by a controller
        assert faults.tallies().active["hypervisor"] == {"hypervisor list_guests": down}
        faults.clear(LIST_GUESTS)
        faults.clear(KSM_CONTROL)
    assert messages(caplog) == []  # the interface logged the outage; nothing twice
    assert faults.counts == {"hypervisor": 1, "controller": 1}


def test_faults_are_stamped_with_the_given_clock_and_keyed_by_target(caplog) -> None:
    now = [5000.0]
    faults = FaultLog(logging.getLogger("t.faults"), lambda: now[0])
    vm1 = FaultKey("controller", "controller Balloon", "vm1")
    vm10 = FaultKey("controller", "controller Balloon", "vm10")
    with caplog.at_level(logging.DEBUG, logger="t.faults"):
        faults.report(vm1, "no answer within 5 s")
        now[0] = 5010.0
        faults.report(vm10, "refused")
        faults.forget_target("vm1")  # vm1 went away: its faults go, quietly; vm10's stay
    tallies = faults.tallies()
    assert tallies.last["controller"] == (5010.0, "guest vm10 controller Balloon: refused")
    assert faults.active() == {"guest vm10 controller Balloon": "refused"}
    assert messages(caplog) == ["guest vm1 controller Balloon: no answer within 5 s",
                                "guest vm10 controller Balloon: refused"]
