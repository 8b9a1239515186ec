"""The qmp interface against fake QEMUs speaking QMP on real unix sockets: discovery
(identity, pid, sockets appearing and vanishing), the mapping of QEMU's answers
into MOM's sections and units, the controls, and the faults (a hung QEMU, a
killed and restarted one)."""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from mom.core.guests import GuestInfo
from mom.hypervisors.base import GuestGone, HypervisorError, HypervisorUnavailable, NotSupported
from mom.hypervisors.qmp import QmpHypervisor
from mom.hypervisors.qmp.connection import socket_uuid
from mom.hypervisors.runstate import RunState
from tests.support.qmp_double import MIB, GuestState, QmpDouble
from tests.support.wait import wait_until

UUID_A = "6b1e1d7a-0f44-4d8a-9c42-3d1b7b0c1a01"
UUID_B = "6b1e1d7a-0f44-4d8a-9c42-3d1b7b0c1a02"
ALL = ["memory", "balloon", "virtio_mem"]
MakeHv = Callable[..., QmpHypervisor]


def by_name(guests: list[GuestInfo]) -> dict[str, GuestInfo]:
    return {g.name: g for g in guests}


def test_guests_are_the_sockets_with_their_identity_and_the_qemu_pid(double: QmpDouble, make_hv: MakeHv) -> None:
    double.add("100.qmp", name="web", uuid=UUID_A)
    anon = double.add("101.qmp")  # started without -name and -uuid
    hv = make_hv()
    guests = by_name(hv.list_guests())
    assert set(guests) == {"web", "101"}
    assert guests["web"].uuid == UUID_A
    # No -uuid: a UUID made from the socket's path, the same at every connection.
    assert guests["101"].uuid == socket_uuid(anon.path) != socket_uuid(double.qemus[0].path)
    # The pid is the socket peer's: here the test process serves the fake QEMUs.
    assert guests["web"].pid == guests["101"].pid == os.getpid()


def test_sockets_that_appear_or_vanish_are_picked_up(double: QmpDouble, make_hv: MakeHv,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    hv = make_hv()
    caplog.set_level(logging.INFO, logger="mom.qmp")
    assert hv.list_guests() == [] and hv.list_guests() == []
    assert [r.getMessage() for r in caplog.records] == [
        f"hypervisor qmp-socket-glob: no socket matches {double.directory}/*.qmp (yet); "
        f"guests are picked up when their sockets appear"]
    first = double.add("100.qmp", name="a", uuid=UUID_A)
    assert [g.name for g in hv.list_guests()] == ["a"]
    assert hv.run_states() == {first.path: RunState.CONNECTED}
    double.add("101.qmp", name="b", uuid=UUID_B)
    assert sorted(g.name for g in hv.list_guests()) == ["a", "b"]
    first.remove()
    assert [g.name for g in hv.list_guests()] == ["b"]
    assert list(hv.connections) == [double.qemus[1].path]


def test_nothing_starts_before_the_first_call_and_close_stops_the_loop(double: QmpDouble) -> None:
    double.add("100.qmp", name="a", uuid=UUID_A)
    hv = QmpHypervisor(str(double.directory) + "/*.qmp", timeout=1.0)
    assert not [t for t in threading.enumerate() if t.name == "mom-qmp"]
    assert double.qemus[0].connections == 0
    assert len(hv.list_guests()) == 1
    assert [t for t in threading.enumerate() if t.name == "mom-qmp"]
    hv.close()
    wait_until(lambda: not [t for t in threading.enumerate() if t.name == "mom-qmp"], 5, what="loop thread gone")
    with pytest.raises(HypervisorUnavailable):
        hv.list_guests()


def test_sections_in_moms_units(double: QmpDouble, make_hv: MakeHv) -> None:
    state = GuestState(base_mib=1024, actual_mib=768, used_mib=200, cache_mib=50, virtio_mem=True,
                       vmem_block_mib=2, vmem_max_mib=512, vmem_requested_mib=128)
    double.add("100.qmp", name="a", uuid=UUID_A, state=state)
    hv = make_hv()
    guest = hv.list_guests()[0]
    data = hv.collect_all([guest], ALL)[UUID_A]
    assert data.errors == {}
    total_kib = (768 + 128) * 1024
    assert data.memory == {"mem_available": total_kib, "mem_unused": total_kib - 250 * 1024,
                           "mem_usable": total_kib - 200 * 1024, "disk_caches": 50 * 1024,
                           "mem_free": total_kib - 200 * 1024, "swap_in": 0, "swap_out": 0,
                           "major_fault": 3, "minor_fault": 1000, "hugetlb_pgalloc": 0, "hugetlb_pgfail": 0}
    assert data.balloon == {"balloon_cur": 768 * 1024, "balloon_max": 1024 * 1024, "balloon_min": 0,
                            "balloon_free_page_reporting": 1}
    assert data.virtio_mem == {"virtio_mem_size": 128 * 1024, "virtio_mem_requested": 128 * 1024,
                               "virtio_mem_block": 2048, "virtio_mem_max": 512 * 1024}
    # The statistics polling interval was set on the balloon when connecting.
    assert state.polling_interval == 2


def test_newer_statistics_appear_only_where_qemu_reports_them(double: QmpDouble, make_hv: MakeHv) -> None:
    double.add("100.qmp", name="new", uuid=UUID_A, state=GuestState(newer_stats=True, oom_kills=2, alloc_stalls=7))
    double.add("101.qmp", name="old", uuid=UUID_B, state=GuestState(free_page_reporting=False))
    hv = make_hv()
    data = hv.collect_all(hv.list_guests(), ["memory", "balloon"])
    new, old = data[UUID_A], data[UUID_B]
    assert new.memory is not None and old.memory is not None and old.balloon is not None
    assert (new.memory["oom_kills"], new.memory["alloc_stalls"]) == (2, 7)
    assert "oom_kills" not in old.memory and "alloc_stalls" not in old.memory
    assert old.balloon["balloon_free_page_reporting"] == 0


def test_missing_devices_and_statistics(double: QmpDouble, make_hv: MakeHv) -> None:
    double.add("100.qmp", name="plain", uuid=UUID_A, state=GuestState(balloon=False))
    hv = make_hv(stats_period=None)
    double.add("101.qmp", name="quiet", uuid=UUID_B)  # balloon, but no polling interval: no statistics
    guests = by_name(hv.list_guests())
    data = hv.collect_all(list(guests.values()), ALL)
    plain, quiet = data[UUID_A], data[UUID_B]
    assert plain.memory is None and plain.balloon is None
    assert "no virtio-balloon device" in plain.errors["memory"] and "no virtio-balloon" in plain.errors["balloon"]
    # No virtio-mem device: as on the other interfaces, an unsupported section (the engine
    # says it once and only optional collectors read it), not a failure.
    assert plain.virtio_mem is None and plain.errors["virtio_mem"] == "guest plain: no virtio-mem device"
    assert plain.unsupported == {"memory", "balloon", "virtio_mem"}
    assert quiet.unsupported == {"virtio_mem"} and set(quiet.errors) == {"memory", "virtio_mem"}
    assert quiet.memory is None and "no balloon statistics" in quiet.errors["memory"]
    assert quiet.balloon is not None
    with pytest.raises(NotSupported):
        hv.guest_virtio_mem(guests["plain"])
    with pytest.raises(NotSupported):
        hv.set_virtio_mem_requested(guests["plain"], 1024)
    with pytest.raises(NotSupported):
        hv.set_balloon_target(guests["plain"], 1024)


def test_balloon_target_is_sent_in_bytes(double: QmpDouble, make_hv: MakeHv) -> None:
    qemu = double.add("100.qmp", name="a", uuid=UUID_A)
    hv = make_hv()
    guest = hv.list_guests()[0]
    hv.set_balloon_target(guest, 512 * 1024)
    assert qemu.state.actual_mib == 512
    assert hv.guest_balloon_info(guest)["balloon_cur"] == 512 * 1024


def test_virtio_mem_request_on_the_block_within_the_region_is_set(double: QmpDouble, make_hv: MakeHv) -> None:
    qemu = double.add("100.qmp", name="a", uuid=UUID_A,
                      state=GuestState(virtio_mem=True, vmem_block_mib=2, vmem_max_mib=512))
    hv = make_hv()
    guest = hv.list_guests()[0]
    for size_mib in (300, 512, 0):  # a multiple of the block, the whole region, nothing
        hv.set_virtio_mem_requested(guest, size_mib * 1024)
        assert qemu.state.vmem_requested_mib == size_mib
        assert hv.guest_virtio_mem(guest)["virtio_mem_requested"] == size_mib * 1024


@pytest.mark.parametrize(("wanted_kib", "reason"), [
    (301 * 1024, "is not a multiple of its 2048 KiB block"),   # the controller rounds, not the interface
    (303 * 1024 - 1, "is not a multiple of its 2048 KiB block"),
    (-4096, r"is outside the device's region \[0, 524288\] KiB"),
    (514 * 1024, r"is outside the device's region \[0, 524288\] KiB"),
])
def test_virtio_mem_request_off_the_block_or_outside_the_region_is_refused(
        double: QmpDouble, make_hv: MakeHv, wanted_kib: int, reason: str) -> None:
    qemu = double.add("100.qmp", name="a", uuid=UUID_A,
                      state=GuestState(virtio_mem=True, vmem_block_mib=2, vmem_max_mib=512, vmem_requested_mib=128))
    hv = make_hv()
    guest = hv.list_guests()[0]
    with pytest.raises(HypervisorError) as refused:
        hv.set_virtio_mem_requested(guest, wanted_kib)
    assert re.fullmatch(f"guest a: virtio-mem requested size {wanted_kib} KiB {reason}", str(refused.value))
    assert qemu.state.vmem_requested_mib == 128  # nothing sent: QEMU's device unchanged
    assert hv.collect_all([guest], ["balloon"])[UUID_A].balloon is not None  # the connection stays


def test_a_refused_command_is_an_error_of_that_call_only(double: QmpDouble, make_hv: MakeHv) -> None:
    qemu = double.add("100.qmp", name="a", uuid=UUID_A, state=GuestState(virtio_mem=True, vmem_max_mib=512))
    hv = make_hv()
    guest = hv.list_guests()[0]
    qemu.state.vmem_block_mib = 4  # QEMU now refuses the 2 MiB multiples the interface computed
    with pytest.raises(HypervisorError, match="has to be multiples of 'block-size'"):
        hv.set_virtio_mem_requested(guest, 2048)
    assert hv.collect_all([guest], ["balloon"])[UUID_A].balloon is not None  # the connection stays


def test_a_hung_qemu_costs_only_its_own_guest(double: QmpDouble, make_hv: MakeHv,
                                              caplog: pytest.LogCaptureFixture) -> None:
    hung = double.add("100.qmp", name="stuck", uuid=UUID_A)
    double.add("101.qmp", name="fine", uuid=UUID_B)
    hv = make_hv(timeout=0.5)
    guests = hv.list_guests()
    hung.hang()
    caplog.set_level(logging.INFO, logger="mom.qmp")
    for _ in range(3):
        data = hv.collect_all(guests, ["memory", "balloon"])
        assert list(data) == [UUID_B] and data[UUID_B].memory is not None
        guests_now = hv.list_guests()  # its reconnection fails too (no greeting), others are listed
        assert [g.name for g in guests_now] == ["fine"]
    stuck = hv.connections[hung.path]
    assert stuck.state is RunState.DISCONNECTED
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    # One line when it stopped answering, one when reconnecting failed differently; not one per tick.
    assert len(warnings) == 2, warnings
    assert "did not answer within 0.5 s" in warnings[0] and "cannot connect" in warnings[1]
    hung.hang(False)
    wait_until(lambda: "stuck" in [g.name for g in hv.list_guests()], 5, 0.05, what="the QEMU answering again")
    lines = [r.getMessage() for r in caplog.records]
    assert f"guest {hung.path} qmp: recovered" in lines
    assert any(line.startswith(f"qmp: guest stuck ({hung.path}) connected again, pid ") for line in lines)


def test_a_killed_and_restarted_qemu_is_reconnected(double: QmpDouble, make_hv: MakeHv,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    qemu = double.add("100.qmp", name="a", uuid=UUID_A)
    hv = make_hv()
    guest = hv.list_guests()[0]
    caplog.set_level(logging.INFO, logger="mom.qmp")
    qemu.kill()  # the socket file stays, refusing connections
    wait_until(lambda: hv.list_guests() == [], 5, 0.05, what="the lost connection noticed")
    assert hv.run_states()[qemu.path] is RunState.DISCONNECTED
    with pytest.raises(GuestGone):
        hv.set_balloon_target(guest, 1024)
    assert hv.collect_all([guest], ["balloon"]) == {}
    for _ in range(3):
        assert hv.list_guests() == []
    qemu.start()
    wait_until(lambda: hv.list_guests() == [guest], 5, 0.05, what="the restarted QEMU reconnected")
    assert hv.connections[qemu.path].connections == 2
    hv.set_balloon_target(guest, 256 * 1024)
    assert qemu.state.actual_mib == 256
    refused = [r for r in caplog.records if "Connection refused" in r.getMessage()]
    assert len(refused) == 1


def test_collection_calls_per_guest_and_tick(double: QmpDouble, make_hv: MakeHv) -> None:
    """Per guest and tick: guest-stats, query-balloon, and query-memory-devices only
    for a guest with a virtio-mem device (the benchmark counts the same)."""
    double.add("100.qmp", name="a", uuid=UUID_A, state=GuestState(virtio_mem=True))
    double.add("101.qmp", name="b", uuid=UUID_B)
    hv = make_hv()
    guests = hv.list_guests()
    before = [q.calls for q in double.qemus]
    hv.collect_all(guests, ALL)
    assert [q.calls - b for q, b in zip(double.qemus, before, strict=True)] == [3, 2]
    assert double.qemus[0].commands[-3:] == ["qom-get", "query-balloon", "query-memory-devices"]


def test_the_qmp_socket_double_refuses_commands_before_negotiation(double: QmpDouble) -> None:
    """The double speaks QMP as QEMU does: a command before qmp_capabilities is refused."""
    import json
    import socket

    qemu = double.add("100.qmp", name="a", uuid=UUID_A)
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(qemu.path)
        f = s.makefile("rwb")
        assert "QMP" in json.loads(f.readline())
        f.write(b'{"execute": "query-balloon", "id": 1}')
        f.flush()
        reply = json.loads(f.readline())
        assert reply["error"]["class"] == "CommandNotFound" and reply["id"] == 1
        f.write(b'{"execute": "qmp_capabilities"}{"execute": "query-balloon", "id": "x"}')
        f.flush()
        assert json.loads(f.readline()) == {"return": {}}
        assert json.loads(f.readline()) == {"id": "x", "return": {"actual": 1024 * MIB}}


def test_a_restarted_qemu_gets_the_statistics_period_again(double: QmpDouble, make_hv: MakeHv) -> None:
    qemu = double.add("100.qmp", name="a", uuid=UUID_A)
    hv = make_hv()
    guest = hv.list_guests()[0]
    qemu.kill()
    qemu.state = GuestState(virtio_mem=True)  # a new QEMU: no polling interval, a virtio-mem device now
    qemu.start()
    wait_until(lambda: hv.list_guests() == [guest] and hv.connections[qemu.path].connections == 2, 5, 0.05,
               what="reconnected")
    assert qemu.state.polling_interval == 2
    data = hv.collect_all([guest], ALL)[UUID_A]
    assert data.memory is not None and data.virtio_mem is not None  # devices read anew


def test_what_is_not_a_guest_is_one_warning(double: QmpDouble, make_hv: MakeHv, sockets: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    double.add("100.qmp", name="a", uuid=UUID_A)
    double.add("101.qmp", name="a-copy", uuid=UUID_A)  # the same UUID on another socket
    (sockets / "notes.qmp").write_text("not a socket")
    hv = make_hv()
    caplog.set_level(logging.INFO, logger="mom.qmp")
    for _ in range(3):
        assert [g.name for g in hv.list_guests()] == ["a"]
    warnings = sorted(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert len(warnings) == 2, warnings
    assert re.fullmatch(r"guest \S+/101\.qmp qmp: the guest has the UUID \S+ of \S+/100\.qmp's guest; "
                        r"left out \(guest a-copy\)", warnings[0]), warnings[0]
    assert re.fullmatch(r"guest \S+/notes\.qmp qmp: cannot connect: Connection refused \(guest notes\)",
                        warnings[1]), warnings[1]


def test_a_handshake_cut_by_the_backstop_is_undone_and_tried_again(double: QmpDouble, make_hv: MakeHv) -> None:
    """A QEMU that hangs the handshake longer than the caller waits: the discovery is
    cancelled, and the attempt with it: its socket is closed and the connection is
    DISCONNECTED (not left CONNECTING, which no discovery would try again)."""
    qemu = double.add("100.qmp", name="slow", uuid=UUID_A)
    qemu.hang()  # accepts, never greets
    hv = make_hv(timeout=3.0, backstop=0.5)
    with pytest.raises(HypervisorError, match=r"no answer within 0\.5 s"):
        hv.list_guests()
    wait_until(lambda: hv.run_states() == {qemu.path: RunState.DISCONNECTED}, 5, 0.02, what="the attempt undone")
    wait_until(lambda: qemu.open_connections == 0, 5, 0.02, what="the attempt's socket closed")
    qemu.hang(False)
    wait_until(lambda: [g.name for g in hv.list_guests()] == ["slow"], 5, 0.05, what="the guest managed again")
    assert hv.run_states() == {qemu.path: RunState.CONNECTED}


def test_a_malformed_answer_fails_that_guests_section_only(double: QmpDouble, make_hv: MakeHv) -> None:
    """QEMU answers query-memory-devices without the sizes of the device (a newer or
    broken QEMU): that guest's virtio_mem section is an error naming the guest and
    the command, the same each tick (so logged once); its other sections and the
    other guests are collected as usual."""
    broken = GuestState(virtio_mem=True)
    # The handshake reads block-size and max-size only; collection needs size and requested-size too.
    broken.answers["query-memory-devices"] = [{"type": "virtio-mem", "data": {
        "block-size": 2 * MIB, "max-size": 512 * MIB, "id": "vmem0dev"}}]
    double.add("100.qmp", name="odd", uuid=UUID_A, state=broken)
    double.add("101.qmp", name="fine", uuid=UUID_B, state=GuestState(virtio_mem=True))
    hv = make_hv()
    guests = by_name(hv.list_guests())
    errors = set()
    for _ in range(3):
        data = hv.collect_all(list(guests.values()), ALL)
        odd, fine = data[UUID_A], data[UUID_B]
        assert fine.errors == {} and fine.virtio_mem is not None
        assert odd.memory is not None and odd.balloon is not None and odd.virtio_mem is None
        assert set(odd.errors) == {"virtio_mem"} and not odd.unsupported
        errors.add(odd.errors["virtio_mem"])
    assert errors == {"guest odd: query-memory-devices: QEMU's answer cannot be read (KeyError: 'size')"}
    with pytest.raises(HypervisorError, match=r"^guest odd: query-memory-devices: QEMU's answer cannot be read"):
        hv.guest_virtio_mem(guests["odd"])


def test_close_during_a_slow_discovery(double: QmpDouble, make_hv: MakeHv,
                                       caplog: pytest.LogCaptureFixture) -> None:
    """close() while a discovery waits for a QEMU that does not greet: close returns,
    raising nothing, and the discovery's caller gets HypervisorUnavailable at once
    rather than after its backstop (here 21 s)."""
    double.add("100.qmp", name="fine", uuid=UUID_A)
    slow = double.add("101.qmp", name="slow", uuid=UUID_B)
    slow.hang()
    hv = make_hv(timeout=10.0)
    caplog.set_level(logging.INFO, logger="mom")
    outcome: list[BaseException | list[GuestInfo]] = []

    def discover() -> None:
        try:
            outcome.append(hv.list_guests())
        except BaseException as e:  # noqa: BLE001 - the test looks at what it was
            outcome.append(e)

    caller = threading.Thread(target=discover)
    caller.start()
    wait_until(lambda: slow.connections == 1, 5, 0.02, what="the discovery waiting for the slow QEMU")
    hv.close()
    caller.join(5)  # far below the backstop: only a cancelled call returns by then
    assert not caller.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], HypervisorUnavailable), outcome
    assert set(hv.run_states().values()) <= {RunState.CLOSED}
    wait_until(lambda: slow.open_connections == 0 and double.qemus[0].open_connections == 0, 5, 0.02,
               what="every socket closed")
    assert not [r for r in caplog.records if r.name.startswith("mom") and (r.levelno >= logging.ERROR or r.exc_info)]
    hv.close()  # again: nothing


def test_qemu_qmp_logging_is_adjusted_on_first_use_and_left_alone_at_debug(make_hv: MakeHv) -> None:
    qemu_log, mom_log = logging.getLogger("qemu.qmp"), logging.getLogger("mom")
    saved = qemu_log.level, mom_log.level
    try:
        qemu_log.setLevel(logging.NOTSET)
        mom_log.setLevel(logging.DEBUG)  # momd -v debug
        hv = make_hv()
        assert qemu_log.level == logging.NOTSET  # importing and building changed nothing
        hv.start()
        assert qemu_log.level == logging.NOTSET  # at debug verbosity qemu.qmp's lines stay
        mom_log.setLevel(logging.INFO)
        make_hv().start()
        assert qemu_log.level == logging.CRITICAL  # otherwise its traceback of each outage is silenced
    finally:
        qemu_log.setLevel(saved[0])
        mom_log.setLevel(saved[1])


def test_outages_are_timed_on_the_daemons_clock(double: QmpDouble, sockets: Path) -> None:
    from mom.core.clock import ManualClock
    from mom.hypervisors.settings import QmpSettings

    clock = ManualClock(start=1_000.0)
    (sockets / "notes.qmp").write_text("not a socket")
    hv = QmpHypervisor.from_settings(QmpSettings(socket_glob=str(sockets / "*.qmp"), timeout=1.0), clock)
    try:
        assert hv.list_guests() == []
        when, what = hv.faults.tallies().last["hypervisor"]
        assert when == 1_000.0 and "Connection refused" in what
    finally:
        hv.close()
