"""Discovery with libvirt's test driver: running domains, names, UUIDs, pids, events."""

from __future__ import annotations

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


FORKED_CHILD_STARTS_A_LOOP = """
import os, sys, threading
from mom.hypervisors.libvirt import LibvirtHypervisor

def event_threads():
    return sum(t.name == "mom-libvirt-events" and t.is_alive() for t in threading.enumerate())

parent = LibvirtHypervisor(sys.argv[1])  # starts libvirt's event loop in this process
assert parent.events_active and event_threads() == 1
pid = os.fork()
if pid == 0:  # threads do not survive a fork: the parent's loop thread is not here
    before = event_threads()
    h = LibvirtHypervisor(sys.argv[1])
    h2 = LibvirtHypervisor(sys.argv[1])
    os._exit(0 if (before, event_threads(), h.events_active and h2.events_active) == (0, 1, True) else 3)
_, status = os.waitpid(pid, 0)
print("child exit", os.waitstatus_to_exitcode(status))
"""


def test_a_forked_process_starts_its_own_event_loop_thread(tmp_path: Path) -> None:
    """A process forked after its parent started libvirt's event loop has no loop thread
    (threads do not survive a fork): its first connection starts one, and only one.

    Whether that thread then delivers events is up to libvirt: its GLib main context
    may still be owned by the parent's thread, which the child does not have. momd
    never gets there (it connects after ``momd -d`` forked); hence no event here."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[3]
    proc = subprocess.run([sys.executable, "-c", FORKED_CHILD_STARTS_A_LOOP, node_file(tmp_path / "node.xml", 1)],
                          cwd=root, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "child exit 0", proc.stdout + proc.stderr[-2000:]


def test_one_event_thread_for_many_interfaces(iface_factory, tmp_path: Path) -> None:
    """However many interfaces (connections) a process has, one loop thread delivers
    every connection's events."""
    made = [iface_factory(node_file(tmp_path / f"node{i}.xml", 1)) for i in range(3)]
    assert event_threads() == 1
    woken = [threading.Event() for _ in made]
    for h, woke in zip(made, woken, strict=True):
        h.set_change_listener(woke.set)
        h.conn.createXML(new_domain_xml("evented", str(uuidlib.uuid4())), 0)
    assert all(woke.wait(5) for woke in woken), "a connection's lifecycle event did not arrive"


def test_the_engine_discovers_a_started_domain_through_events(iface_factory, tmp_path: Path) -> None:
    """The engine registers for events: with discovery due only once an hour, a domain
    started after the first discovery is found at once."""
    from mom.daemon.config import load_config
    from mom.engine.engine import Engine, EngineSettings
    from mom.policy.policy import PolicySet
    from tests.support.wait import wait_until

    h = iface_factory(node_file(tmp_path / "node.xml", 1))
    engine = Engine(EngineSettings.from_config(
        load_config(None), discovery_interval=3600.0,
        guest_collectors=("GuestMemory",), host_collectors=()), h, PolicySet())
    runner = threading.Thread(target=engine.run, name="engine", daemon=True)
    runner.start()
    try:
        wait_until(lambda: engine.status().guest_names() == ["vm0"], 10, what="the first discovery")
        h.conn.createXML(new_domain_xml("evented", str(uuidlib.uuid4())), 0)
        wait_until(lambda: engine.status().guest_names() == ["evented", "vm0"], 10,
                   what="the started domain discovered through its lifecycle event",
                   detail=lambda: str(engine.status().guest_names()))
    finally:
        engine.stop()
        runner.join(10)
    assert not runner.is_alive()
