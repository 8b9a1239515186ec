"""Helpers for the momd integration tests: run the real daemon as a subprocess
on a simulated host with an accelerated clock, read its flight recorder, stop it
by PID.

Every daemon started through :class:`Momd` is stopped (SIGTERM, then SIGKILL)
by its PID in :meth:`Momd.close`; the ``momd`` fixture in the tests calls it in
its teardown.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import xmlrpc.client
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from tests.support.wait import wait_until

T = TypeVar("T")
V = TypeVar("V")

REPO = Path(__file__).resolve().parents[2]
POLICIES = REPO / "doc" / "policies"
MOMD = [sys.executable, "-m", "mom.cli.momd"]
MOMCTL = [sys.executable, "-m", "mom.cli.momctl"]


def scenario_toml(guests: Iterable[dict[str, Any]], *, memory: int = 4096, swap: int = 1024, cpus: int = 4,
                  base_used: int = 256, cache: int = 64, ksm_run: int = 0, step: float = 1.0,
                  name: str = "test") -> str:
    """A scenario file's text (see doc/sim-scenarios.md)."""
    lines = [f'name = "{name}"', "seed = 3", f"step = {step}", "",
             "[host]", f"memory = {memory}", f"swap = {swap}", f"cpus = {cpus}",
             f"base_used = {base_used}", f"cache = {cache}", "",
             "[ksm]", f"run = {ksm_run}", "pages_to_scan = 100", "sleep_millisecs = 20", "merge_across_nodes = 1", ""]
    for g in guests:
        lines.append("[[guest]]")
        for key, value in g.items():
            if isinstance(value, str):
                lines.append(f'{key} = "{value}"')
            elif isinstance(value, dict):
                inner = ", ".join(f'{k} = "{v}"' if isinstance(v, str) else f"{k} = {v}" for k, v in value.items())
                lines.append(f"{key} = {{ {inner} }}")
            else:
                lines.append(f"{key} = {value}")
        lines.append("")
    return "\n".join(lines)


def idle_guests(n: int, max_mib: int = 1024, min_mib: int = 256) -> list[dict[str, Any]]:
    return [{"name": f"vm{i + 1}", "max": max_mib, "min": min_mib,
             "workload": {"type": "steady", "level": max_mib // 4}} for i in range(n)]


def write_config(tmp_path: Path, *, scenario: str, policy: str | None = None, policy_dir: str | None = None,
                 speed: float = 100, interval: float = 1, policy_interval: float = 2,
                 controllers: str = "Balloon, KSM", host_collectors: str = "HostMemory, HostKSM",
                 guest_collectors: str = "GuestMemory, GuestBalloon", tree_dir: str | None = None,
                 record: bool = True, extra_main: str = "", extra: str = "", name: str = "mom.conf",
                 verbosity: str = "info") -> Path:
    """Write a momd configuration for the simulated host into tmp_path and return its path.

    The scenario text goes to tmp_path/scenario.toml, the flight recorder to
    tmp_path/record.jsonl, the simulator's tree to tmp_path/tree (or tree_dir)."""
    scen = tmp_path / "scenario.toml"
    scen.write_text(scenario)
    tree = tree_dir or str(tmp_path / "tree")
    lines = ["[main]", "hypervisor-interface: sim"]
    for key in ("main-loop-interval", "host-monitor-interval", "guest-monitor-interval", "guest-manager-interval"):
        lines.append(f"{key}: {interval}")
    lines += [f"policy-engine-interval: {policy_interval}", "sample-history-length: 3",
              f"controllers: {controllers}", "rpc-port: -1", "hypervisor-call-timeout: 5"]
    if policy:
        lines.append(f"policy: {policy}")
    if policy_dir:
        lines.append(f"policy-dir: {policy_dir}")
    if record:
        lines.append(f"record-file: {tmp_path / 'record.jsonl'}")
    if extra_main:
        lines.append(extra_main)
    lines += ["", "[sim]", f"scenario: {scen}", "seed: 3", f"speed: {speed}", f"tree-dir: {tree}", "",
              "[logging]", "log: stdio", f"verbosity: {verbosity}", "",
              "[host]", f"collectors: {host_collectors}", "",
              "[guest]", f"collectors: {guest_collectors}", "", extra]
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def read_records(path: Path) -> list[dict[str, Any]]:
    """The complete JSON lines of a flight recorder file (a half-written last line is skipped)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines(keepends=True):
        if not line.endswith("\n"):
            break
        out.append(json.loads(line))
    return out


def thread_count(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    raise AssertionError(f"no Threads: line for pid {pid}")


class Momd:
    """One momd subprocess; its stdout and stderr go to log_name beside the configuration.

    mom_log is the log file the configuration names, if any (vdsm's mom.conf
    does): log() is then that file's text followed by stdout's. Every test's
    daemon is stopped through close() (by PID: SIGTERM, then SIGKILL)."""

    def __init__(self, config: Path, args: Iterable[str] = (), *, command: list[str] | None = None,
                 log_name: str = "momd.log", mom_log: Path | None = None) -> None:
        self.config = config
        self.dir = config.parent
        self.record = self.dir / "record.jsonl"
        self.log_path = self.dir / log_name
        self.mom_log = mom_log
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([*(command or MOMD), "-c", str(config), *args], cwd=REPO,
                                     stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid

    # -- observation ---------------------------------------------------------------
    def log(self) -> str:
        text = ""
        if self.mom_log is not None:
            try:
                text = self.mom_log.read_text(errors="replace")
            except FileNotFoundError:
                pass
        return text + self.log_path.read_text(errors="replace")

    def count(self, text: str) -> int:
        """How many lines of the log contain text."""
        return sum(1 for line in self.log().splitlines() if text in line)

    def records(self) -> list[dict[str, Any]]:
        return read_records(self.record)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_for(self, what: str, ready: Callable[[], T], timeout: float = 15.0) -> T:
        """wait_until ready() is true while the daemon runs; fails at once if it exits."""
        def ready_while_alive() -> T:
            value = ready()
            if not value and not self.alive():
                raise AssertionError(f"momd exited with {self.proc.returncode} before {what}:\n"
                                     f"{self.log()[-3000:]}")
            return value
        return wait_until(ready_while_alive, timeout, what=what, detail=lambda: self.log()[-3000:])

    def wait_records(self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 15.0,
                     what: str = "records") -> list[dict[str, Any]]:
        """The recorder's ticks once predicate holds for them."""
        return self._wait_seen(what, self.records, predicate, timeout)

    def wait_ticks(self, n: int, timeout: float = 15.0) -> list[dict[str, Any]]:
        """The recorder's ticks once there are at least n."""
        return self.wait_records(lambda records: len(records) >= n, timeout, f"{n} ticks")

    def wait_log(self, text: str, timeout: float = 10.0) -> str:
        """The log once it contains text."""
        return self._wait_seen(f"{text!r} in the log", self.log, lambda log: text in log, timeout)

    def wait_listening(self, client: xmlrpc.client.ServerProxy, timeout: float = 15.0) -> None:
        """Until the RPC server answers client's ping."""
        def answers() -> bool:
            try:
                return client.ping() is True
            except OSError:
                return False
        self.wait_for("RPC server", answers, timeout)

    def _wait_seen(self, what: str, look: Callable[[], V], good: Callable[[V], bool], timeout: float) -> V:
        """What look() returned when good() first held for it."""
        seen: list[V] = []

        def check() -> bool:
            seen[:] = [look()]
            return good(seen[0])
        self.wait_for(what, check, timeout)
        return seen[0]

    # -- control -------------------------------------------------------------------
    def send(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 5.0) -> tuple[int, float]:
        """Send signum by PID and wait; (exit status, seconds it took). Kills it if it overstays."""
        t0 = time.monotonic()
        if self.alive():
            os.kill(self.pid, signum)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.pid, signal.SIGKILL)
            self.proc.wait(5)
            raise AssertionError(f"momd did not stop within {timeout} s of {signal.Signals(signum).name}") from None
        return rc, time.monotonic() - t0

    def close(self) -> None:
        """Stop the daemon by PID if it still runs (teardown)."""
        try:
            if self.proc.poll() is None:
                os.kill(self.pid, signal.SIGTERM)
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    os.kill(self.pid, signal.SIGKILL)
                    self.proc.wait(5)
        finally:
            self._log.close()


def run_momd(args: list[str], timeout: float = 20.0) -> subprocess.CompletedProcess:
    """Run momd to completion (e.g. --check or a bad configuration)."""
    return subprocess.run([*MOMD, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def run_momctl(args: list[str], input: str | None = None, timeout: float = 60.0) -> subprocess.CompletedProcess:
    """Run momctl to completion; input, if given, is its stdin."""
    return subprocess.run([*MOMCTL, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          input=input, stdin=None if input is not None else subprocess.DEVNULL)
