"""Faults: a lost connection is reopened with back-off, a vanished domain is dropped
quietly, one guest's error does not spoil the others, each error is logged once."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from conftest import NO_BINDING

libvirt = pytest.importorskip("libvirt", reason=NO_BINDING)

from lvtest import FaultyConnection, domain_uuid, lv_error, node_file  # noqa: E402
from mom.hypervisors.base import HypervisorError  # noqa: E402
from mom.hypervisors.libvirt import ConnectionLost  # noqa: E402


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


def test_lost_connection_is_reopened_with_back_off(iface_factory, tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="mom.libvirt")
    opener = Opener()
    h = iface_factory(node_file(tmp_path / "n.xml", 3), opener=opener, retry_min=0.2, retry_max=0.4)
    guests = h.list_guests()
    assert len(guests) == 3
    opener.conn.dead = True
    opener.down = True
    with pytest.raises(ConnectionLost):
        h.collect_all(guests, ["memory"])
    # Down: attempts are spaced by the back-off, not made on every call.
    for _ in range(20):
        with pytest.raises(HypervisorError):
            h.list_guests()
    assert opener.attempts == 2  # the first open and one failed reconnection so far
    time.sleep(0.25)
    with pytest.raises(HypervisorError):
        h.list_guests()
    assert opener.attempts == 3
    opener.down = False
    time.sleep(0.45)
    assert len(h.list_guests()) == 3
    assert h.connections == 2
    data = h.collect_all(guests, ["memory", "balloon"])
    assert len(data) == 3
    lines = [r.getMessage() for r in caplog.records]
    assert sum("connection: lost" in m for m in lines) == 1, lines
    assert sum("connection: cannot connect" in m for m in lines) == 1, lines
    assert any("connected to" in m for m in lines), lines


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
    h = iface_factory(node_file(tmp_path / "n.xml", 1))
    g = h.list_guests()[0]
    real = h._dom(h.conn, g)

    class Dom:
        def __getattr__(self, name):  # type: ignore[no-untyped-def]
            return getattr(real, name)

        def memoryStats(self):  # type: ignore[no-untyped-def]
            return {"actual": 1048576, "rss": 4096}
    h._doms[g.uuid] = Dom()
    data = h.collect_all([g], ["memory", "balloon"])[g.uuid]
    assert data.memory is None and "no balloon statistics" in data.errors["memory"] and data.balloon


def test_unreachable_uri_at_start_does_not_raise(iface_factory) -> None:
    h = iface_factory("qemu+unix:///system?socket=/nonexistent/libvirt-sock", retry_min=5)
    assert h.conn is None
    with pytest.raises(HypervisorError, match="reconnecting"):
        h.list_guests()


def test_engine_keeps_guests_while_disconnected(iface_factory, tmp_path: Path) -> None:
    from mom.daemon.engine import Engine, EngineSettings
    from mom.policy.policy import PolicySet

    opener = Opener()
    h = iface_factory(node_file(tmp_path / "n.xml", 4), opener=opener, retry_min=60)
    engine = Engine(EngineSettings(guest_collectors=("GuestMemory", "GuestBalloon"), host_collectors=(),
                                   call_timeout=5), h, PolicySet())
    try:
        engine.discover()
        engine.collect_guests()
        assert len(engine.guests) == 4 and all(s.ready for s in engine.guests.values())
        opener.conn.dead = True
        opener.down = True
        engine.collect_guests()
        engine.discover()
        engine.discover()
        assert len(engine.guests) == 4
        active = engine.faults.active()
        assert any("libvirt connection lost" in m or "not connected" in m for m in active.values()), active
    finally:
        engine.pool.shutdown()
