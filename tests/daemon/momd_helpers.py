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
from pathlib import Path
from typing import Any, Iterable

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
    """One momd subprocess; its stdout and stderr (the log) go to files in tmp_path."""

    def __init__(self, config: Path, args: Iterable[str] = (), *, command: list[str] | None = None,
                 log_name: str = "momd.log") -> None:
        self.config = config
        self.dir = config.parent
        self.record = self.dir / "record.jsonl"
        self.log_path = self.dir / log_name
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([*(command or MOMD), "-c", str(config), *args], cwd=REPO,
                                     stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid

    # -- observation ---------------------------------------------------------------
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def records(self) -> list[dict[str, Any]]:
        return read_records(self.record)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_ticks(self, n: int, timeout: float = 15.0) -> list[dict[str, Any]]:
        """Wait until the recorder holds at least n ticks; fails if the daemon dies or time runs out."""
        deadline = time.monotonic() + timeout
        while True:
            records = self.records()
            if len(records) >= n:
                return records
            if not self.alive():
                raise AssertionError(f"momd exited with {self.proc.returncode} after {len(records)} ticks:\n"
                                     f"{self.log()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"only {len(records)} of {n} ticks within {timeout} s:\n{self.log()[-3000:]}")
            time.sleep(0.05)

    def wait_log(self, text: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            log = self.log()
            if text in log:
                return log
            if not self.alive():
                raise AssertionError(f"momd exited with {self.proc.returncode} before logging {text!r}:\n{log[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not logged within {timeout} s:\n{log[-3000:]}")
            time.sleep(0.05)

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


def run_momctl(args: list[str], timeout: float = 30.0) -> subprocess.CompletedProcess:
    return subprocess.run([*MOMCTL, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
