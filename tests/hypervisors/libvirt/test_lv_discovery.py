"""Discovery with libvirt's test driver: running domains, names, UUIDs, pids, events."""

from __future__ import annotations

import os
import threading
import uuid as uuidlib
from pathlib import Path

import pytest

from .conftest import NO_BINDING

libvirt = pytest.importorskip("libvirt", reason=NO_BINDING)

from mom.hypervisors import interface_class  # noqa: E402
from mom.hypervisors.libvirt import LibvirtHypervisor, default_pid_dir  # noqa: E402
from mom.hypervisors.libvirt.count import CountingConnection  # noqa: E402

from .lvtest import domain_uuid, new_domain_xml, node_file  # noqa: E402


def test_interface_is_registered() -> None:
    assert interface_class("libvirt") is LibvirtHypervisor
    assert LibvirtHypervisor.bulk


def test_default_driver_guest(iface_factory) -> None:
    h = iface_factory("test:///default")
    guests = h.list_guests()
    assert [(g.name, g.uuid, g.pid) for g in guests] == [("test", "6695eb01-f6a4-8304-79aa-97f2502e193f", None)]


def test_500_domains_in_one_call(iface_factory, tmp_path: Path) -> None:
    """Discovery costs one libvirt call whatever the number of guests (counted, not
    timed: a wall-clock bound says little on a loaded machine)."""
    holder: dict = {}

    def opener(uri):  # type: ignore[no-untyped-def]
        holder["conn"] = CountingConnection(libvirt.open(uri))
        return holder["conn"]
    h = iface_factory(node_file(tmp_path / "node.xml", 500), opener=opener)
    holder["conn"].counter.reset()
    guests = h.list_guests()
    assert len(guests) == 500
    assert {g.name for g in guests} == {f"vm{i}" for i in range(500)}
    assert {g.uuid for g in guests} == {domain_uuid(i) for i in range(500)}
    assert dict(holder["conn"].counter.calls) == {"listAllDomains": 1}


def test_only_running_domains(iface_factory, tmp_path: Path) -> None:
    h = iface_factory(node_file(tmp_path / "node.xml", 3))
    h.conn.lookupByName("vm1").destroy()  # persistent: now defined but shut off
    assert {g.name for g in h.list_guests()} == {"vm0", "vm2"}


def test_pid_from_libvirt_pid_file(iface_factory, tmp_path: Path) -> None:
    """The QEMU pid comes from DIR/NAME.pid when /proc/PID/cmdline holds the domain's UUID."""
    run, proc = tmp_path / "run", tmp_path / "proc"
    run.mkdir()
    (run / "vm0.pid").write_text("4242")
    (run / "vm1.pid").write_text("4343")  # a stale file: that process is another one
    (proc / "4242").mkdir(parents=True)
    (proc / "4242" / "cmdline").write_bytes(b"qemu-system-x86_64\0-uuid\0" + domain_uuid(0).encode() + b"\0")
    (proc / "4343").mkdir()
    (proc / "4343" / "cmdline").write_bytes(b"bash\0")
    h = iface_factory(node_file(tmp_path / "node.xml", 3), pid_dir=str(run), proc_root=str(proc))
    pids = {g.name: g.pid for g in h.list_guests()}
    assert pids == {"vm0": 4242, "vm1": None, "vm2": None}


def test_pid_dir_from_uri() -> None:
    assert default_pid_dir("qemu:///system") == "/run/libvirt/qemu"
    assert default_pid_dir("qemu+unix:///system?socket=/x/run/libvirt-sock") == "/x/run/qemu"
    assert default_pid_dir("qemu+ssh://host/system") is None
    assert default_pid_dir("test:///default") is None


def test_guests_appear_and_disappear(iface_factory, tmp_path: Path) -> None:
    h = iface_factory(node_file(tmp_path / "node.xml", 2))
    assert len(h.list_guests()) == 2
    new_uuid = str(uuidlib.uuid4())
    dom = h.conn.createXML(new_domain_xml("newcomer", new_uuid), 0)
    guests = {g.uuid: g for g in h.list_guests()}
    assert new_uuid in guests and guests[new_uuid].name == "newcomer"
    data = h.collect_all(guests.values(), ["memory", "balloon"])
    assert set(data) == set(guests)
    dom.destroy()
    assert new_uuid not in {g.uuid for g in h.list_guests()}
    # A guest the engine still knows but that is gone is left out quietly.
    data = h.collect_all(guests.values(), ["memory", "balloon"])
    assert new_uuid not in data and len(data) == 2


def test_lifecycle_events_wake_discovery(iface_factory, tmp_path: Path) -> None:
    h = iface_factory(node_file(tmp_path / "node.xml", 1))
    assert h.events_active
    woke = threading.Event()
    h.set_change_listener(woke.set)
    h.conn.createXML(new_domain_xml("evented", str(uuidlib.uuid4())), 0)
    assert woke.wait(5), "no lifecycle event reached the listener"
    woke.clear()
    h.conn.lookupByName("evented").destroy()
    assert woke.wait(5)


def test_events_can_be_turned_off(iface_factory) -> None:
    h = iface_factory("test:///default", events=False)
    assert not h.events_active
    assert len(h.list_guests()) == 1


def event_threads() -> int:
    return sum(t.name == "mom-libvirt-events" and t.is_alive() for t in threading.enumerate())


def test_from_config_connects_lazily(monkeypatch, tmp_path: Path) -> None:
    """momd -d forks after building the interface: building it opens no connection
    and starts no event thread; the first call does, in the process that makes it."""
    from mom.daemon.config import load_config
    from mom.hypervisors.libvirt.events import EventLoop

    uri = node_file(tmp_path / "node.xml", 1)
    cfg = load_config(None, {"main.libvirt-hypervisor-uri": uri})
    opened: list[str] = []
    loops: list[int] = []
    real_open, real_ensure = libvirt.open, EventLoop.ensure
    monkeypatch.setattr(libvirt, "open", lambda u: opened.append(u) or real_open(u))
    monkeypatch.setattr(EventLoop, "ensure", classmethod(lambda cls: loops.append(1) or real_ensure()))
    threads_before = event_threads()
    h = LibvirtHypervisor.from_config(cfg)
    try:
        assert h.conn is None and h.connections == 0
        assert opened == [] and loops == []
        assert event_threads() == threads_before
        assert len(h.list_guests()) == 1
        assert opened == [uri] and loops == [1] and h.events_active
        assert event_threads() >= 1
    finally:
        h.close()


def test_event_loop_is_started_again_in_a_forked_process(monkeypatch) -> None:
    """A loop started by another process (the parent before a fork) does not run here:
    ensure() starts one in this process."""
    from mom.hypervisors.libvirt.events import EventLoop as _EventLoop

    ran, release = threading.Event(), threading.Event()

    def run() -> None:
        ran.set()
        release.wait(30)
    monkeypatch.setattr(_EventLoop, "_pid", os.getpid() + 1)  # as if started by another process
    monkeypatch.setattr(_EventLoop, "_run", staticmethod(run))
    try:
        assert _EventLoop.ensure()
        assert ran.wait(10), "no event loop thread started in this process"
        assert _EventLoop._pid == os.getpid()
        ran.clear()
        assert _EventLoop.ensure()
        assert not ran.wait(0.2)  # started once per process
    finally:
        release.set()


def test_engine_registers_for_events(iface_factory, tmp_path: Path) -> None:
    from mom.daemon.config import load_config
    from mom.engine.engine import Engine, EngineSettings
    from mom.policy.policy import PolicySet

    h = iface_factory(node_file(tmp_path / "node.xml", 1))
    engine = Engine(EngineSettings.from_config(
        load_config(None),
        guest_collectors=("GuestMemory",), host_collectors=()), h, PolicySet())
    try:
        assert h._listener == engine.discover_soon
    finally:
        engine.close()
