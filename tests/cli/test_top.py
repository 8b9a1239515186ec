"""momctl top through a pseudo-terminal, over the unix socket and over TCP: every
guest and the host numbers that `momctl stats` returns; plain text when not on a
terminal; keys sort and quit."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.momd import REPO, Momd, idle_guests, run_momctl, scenario_toml, write_config
from tests.support.net import free_port

from .conftest import GUESTS, Daemon

ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\x1b[=>]")


class Terminal:
    """momctl ARGS on a pseudo-terminal of 40 rows and 150 columns."""

    def __init__(self, args: list[str]) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: momctl, as from a shell, on a terminal of its size from the start
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 150, 0, 0))
            os.chdir(REPO)
            # The terminal's own size, not the test runner's COLUMNS and LINES.
            env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
            env["TERM"] = "xterm-256color"
            os.execve(sys.executable, [sys.executable, "-m", "mom.cli.momctl", *args], env)
        self.output = b""

    def read_until(self, check, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.fd], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(self.fd, 65536)
                except OSError:  # the child has gone
                    break
                if not chunk:
                    break
                self.output += chunk
                if check(self.text()):
                    return self.text()
        raise AssertionError(f"not seen within {timeout} s:\n{self.text()[-3000:]}")

    def text(self) -> str:
        return ANSI.sub(b"", self.output).decode(errors="replace")

    def key(self, k: str) -> None:
        os.write(self.fd, k.encode())

    def wait(self, timeout: float = 10.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.output += os.read(self.fd, 65536) if select.select([self.fd], [], [], 0.1)[0] else b""
            except OSError:
                pass
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                os.close(self.fd)
                return os.waitstatus_to_exitcode(status)
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        raise AssertionError("momctl top did not quit")


@pytest.fixture(scope="module")
def steady(tmp_path_factory) -> Iterator[tuple[Momd, int]]:
    """A momd with steady guests and no policy (numbers that hold still), on a TCP port."""
    d = tmp_path_factory.mktemp("steady")
    port = free_port()
    cfg = write_config(d, scenario=scenario_toml(idle_guests(4)), speed=5, interval=1, policy_interval=2)
    cfg.write_text(cfg.read_text().replace("rpc-port: -1", f"rpc-port: {port}"))
    m = Momd(cfg)
    try:
        m.wait_ticks(2, timeout=30)
        yield m, port
    finally:
        m.close()


def host_numbers(text: str) -> dict[str, int]:
    """The newest frame's host line: total, used, cache, free in MiB."""
    line = [ln for ln in text.splitlines() if "host memory:" in ln][-1]
    return {k: int(v) for k, v in re.findall(r"(total|used|cache|free) (\d+) MiB", line)}


def stats_numbers(address: list[str]) -> dict[str, int]:
    host = json.loads(run_momctl([*address, "stats", "--json"]).stdout)["host"]
    return {"total": round(host["mem_available"] / 1024),
            "used": round((host["mem_available"] - host["mem_free"]) / 1024),
            "cache": round((host["mem_free"] - host["mem_unused"]) / 1024), "free": round(host["mem_unused"] / 1024)}


def test_top_over_tcp_shows_every_guest_and_the_hosts_numbers(steady: tuple[Momd, int]) -> None:
    momd, port = steady
    address = ["--port", str(port)]
    before = stats_numbers(address)
    term = Terminal([*address, "top", "--interval", "0.3"])
    text = term.read_until(lambda t: "q quit" in t and all(f"vm{i}" in t for i in range(1, 5)))
    shown = host_numbers(text)  # the first frame: read between the two `stats`
    after = stats_numbers(address)
    assert shown.keys() == before.keys() == {"total", "used", "cache", "free"}
    for k in shown:  # what stats said just before or just after, to a few MiB
        low, high = min(before[k], after[k]), max(before[k], after[k])
        assert low - 4 <= shown[k] <= high + 4, (k, shown, before, after)
    assert "policy none" in text  # the active fault: no policy in force
    term.key("q")
    assert term.wait() == 0
    assert momd.alive()


def test_top_over_the_socket_sorts_on_keys_and_shows_actions(shrinking: Daemon) -> None:
    term = Terminal(["--socket", str(shrinking.socket), "top", "--interval", "0.3", "--sort", "balloon"])
    text = term.read_until(lambda t: "q quit" in t and all(g in t for g in GUESTS))  # a whole frame
    assert "sorted by balloon" in text and "balloon ▼" in text
    assert re.search(r"vm\d  balloon \d+->\d+", text), text[-2000:]  # recent actions: "TIME  vmN  balloon A->B"
    term.key("s")  # the next column: max
    term.read_until(lambda t: "sorted by max" in t)
    term.key("r")
    term.read_until(lambda t: "sorted by max (reversed)" in t)
    term.key("q")
    assert term.wait() == 0


def test_top_not_on_a_terminal_is_plain_text(shrinking: Daemon) -> None:
    proc = run_momctl(["--socket", str(shrinking.socket), "top", "--count", "2", "--interval", "0.2",
                       "--sort", "name"])
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stdout and proc.stdout.count("host memory:") == 2
    _head, bar, host = proc.stdout.splitlines()[:3]
    numbers = host_numbers(host)
    for char, part in (("█", "used"), ("▒", "cache"), ("░", "free")):  # the bar's parts in proportion
        assert abs(bar.count(char) - 80 * numbers[part] / numbers["total"]) <= 1, (bar, numbers)
    table = proc.stdout.split("\n\n")[1].splitlines()
    assert table[0].split()[:3] == ["guest", "balloon", "max"]
    assert [row.split()[0] for row in table[1:]] == list(GUESTS)
    # The second frame has rates: the counters' change since the first.
    second = proc.stdout.split("momd healthy")[2]
    assert re.search(r"vm1 +\d+ +2048 +256 +\d+ +\d+ +\d+\.\d +\d+\.\d", second), second
    frame = json.loads(run_momctl(["--socket", str(shrinking.socket), "top", "--json"]).stdout)
    assert sorted(g["name"] for g in frame["guests"]) == list(GUESTS) and frame["host_memory"]["total"] > 0


def test_top_bad_options_and_no_daemon_are_one_line(tmp_path: Path) -> None:
    for args, rc, words in [(["--socket", str(tmp_path / "none"), "top"], 3, "cannot connect"),
                            (["--socket", str(tmp_path / "none"), "top", "--interval", "0"], 2, "--interval")]:
        proc = run_momctl(args)
        assert proc.returncode == rc and words in proc.stderr and len(proc.stderr.splitlines()) == 1, proc.stderr
