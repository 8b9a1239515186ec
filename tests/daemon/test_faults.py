"""FaultLog: each distinct fault logged once; the same message under several keys
is one fault; debug-level faults (an outage the interface logs itself) are
recorded for health but not logged again; 'recovered' only for logged faults."""

from __future__ import annotations

import logging

from mom.daemon.faults import FaultLog


def messages(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "t.faults"]


def test_once_per_fault_and_recovery(caplog) -> None:
    faults = FaultLog(logging.getLogger("t.faults"))
    with caplog.at_level(logging.DEBUG, logger="t.faults"):
        for _ in range(5):
            faults.report("collector HostKSM", "cannot read run")
        faults.report("collector HostKSM", "cannot read pages_to_scan")  # a new message is a new fault
        faults.clear("collector HostKSM")
        faults.clear("collector HostKSM")
    assert messages(caplog) == ["collector HostKSM: cannot read run", "collector HostKSM: cannot read pages_to_scan",
                                "collector HostKSM: recovered"]
    assert faults.counts["collector"] == 6 and faults.active() == {}


def test_same_message_under_several_keys_is_one_line(caplog) -> None:
    faults = FaultLog(logging.getLogger("t.faults"))
    down = "no connection to vdsm at 127.0.0.1:54321 (reconnecting in the background)"
    with caplog.at_level(logging.DEBUG, logger="t.faults"):
        faults.report("hypervisor list_guests", down)
        faults.report("hypervisor refresh", down)
        faults.report("host controller KSM", down, "controller")
        for key in ("hypervisor list_guests", "hypervisor refresh", "host controller KSM"):
            faults.clear(key)
    assert messages(caplog) == [f"hypervisor list_guests: {down}", "hypervisor list_guests: recovered"]


def test_debug_faults_are_recorded_but_not_logged_as_warnings(caplog) -> None:
    faults = FaultLog(logging.getLogger("t.faults"))
    down = "libvirtd is not reachable"
    with caplog.at_level(logging.INFO, logger="t.faults"):
        faults.report("hypervisor list_guests", down, "hypervisor", logging.DEBUG)
        faults.report("host controller KSM", down, "controller")  # same outage seen by a controller
        assert faults.active_by_component()["hypervisor"] == {"hypervisor list_guests": down}
        faults.clear("hypervisor list_guests")
        faults.clear("host controller KSM")
    assert messages(caplog) == []  # the interface logged the outage; nothing twice
    assert faults.counts == {"hypervisor": 1, "controller": 1}
