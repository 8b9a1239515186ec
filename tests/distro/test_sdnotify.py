"""systemd's notify protocol as momd speaks it to a Type=notify unit: READY=1 once it
serves, WATCHDOG=1 while the engine makes progress, STOPPING=1 on SIGTERM. The
manager's side is a real AF_UNIX datagram socket, as systemd's is."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mom.daemon import sdnotify
from tests.support.momd import POLICIES, Momd, idle_guests, run_momctl, scenario_toml, write_config


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A short directory: AF_UNIX paths are limited to 108 bytes, pytest's tmp_path may be longer."""
    d = Path(tempfile.mkdtemp(prefix="momnt-", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def listen(path: str | bytes) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    return sock


def receive(sock: socket.socket, timeout: float) -> list[str] | None:
    """One notification's lines, or None when none came within timeout."""
    sock.settimeout(timeout)
    try:
        data = sock.recv(4096)
    except TimeoutError:
        return None
    return data.decode().split("\n")


def wait_for(sock: socket.socket, line: str, timeout: float) -> list[list[str]]:
    """The notifications received up to and including the first one holding line."""
    seen: list[list[str]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = receive(sock, deadline - time.monotonic())
        if message is None:
            break
        seen.append(message)
        if line in message:
            return seen
    raise AssertionError(f"no {line} within {timeout} s; got {seen}")


def test_momd_reports_ready_watchdog_and_stopping(short_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manager = listen(str(short_dir / "notify"))
    rpc = short_dir / "mom.sock"
    cfg = write_config(short_dir, scenario=scenario_toml(idle_guests(2)), policy_dir=str(POLICIES))
    cfg.write_text(cfg.read_text().replace("rpc-port: -1", f"rpc-port: {rpc}"))
    monkeypatch.setenv("NOTIFY_SOCKET", str(short_dir / "notify"))
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")  # pings every half second
    momd = Momd(cfg)
    try:
        first = wait_for(manager, "READY=1", timeout=20)
        assert len(first) == 1, f"something came before READY=1: {first}"
        assert any(line.startswith("STATUS=running: interface sim") for line in first[0])
        # Ready means ready: the socket answers at once.
        ping = run_momctl(["--socket", str(rpc), "ping"])
        assert ping.returncode == 0, ping.stderr
        pings = [m for m in (receive(manager, 5) for _ in range(3)) if m is not None]
        assert pings == [["WATCHDOG=1"]] * 3
        momd.send(signal.SIGTERM)
        wait_for(manager, "STOPPING=1", timeout=10)
        assert momd.proc.wait(10) == 0
    finally:
        momd.close()
        manager.close()


def test_momd_without_notify_socket_sends_nothing_and_runs(short_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Started by hand (no NOTIFY_SOCKET), a WATCHDOG_USEC alone changes nothing."""
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    cfg = write_config(short_dir, scenario=scenario_toml(idle_guests(1)), policy_dir=str(POLICIES))
    momd = Momd(cfg)
    try:
        momd.wait_ticks(2)
        assert momd.stop()[0] == 0
        assert "notify" not in momd.log().lower()
    finally:
        momd.close()


def test_momd_with_a_gone_manager_says_so_once_and_runs(short_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(short_dir / "nobody"))
    monkeypatch.setenv("WATCHDOG_USEC", "400000")
    cfg = write_config(short_dir, scenario=scenario_toml(idle_guests(1)), policy_dir=str(POLICIES))
    momd = Momd(cfg)
    try:
        momd.wait_ticks(4)
        assert momd.stop()[0] == 0
        assert momd.log().count("cannot notify systemd") == 1, momd.log()
    finally:
        momd.close()


def test_abstract_socket_address(short_dir: Path) -> None:
    name = f"mom-test-{os.getpid()}-{short_dir.name}"
    manager = listen(b"\0" + name.encode())
    try:
        notifier = sdnotify.Notifier(f"@{name}")
        assert notifier.send("READY=1", "STATUS=x")
        assert receive(manager, 5) == ["READY=1", "STATUS=x"]
        notifier.close()
    finally:
        manager.close()


def test_environment_is_taken_once() -> None:
    """The variables are removed so that nothing momd starts pings for it."""
    env = {"NOTIFY_SOCKET": "/run/systemd/notify", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}
    assert sdnotify.Notifier.from_environment(env).address == "/run/systemd/notify"
    assert sdnotify.watchdog_timeout(env) == 30.0
    assert env == {}
    assert sdnotify.Notifier.from_environment(env).enabled is False
    assert sdnotify.watchdog_timeout(env) is None


@pytest.mark.parametrize("env", [
    {"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"},  # meant for another process
    {"WATCHDOG_USEC": "0"},
    {"WATCHDOG_USEC": "soon"},
])
def test_no_watchdog_for_us(env: dict[str, str]) -> None:
    assert sdnotify.watchdog_timeout(env, pid=4242) is None


def test_watchdog_stops_while_the_engine_is_stuck(short_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    """No finished step for longer than stall_after: no pings (systemd restarts momd),
    logged once; progress again: pings again."""
    manager = listen(str(short_dir / "notify"))
    now, last_step = [100.0], [100.0]
    watchdog = sdnotify.Watchdog(sdnotify.Notifier(str(short_dir / "notify")), timeout=10,
                                 progress=lambda: last_step[0], stall_after=30, clock=lambda: now[0])
    try:
        watchdog.poll()
        assert receive(manager, 2) == ["WATCHDOG=1"]
        now[0] += 3
        watchdog.poll()  # not due: the interval is half the timeout
        assert receive(manager, 0.2) is None
        now[0] += 3
        watchdog.poll()
        assert receive(manager, 2) == ["WATCHDOG=1"]
        with caplog.at_level(logging.INFO, logger="mom.sdnotify"):
            while not watchdog.stalled:  # pings go on up to stall_after, then stop
                now[0] += 6
                watchdog.poll()
            assert now[0] - last_step[0] > 30
            while receive(manager, 0.2) is not None:
                pass
            for _ in range(10):
                now[0] += 6
                watchdog.poll()
            assert receive(manager, 0.2) is None
            assert sum("no longer answering" in r.message for r in caplog.records) == 1
            last_step[0] = now[0]
            watchdog.poll()
            assert receive(manager, 2) == ["WATCHDOG=1"]
            assert any("progress again" in r.message for r in caplog.records)
    finally:
        manager.close()


def test_a_gone_manager_is_logged_once_and_its_return_once(short_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Sending to a socket nobody listens on fails (logged once however many pings),
    never raises; once the manager listens again, one line says so."""
    path = short_dir / "notify"
    notifier = sdnotify.Notifier(str(path))
    caplog.set_level(logging.INFO, logger="mom.sdnotify")
    try:
        assert [notifier.send("WATCHDOG=1") for _ in range(5)] == [False] * 5
        lines = [r.getMessage() for r in caplog.records]
        assert len(lines) == 1 and f"cannot notify systemd at {path}: " in lines[0], lines
        manager = listen(str(path))
        try:
            assert notifier.send("WATCHDOG=1") and notifier.send("WATCHDOG=1")
            assert receive(manager, 2) == ["WATCHDOG=1"]
        finally:
            manager.close()
        lines = [r.getMessage() for r in caplog.records]
        assert len(lines) == 2 and lines[1].endswith("recovered"), lines
    finally:
        notifier.close()
