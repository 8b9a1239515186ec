"""Every RPC method against a running momd, over the unix socket (as vdsm) and
over TCP (as the original's client); the socket's mode and life cycle; TCP on
127.0.0.1 only."""

from __future__ import annotations

import os
import re
import socket
import stat
import xmlrpc.client
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.momd import REPO, Momd
from tests.support.net import free_port
from tests.support.rpc import post, raw_request, scenario, tcp_client, unix_client, write_config

BIG_HOST_MIB = 3 * 1024 * 1024  # 3 TiB: mem_available in KiB is beyond 32 bits


@pytest.fixture(scope="module")
def unix_momd(tmp_path_factory: pytest.TempPathFactory, sockdir: Path) -> Iterator[tuple[Momd, Path]]:
    tmp = tmp_path_factory.mktemp("unix")
    sock = sockdir / "mom.sock"
    cfg = write_config(tmp, rpc=str(sock), scenario_text=scenario(memory=BIG_HOST_MIB))
    m = Momd(cfg)
    try:
        m.wait_listening(unix_client(sock))
        m.wait_ticks(2)
        yield m, sock
    finally:
        m.close()


@pytest.fixture(scope="module")
def tcp_momd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Momd, int]]:
    tmp = tmp_path_factory.mktemp("tcp")
    port = free_port()
    m = Momd(write_config(tmp, rpc=str(port)))
    try:
        m.wait_listening(tcp_client(port))
        m.wait_ticks(2)  # guests discovered and collected before the tests look at them
        yield m, port
    finally:
        m.close()


def test_socket_is_0600_and_system_list_methods(unix_momd: tuple[Momd, Path]) -> None:
    _, sock = unix_momd
    st = os.lstat(sock)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600
    mom = unix_client(sock)
    assert mom.ping() is True
    methods = set(mom.system.listMethods())
    assert {"ping", "getStatistics", "getActiveGuests", "getPolicy", "setPolicy", "setNamedPolicy",
            "getNamedPolicies", "resetPolicies", "setVerbosity", "getRecentActions", "getHealth",
            "system.listMethods"} <= methods
    with pytest.raises(xmlrpc.client.Fault, match="not supported"):
        mom.noSuchMethod()
    with pytest.raises(xmlrpc.client.Fault):
        mom.ping(1, 2, 3)  # wrong arity is a fault, not a dead connection
    assert mom.ping() is True


def test_statistics_and_guests_with_i8(unix_momd: tuple[Momd, Path]) -> None:
    m, sock = unix_momd
    mom = unix_client(sock)
    stats = mom.getStatistics()
    assert set(stats) == {"host", "guests"}
    host = stats["host"]
    assert host["mem_available"] == BIG_HOST_MIB * 1024 > 2**31  # travelled as i8
    for key in ("ksm_run", "ksm_pages_to_scan", "ksm_merge_across_nodes", "ksm_pages_sharing", "ksmd_cpu_usage"):
        assert key in host
    assert sorted(stats["guests"]) == ["vm1", "vm2", "vm3"] == mom.getActiveGuests()
    assert stats["guests"]["vm1"]["balloon_max"] == 2048 * 1024
    # The wire format itself: <i8> for the big value.
    raw = raw_request(str(sock), post(xmlrpc.client.dumps((), "getStatistics").encode()))
    assert raw.startswith(b"HTTP/1.0 200")
    assert re.search(rb"<name>mem_available</name>\s*<value><i8>%d</i8>" % (BIG_HOST_MIB * 1024), raw)
    # It is the newest row: it matches what the recorder wrote around now, not a stale copy.
    last = m.records()[-1]["host"]["statistics"][-1]
    assert last["mem_available"] == host["mem_available"]


def test_policy_methods(unix_momd: tuple[Momd, Path]) -> None:
    m, sock = unix_momd
    mom = unix_client(sock)
    shipped = {p.stem: p.read_text() for p in (REPO / "doc" / "policies").glob("*.policy")}
    assert mom.getNamedPolicies() == shipped
    assert mom.getPolicy() == "\n".join(shipped[n] for n in sorted(shipped))

    assert mom.setNamedPolicy("zz-extra", "(defvar extra 42)") is True
    assert mom.getNamedPolicies()["zz-extra"] == "(defvar extra 42)"
    assert mom.getPolicy().endswith("(defvar extra 42)")
    # A parse error: False, and what was in force stays in force.
    assert mom.setNamedPolicy("zz-extra", "(defvar extra (+ 1") is False
    assert mom.getNamedPolicies()["zz-extra"] == "(defvar extra 42)"
    assert mom.setNamedPolicy("zz-bad", "(((") is False
    assert "zz-bad" not in mom.getNamedPolicies()
    # nil deletes.
    assert mom.setNamedPolicy("zz-extra", None) is True
    assert "zz-extra" not in mom.getNamedPolicies()

    # setPolicy replaces every named policy by one.
    assert mom.setPolicy('(Host.Control "ksm_pages_to_scan" 77)') is True
    assert mom.getNamedPolicies() == {"50_main_": '(Host.Control "ksm_pages_to_scan" 77)'}
    assert mom.setPolicy("(Host.Control") is False
    assert mom.getNamedPolicies() == {"50_main_": '(Host.Control "ksm_pages_to_scan" 77)'}
    # ... and it is what runs: the next ticks apply it.
    n = len(m.records())
    recs = m.wait_ticks(n + 2)
    assert recs[-1]["host_controls"] == {"ksm_pages_to_scan": 77}
    # nil clears: '0' as the original.
    assert mom.setPolicy(None) is True
    assert mom.getNamedPolicies() == {}
    assert mom.getPolicy() == "0"
    # resetPolicies reloads the configured directory.
    assert mom.resetPolicies() is True
    assert mom.getNamedPolicies() == shipped


def test_set_verbosity(unix_momd: tuple[Momd, Path]) -> None:
    m, sock = unix_momd
    mom = unix_client(sock)
    mom.getActiveGuests()
    assert "DEBUG" not in m.log()
    assert mom.setVerbosity("debug") is True
    mom.getActiveGuests()  # the RPC server logs each call at debug level
    m.wait_for("debug lines", lambda: "DEBUG   mom.rpc: RPC getActiveGuests()" in m.log(), timeout=5)
    assert mom.setVerbosity(4) is True  # numbers as the configuration: 4 = info
    size = len(m.log())
    mom.getActiveGuests()
    with pytest.raises(xmlrpc.client.Fault, match="verbosity"):
        mom.setVerbosity("loud")
    m.wait_ticks(len(m.records()) + 2)
    assert "DEBUG" not in m.log()[size:]


def test_recent_actions_and_health(unix_momd: tuple[Momd, Path]) -> None:
    m, sock = unix_momd
    mom = unix_client(sock)
    records = m.records()
    applied = [a for r in records for a in r["actions"] if a["applied"]]
    assert applied, "the sample KSM policy starts KSM on the first ticks"
    actions = mom.getRecentActions(3)
    assert 1 <= len(actions) <= 3
    for a in actions:
        assert set(a) == {"time", "guest", "controller", "control", "old", "new"}
    everything = mom.getRecentActions(1000)
    assert everything[-len(actions):] == actions
    first = everything[0]
    assert (first["guest"], first["controller"], first["control"], first["new"]) == \
        (applied[0]["target"], applied[0]["controller"], applied[0]["control"], applied[0]["new"])
    assert mom.getRecentActions(0) == []
    with pytest.raises(xmlrpc.client.Fault):
        mom.getRecentActions(-1)

    health = mom.getHealth()
    assert health["ok"] is True and health["ticks"] >= 2
    comps = health["components"]
    assert {"engine", "hypervisor", "collector", "policy", "controller"} <= set(comps)
    policy = comps["policy"]
    assert policy["ok"] is True and policy["last_error"] is None
    assert policy["last_run"] == pytest.approx(health["last_tick"])


def test_tcp_on_loopback_only(tcp_momd: tuple[Momd, int]) -> None:
    _m, port = tcp_momd
    mom = tcp_client(port)
    assert mom.ping() is True
    assert sorted(mom.getStatistics()["guests"]) == mom.getActiveGuests() == ["vm1", "vm2", "vm3"]
    assert mom.getPolicy() != "0"
    # The listening socket is bound to 127.0.0.1, nothing else.
    listening = []
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            local, _, state = line.split()[1:4]
            addr, p = local.split(":")
            if int(p, 16) == port and state == "0A":
                listening.append(addr)
    assert listening == ["0100007F"]
    with open("/proc/net/tcp6") as f:
        assert not [ln for ln in f.readlines()[1:] if int(ln.split()[1].split(":")[1], 16) == port
                    and ln.split()[3] == "0A"]
    # Only /RPC2 is served.
    answer = raw_request(("127.0.0.1", port), post(xmlrpc.client.dumps((), "ping").encode(), path="/other"))
    assert answer.startswith(b"HTTP/1.0 404")
    answer = raw_request(("127.0.0.1", port), b"GET /RPC2 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.0 405")


def test_stale_socket_replaced_and_removed_on_exit(tmp_path: Path, sockdir: Path) -> None:
    sock = sockdir / "stale.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(sock))
    stale.close()  # a socket file nobody listens on, as a crashed daemon leaves
    old_ino = os.lstat(sock).st_ino
    m = Momd(write_config(tmp_path, rpc=str(sock)))
    try:
        m.wait_listening(unix_client(sock))
        st = os.lstat(sock)
        assert st.st_ino != old_ino and stat.S_IMODE(st.st_mode) == 0o600
        # A second daemon on the same, live, socket refuses to start (exit 2, one line).
        other = tmp_path / "other"
        other.mkdir()
        m2 = Momd(write_config(other, rpc=str(sock)))
        try:
            assert m2.proc.wait(15) == 2
            assert "another process is listening" in m2.log()
        finally:
            m2.close()
        assert unix_client(sock).ping() is True
        assert m.stop()[0] == 0
        assert not sock.exists()
    finally:
        m.close()
