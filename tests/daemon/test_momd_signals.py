"""momd for real: SIGTERM and SIGINT stop it promptly and cleanly; SIGHUP
reloads the policy, keeping the old one when the new one is bad."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.support.momd import Momd, idle_guests, scenario_toml, write_config
from tests.support.wait import wait_until

GOOD_V1 = '# version 1\n(Host.Control "ksm_pages_to_scan" 111)\n'
BAD = '# version 2, broken\n(defvar x (+ 1 2)\n(Host.Control "ksm_pages_to_scan" 222)\n'  # '(' at 2:1 never closed
GOOD_V3 = '# version 3\n(Host.Control "ksm_pages_to_scan" 333)\n'


@pytest.fixture
def daemon_config(tmp_path: Path) -> tuple[Path, Path]:
    policy = tmp_path / "test.policy"
    policy.write_text(GOOD_V1)
    cfg = write_config(tmp_path, scenario=scenario_toml(idle_guests(2)), policy=str(policy),
                       speed=100, interval=1, policy_interval=2)
    return cfg, policy


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_exits_zero_within_5s(daemon_config: tuple[Path, Path], signum: int) -> None:
    cfg, _ = daemon_config
    m = Momd(cfg)
    try:
        m.wait_ticks(3)
        rc, took = m.stop(signum, timeout=5)
        assert rc == 0, m.log()
        assert took < 5
        log = m.log()
        assert f"{signal.Signals(signum).name} received, stopping" in log
        assert "momd stopped" in log
        assert "Traceback" not in log
        # A clean run and a clean stop: nothing to warn about.
        assert [line for line in log.splitlines() if "WARNING" in line or "ERROR" in line] == []
    finally:
        m.close()


def _ticks_after(m: Momd, marker: str, count: int) -> list[dict]:
    """Ticks recorded after ``marker`` appeared in the log (at least ``count``)."""
    m.wait_log(marker)
    start = len(m.records())  # everything recorded from now on comes after the reload
    return m.wait_ticks(start + count)[start:]


def test_sighup_reload_rejects_bad_policy_and_accepts_good_one(daemon_config: tuple[Path, Path]) -> None:
    cfg, policy = daemon_config
    pages_file = cfg.parent / "tree" / "sys" / "kernel" / "mm" / "ksm" / "pages_to_scan"
    m = Momd(cfg)
    try:
        before = m.wait_ticks(3)
        assert all(r["ok"] and r["host_controls"] == {"ksm_pages_to_scan": 111} for r in before)

        policy.write_text(BAD)
        m.send(signal.SIGHUP)
        after_bad = _ticks_after(m, "policy not reloaded", 4)
        # The old policy stays in force: ticks succeed with its decisions.
        assert all(r["ok"] and r["host_controls"] == {"ksm_pages_to_scan": 111} for r in after_bad), after_bad[0]
        assert pages_file.read_text().strip() == "111"
        assert m.alive()
        log = m.log()
        where = f"{policy}:2:1"
        error_lines = [line for line in log.splitlines() if where in line]
        assert len(error_lines) == 1, log
        # One log record on one line: level, the reason, and where.
        assert "ERROR" in error_lines[0] and "policy not reloaded" in error_lines[0], error_lines
        assert "never closed" in error_lines[0]
        assert "Traceback" not in log

        policy.write_text(GOOD_V3)
        m.send(signal.SIGHUP)
        after_good = _ticks_after(m, "policy reloaded", 3)
        assert all(r["ok"] and r["host_controls"] == {"ksm_pages_to_scan": 333} for r in after_good)
        wait_until(lambda: pages_file.read_text().strip() == "333", 5, what="pages_to_scan 333 in the tree")

        rc, _ = m.stop(signal.SIGTERM)
        assert rc == 0
        # Still exactly one error line for the one bad reload.
        assert len([line for line in m.log().splitlines() if where in line]) == 1
    finally:
        m.close()


def test_daemon_mode_detaches_ticks_and_stops_by_pid_file(daemon_config: tuple[Path, Path]) -> None:
    """-d forks into the background (threads start after the fork), writes the pid file,
    runs ticks, and on SIGTERM stops and removes the pid file."""
    import json
    import os
    import subprocess

    from tests.support.momd import MOMD, REPO

    cfg, _ = daemon_config
    pid_file = cfg.parent / "momd.pid"
    log_file = cfg.parent / "detached.log"
    record = cfg.parent / "record.jsonl"
    proc = subprocess.run([*MOMD, "-c", str(cfg), "-l", str(log_file), "-d", "--pid-file", str(pid_file)],
                          cwd=REPO, capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr  # the foreground process returns at once
    wait_until(lambda: pid_file.exists() and pid_file.read_text().strip(), 15, what="the pid file")
    pid = int(pid_file.read_text())
    try:
        assert running(pid)

        def three_ticks() -> list[str]:
            lines = record.read_text().splitlines() if record.exists() else []
            return lines if len(lines) >= 3 else []
        lines = wait_until(three_ticks, 15, what="3 ticks recorded", detail=log_file.read_text)
        assert all(json.loads(line)["ok"] for line in lines[:3])
    finally:
        os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not running(pid), 5, what="the detached momd's stop")
    assert not pid_file.exists()
    assert "momd stopped" in log_file.read_text()


def running(pid: int) -> bool:
    """Alive and not a zombie (a detached process may wait for a reaper that never comes)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
