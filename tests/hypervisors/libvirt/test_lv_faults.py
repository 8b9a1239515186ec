"""Faults: a lost connection is reopened with back-off, a vanished domain is dropped
quietly, one guest's error does not spoil the others, each error is logged once."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from .conftest import NO_BINDING

libvirt = pytest.importorskip("libvirt", reason=NO_BINDING)

from mom.hypervisors.base import HypervisorUnavailable  # noqa: E402
from mom.hypervisors.libvirt import ConnectionLost  # noqa: E402

from .lvtest import FaultyConnection, FaultyOpener, domain_uuid, lv_error, node_file  # noqa: E402


class Opener:
    """Opens FaultyConnections; can be told to refuse (libvirtd down)."""

    def __init__(self) -> None:
        self.down = False
        self.opened: list[FaultyConnection] = []
        self.attempts = 0
        self.no_bulk = False

    def __call__(self, uri):  # type: ignore[no-untyped-def]
        self.attempts += 1
        if self.down:
            raise lv_error(libvirt.VIR_ERR_SYSTEM_ERROR, "Failed to connect socket: No such file or directory",
                           libvirt.VIR_FROM_RPC)
        conn = FaultyConnection(libvirt.open(uri))
        conn.no_bulk = self.no_bulk
        self.opened.append(conn)
        return conn

    @property
    def conn(self) -> FaultyConnection:
        return self.opened[-1]


class FakeClock:
    """A monotonic clock the test moves by hand (the back-off reads it)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def raises_unavailable(call) -> str:  # type: ignore[no-untyped-def]
    """Run ``call``; it must raise ConnectionLost (a HypervisorUnavailable): its message."""
    with pytest.raises(ConnectionLost) as e:
        call()
    assert isinstance(e.value, HypervisorUnavailable)
    return str(e.value)


def test_lost_connection_is_reopened_with_back_off(iface_factory, tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="mom.libvirt")
    clock = FakeClock()
    opener = Opener()
    h = iface_factory(node_file(tmp_path / "n.xml", 3), opener=opener, retry_min=10, retry_max=20,
                      monotonic=clock)
    guests = h.list_guests()
    assert len(guests) == 3
    opener.conn.dead = True
    opener.down = True
    messages = {raises_unavailable(lambda: h.collect_all(guests, ["memory"]))}
    # Down: attempts are spaced by the back-off, not made on every call.
    for _ in range(20):
        messages.add(raises_unavailable(h.list_guests))
    assert opener.attempts == 2  # the first open and one failed reconnection (at once after the loss)
    clock.now += 9.9
    messages.add(raises_unavailable(h.list_guests))
    assert opener.attempts == 2
    clock.now += 0.2  # the first back-off (10 s) is over
    messages.add(raises_unavailable(h.refresh))
    assert opener.attempts == 3
    clock.now += 19.8  # the back-off doubled
    messages.add(raises_unavailable(h.list_guests))
    assert opener.attempts == 3
    clock.now += 0.3
    messages.add(raises_unavailable(h.list_guests))
    assert opener.attempts == 4
    clock.now += 20.1  # ... up to retry_max
    messages.add(raises_unavailable(h.list_guests))
    assert opener.attempts == 5
    assert len(messages) == 1, messages  # one outage, one message: one fault in the engine
    assert "Broken pipe" in messages.pop()
    opener.down = False
    clock.now += 20.1
    assert len(h.list_guests()) == 3
    assert h.connections == 2
    data = h.collect_all(guests, ["memory", "balloon"])
    assert len(data) == 3
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "connection lost" in warnings[0], warnings  # one warning per outage
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert sum("reconnected to" in m for m in infos) == 1, infos
    # A second outage is a new one: a warning and a message of its own.
    opener.conn.dead = True
    opener.down = True
    second = raises_unavailable(h.list_guests)
    assert second == raises_unavailable(h.list_guests)
    assert sum(r.levelno >= logging.WARNING for r in caplog.records) == 2


class FakeDom:
    def UUIDString(self) -> str:
        return domain_uuid(0)


def test_close_does_not_wait_for_a_hung_open(tmp_path: Path) -> None:
    """libvirtd accepts but never answers: close(), the event callbacks and other
    callers do not wait for the open; a connection that opens after close() is closed."""
    from mom.hypervisors.libvirt import LibvirtHypervisor

    uri = node_file(tmp_path / "n.xml", 2)
    entered, release = threading.Event(), threading.Event()
    opened: list[FaultyConnection] = []

    def opener(uri):  # type: ignore[no-untyped-def]
        entered.set()
        release.wait(60)
        conn = FaultyConnection(libvirt.open(uri))
        opened.append(conn)
        return conn
    h = LibvirtHypervisor(uri, opener=opener, connect_now=False)
    outcome: list[BaseException | object] = []

    def call() -> None:
        try:
            outcome.append(h.list_guests())
        except BaseException as e:  # noqa: BLE001
            outcome.append(e)
    caller = threading.Thread(target=call, daemon=True)
    try:
        caller.start()
        assert entered.wait(10), "the opener was not called"

        def returns_promptly(fn) -> bool:  # type: ignore[no-untyped-def]
            errors: list[BaseException] = []

            def run() -> None:
                try:
                    fn()
                except BaseException as e:  # noqa: BLE001 - reported below
                    errors.append(e)
            t = threading.Thread(target=run, daemon=True)
            t.start()
            t.join(2.0)  # generous for a loaded machine; without the fix, never
            assert not errors, errors
            return not t.is_alive()
        # What libvirt's event thread calls: a stale connection closing, a domain stopping.
        events = h.event_handlers
        assert returns_promptly(lambda: events.closed(object(), libvirt.VIR_CONNECT_CLOSE_REASON_EOF, None))
        assert returns_promptly(lambda: events.lifecycle(None, FakeDom(), libvirt.VIR_DOMAIN_EVENT_STOPPED, 0, None))
        def list_guests_fails() -> None:
            with pytest.raises(ConnectionLost):
                h.list_guests()
        assert returns_promptly(list_guests_fails)
        assert returns_promptly(h.close)
    finally:
        release.set()
        caller.join(30)
    assert not caller.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], ConnectionLost) and "closed" in str(outcome[0])
    assert h.conn is None
    assert len(opened) == 1 and "close" in opened[0].calls  # the late connection was closed
    with pytest.raises(ConnectionLost, match="closed"):
        h.list_guests()


def test_connection_lost_mid_tick_keeps_nothing_half_done(iface_factory, tmp_path: Path) -> None:
    opener = Opener()
    opener.no_bulk = True  # per-domain calls, so the loss happens between guests
    h = iface_factory(node_file(tmp_path / "n.xml", 4), opener=opener)
    guests = h.list_guests()
    conn = opener.conn
    conn.faults[("memoryStats", domain_uuid(2))] = lv_error(libvirt.VIR_ERR_SYSTEM_ERROR, "Broken pipe",
                                                             libvirt.VIR_FROM_RPC)
    conn.dead = False

    def die_then_raise(name: str, uuid: str | None, orig=conn.check) -> None:  # type: ignore[no-untyped-def]
        if (name, uuid) in conn.faults:
            conn.dead = True
        orig(name, uuid)
    conn.check = die_then_raise  # type: ignore[method-assign]
    with pytest.raises(ConnectionLost):
        h.collect_all(guests, ["memory"])
    assert h.conn is None


def test_one_guest_error_does_not_spoil_the_others(iface_factory, tmp_path: Path) -> None:
    opener = Opener()
    h = iface_factory(node_file(tmp_path / "n.xml", 5), opener=opener)
    guests = h.list_guests()
    opener.conn.faults[("memoryStats", domain_uuid(1))] = lv_error(libvirt.VIR_ERR_INTERNAL_ERROR, "agent hiccup")
    opener.conn.faults[("info", domain_uuid(3))] = lv_error(libvirt.VIR_ERR_OPERATION_FAILED, "monitor busy")
    data = h.collect_all(guests, ["memory", "balloon"])
    assert len(data) == 5
    assert "agent hiccup" in data[domain_uuid(1)].errors["memory"] and data[domain_uuid(1)].balloon
    assert "monitor busy" in data[domain_uuid(3)].errors["balloon"] and data[domain_uuid(3)].memory
    for i in (0, 2, 4):
        d = data[domain_uuid(i)]
        assert d.memory and d.balloon and not d.errors


def test_domain_vanishing_mid_tick_is_dropped_quietly(iface_factory, tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="mom.libvirt")
    opener = Opener()
    opener.no_bulk = True
    h = iface_factory(node_file(tmp_path / "n.xml", 3), opener=opener)
    guests = h.list_guests()
    # Between discovery and this guest's turn in the tick, the domain goes away.
    opener.conn.faults[("memoryStats", domain_uuid(1))] = lv_error(libvirt.VIR_ERR_NO_DOMAIN, "Domain not found")
    data = h.collect_all(guests, ["memory", "balloon"])
    assert set(data) == {domain_uuid(0), domain_uuid(2)}
    # And one that shut down: the driver says "not running".
    h.conn.lookupByUUIDString(domain_uuid(2)).destroy()
    data = h.collect_all(guests, ["memory", "balloon"])
    assert set(data) == {domain_uuid(0)}
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_no_guest_statistics_is_a_clear_section_error(iface_factory, tmp_path: Path) -> None:
    """memoryStats() without the guest's own keys (no balloon driver in the guest)."""
    opener = FaultyOpener()
    h = iface_factory(node_file(tmp_path / "n.xml", 1), opener=opener)
    g = h.list_guests()[0]
    opener.conn.overrides[("memoryStats", g.uuid)] = lambda: {"actual": 1048576, "rss": 4096}
    data = h.collect_all([g], ["memory", "balloon"])[g.uuid]
    assert data.memory is None and "no balloon statistics" in data.errors["memory"] and data.balloon


def test_unreachable_uri_at_start_does_not_raise(iface_factory, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="mom.libvirt")
    clock = FakeClock()
    h = iface_factory("qemu+unix:///system?socket=/nonexistent/libvirt-sock", retry_min=5, monotonic=clock)
    assert h.conn is None
    first = raises_unavailable(h.list_guests)
    assert "reconnecting" in first
    clock.now += 6  # another failed attempt: the same outage, the same message, no other warning
    assert raises_unavailable(h.list_guests) == first
    assert raises_unavailable(lambda: h.collect_all([], ["memory"])) == first
    assert sum(r.levelno >= logging.WARNING for r in caplog.records) == 1


def test_engine_keeps_guests_while_disconnected(iface_factory, tmp_path: Path) -> None:
    from mom.daemon.config import load_config
    from mom.engine.engine import Engine, EngineSettings
    from mom.policy.policy import PolicySet

    opener = Opener()
    h = iface_factory(node_file(tmp_path / "n.xml", 4), opener=opener, retry_min=60)
    engine = Engine(EngineSettings.from_config(
        load_config(None),
        guest_collectors=("GuestMemory", "GuestBalloon"), host_collectors=(),
        call_timeout=5), h, PolicySet())
    try:
        engine.discover()
        engine.collect_guests()
        guests = engine.status().guests
        assert len(guests) == 4 and all(g.ready for g in guests)
        opener.conn.dead = True
        opener.down = True
        engine.collect_guests()
        engine.discover()
        engine.discover()
        assert len(engine.status().guests) == 4
        active = engine.status().active_faults()
        assert any("libvirt connection lost" in m or "not connected" in m for m in active.values()), active
    finally:
        engine.close()
