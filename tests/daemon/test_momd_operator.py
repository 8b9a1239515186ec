"""momd as an operator meets it: a SIGHUP storm, --check on broken setups,
typos, -d with stdio logging, --pid-file, log targets."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.momd import MOMCTL, REPO, Momd, idle_guests, run_momctl, run_momd, scenario_toml, write_config
from tests.support.wait import wait_until

POLICY = '(Host.Control "ksm_pages_to_scan" 111)\n'


def sim_config(tmp_path: Path, **kw) -> Path:
    policy = tmp_path / "p.policy"
    policy.write_text(POLICY)
    kw.setdefault("speed", 10)
    return write_config(tmp_path, scenario=scenario_toml(idle_guests(2)), policy=str(policy),
                        interval=1, policy_interval=2, **kw)


def test_sighup_storm_does_not_wedge_momd(tmp_path: Path) -> None:
    # speed 10, policy every 2 clock seconds: a tick every 0.2 s of real time.
    m = Momd(sim_config(tmp_path))
    try:
        m.wait_ticks(3)
        start = len(m.records())
        sent = 0
        t0 = time.monotonic()
        while time.monotonic() - t0 < 10:
            os.kill(m.pid, signal.SIGHUP)
            sent += 1
        during = len(m.records()) - start
        assert sent > 10_000, sent  # a real storm, not a drizzle
        assert during >= 20, f"{during} ticks in 10 s of SIGHUPs (nominal 50)"
        after = len(m.records())
        m.wait_ticks(after + 5, timeout=5)  # and it keeps ticking afterwards
        rc, _ = m.stop(signal.SIGTERM, timeout=5)
        assert rc == 0
        log = m.log()
        assert "Traceback" not in log and "Logging error" not in log
        # Reloads coalesce: at most about one per second, not one per signal.
        reloads = log.count("policy reloaded")
        assert 1 <= reloads <= 15, reloads
        assert len(log.splitlines()) < 200, len(log.splitlines())
    finally:
        m.close()


def _broken(tmp_path: Path, case: str) -> tuple[Path, str]:
    """A configuration broken in one way, and the text its --check line must hold."""
    extra_main, extra, needle = "", "", ""
    if case == "unknown policy function":
        (tmp_path / "bad.policy").write_text("(frobnicate 1 2)\n")
        cfg = write_config(tmp_path, scenario=scenario_toml(idle_guests(1)), policy=str(tmp_path / "bad.policy"))
        return cfg, "frobnicate"
    if case == "rpc socket directory missing":
        needle = "no/such/dir: directory does not exist"
    elif case == "log not writable":
        extra, needle = "", "[logging] log: cannot write"
    elif case == "plot-dir missing":
        extra_main, needle = f"plot-dir: {tmp_path}/plots", f"[main] plot-dir: cannot write {tmp_path}/plots"
    elif case == "record-file directory missing":
        needle = "[main] record-file: cannot write"
    elif case == "vdsm certificates missing":
        extra_main, needle = "", "[vdsm] ca-cert-file"
    elif case == "broken scenario":
        needle = "scenario"
    cfg = sim_config(tmp_path, extra_main=extra_main, extra=extra)
    text = cfg.read_text()
    if case == "log not writable":
        text = text.replace("log: stdio", f"log: {tmp_path}/nodir/mom.log")
    elif case == "rpc socket directory missing":
        text = text.replace("rpc-port: -1", f"rpc-port: {tmp_path}/no/such/dir/mom.sock")
    elif case == "record-file directory missing":
        text = text.replace(f"record-file: {tmp_path / 'record.jsonl'}", f"record-file: {tmp_path}/gone/r.jsonl")
    elif case == "vdsm certificates missing":
        text = text.replace("hypervisor-interface: sim", "hypervisor-interface: vdsm")
        text += f"[vdsm]\npki-dir: {tmp_path}/pki\n"
    elif case == "broken scenario":
        (tmp_path / "scenario.toml").write_text("[host]\nmemory = 'lots'\n")
    cfg.write_text(text)
    return cfg, needle


BROKEN = ["unknown policy function", "rpc socket directory missing", "log not writable", "plot-dir missing",
          "record-file directory missing", "vdsm certificates missing", "broken scenario"]


@pytest.mark.parametrize("case", BROKEN)
def test_check_rejects_broken_setups_with_one_line(tmp_path: Path, case: str) -> None:
    cfg, needle = _broken(tmp_path, case)
    proc = run_momd(["--check", "-c", str(cfg)])
    errors = [line for line in proc.stderr.splitlines() if not line.startswith("momd: warning: ")]
    assert proc.returncode == 2, proc.stderr
    assert len(errors) == 1 and needle in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
    # A real start trips on the same thing, with the same line, and leaves nothing running.
    start = run_momd(["-c", str(cfg)])
    assert start.returncode == 2, start.stderr
    assert needle in start.stderr


@pytest.mark.parametrize("typo, suggestion", [
    ("polcy-dir: /etc/mom/policies", "did you mean policy-dir?"),
    ("hypervisor-interfce: sim", "did you mean hypervisor-interface?"),
])
def test_typo_stops_momd_with_a_suggestion(tmp_path: Path, typo: str, suggestion: str) -> None:
    cfg = sim_config(tmp_path, extra_main=typo)
    proc = run_momd(["-c", str(cfg)])
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and suggestion in proc.stderr, proc.stderr


def test_misspelled_logging_section_stops_momd(tmp_path: Path) -> None:
    cfg = sim_config(tmp_path)
    cfg.write_text(cfg.read_text().replace("[logging]", "[loging]"))
    proc = run_momd(["--check", "-c", str(cfg)])
    assert proc.returncode == 2 and "unknown section [loging] (did you mean [logging]?)" in proc.stderr


def test_daemonize_with_stdio_log_warns_on_the_terminal(tmp_path: Path) -> None:
    cfg = sim_config(tmp_path)
    pid_file = tmp_path / "momd.pid"
    proc = run_momd(["-c", str(cfg), "-d", "--pid-file", str(pid_file)])
    try:
        assert proc.returncode == 0
        assert "log is discarded" in proc.stderr, proc.stderr
        # momd -d returns once the detached momd has written its pid file: no race for the caller.
        pid = int(pid_file.read_text())
    finally:
        if pid_file.exists():
            os.kill(int(pid_file.read_text()), signal.SIGTERM)
    wait_until(lambda: not pid_file.exists(), 10, what="the pid file removed on exit")

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False
    wait_until(gone, 10, what="the detached momd's exit on SIGTERM")


def test_pid_file_without_daemonize_is_written_and_removed(tmp_path: Path) -> None:
    pid_file = tmp_path / "momd.pid"
    m = Momd(sim_config(tmp_path), ["--pid-file", str(pid_file)])
    try:
        m.wait_ticks(1)
        assert int(pid_file.read_text()) == m.pid
        assert m.stop()[0] == 0
        assert not pid_file.exists()
    finally:
        m.close()


@pytest.mark.parametrize("target", ["stdout", "stderr"])
def test_log_to_stdout_or_stderr_by_name_creates_no_file(tmp_path: Path, target: str) -> None:
    m = Momd(sim_config(tmp_path), ["-l", target])
    try:
        m.wait_ticks(2)
        assert m.stop()[0] == 0
        assert "momd stopped" in m.log()
        assert not (tmp_path / target).exists() and not (Path(m.proc.args[0]).parent / target).exists()
    finally:
        m.close()


@pytest.mark.parametrize("text, where", [
    ("(set ksmEnabled True)\n", "01-parameters:1:17: error: undefined variable 'True'"),
    ("(frobnicate 1 2)\n", "01-parameters:1:2: error: undefined function 'frobnicate'"),
    ('(defvar x 1)\n(with Guests g (g.Control "balloon_targt" 1000))\n',
     "01-parameters:2:27: error: unknown control 'balloon_targt': no controller acts on it "
     "(did you mean 'balloon_target'?)"),
    # A memory-hungry policy (a 1 MB string built at every step) is stopped by the budget in its trial run.
    ('(defvar many (* Guests 500))\n(with many g (* "x" 1048576))\n', "error: policy budget exceeded: "),
])
def test_policy_that_cannot_run_is_refused_over_rpc_and_ballooning_goes_on(tmp_path: Path, text: str,
                                                                              where: str) -> None:
    # MOM's earlier sample policy: it changes some balloon at every tick, so "ballooning
    # goes on" is visible in any five ticks (the default policy rests once guests settle).
    policies = REPO / "bench" / "policies" / "mom-sample"
    sock = tmp_path / "mom.sock"
    cfg = write_config(tmp_path, scenario=scenario_toml(idle_guests(3, max_mib=2048), memory=3072),
                       policy_dir=str(policies), speed=20, interval=1, policy_interval=2)
    cfg.write_text(cfg.read_text().replace("rpc-port: -1", f"rpc-port: {sock}"))
    m = Momd(cfg)
    try:
        m.wait_ticks(2)
        proc = subprocess.run([*MOMCTL, "--socket", str(sock), "policy", "set-named", "01-parameters", "-"],
                              input=text, capture_output=True, text=True, timeout=30)
        assert proc.returncode == 1, proc.stderr
        assert "rejected; the previous policy stays in force" in proc.stderr
        assert where in proc.stderr and "^" in proc.stderr, proc.stderr
        # The old policy stays in force: every later tick runs, and the guests are still ballooned.
        start = len(m.records())
        later = m.wait_ticks(start + 5)[start:]
        assert all(r["ok"] for r in later)
        assert any(a["control"] == "balloon_target" and a["applied"] for r in later for a in r["actions"]), later
        assert "01-parameters" not in run_momctl(["--socket", str(sock), "policy", "list"]).stdout
    finally:
        m.close()


def test_daemonize_with_an_unwritable_pid_file_fails_on_the_terminal(tmp_path: Path) -> None:
    cfg = sim_config(tmp_path)
    proc = run_momd(["--check", "-c", str(cfg), "--pid-file", str(tmp_path / "no" / "momd.pid")])
    assert proc.returncode == 2 and "--pid-file: cannot write" in proc.stderr, proc.stderr
    proc = run_momd(["-c", str(cfg), "-d", "--pid-file", str(tmp_path / "no" / "momd.pid")])
    assert proc.returncode == 2 and "--pid-file: cannot write" in proc.stderr, proc.stderr


def test_sigterm_stops_momd_even_when_a_collector_hangs(tmp_path: Path) -> None:
    # The host's meminfo is a FIFO nobody writes: reading it blocks the engine for good.
    proc_root = tmp_path / "proc"
    proc_root.mkdir()
    os.mkfifo(proc_root / "meminfo")
    cfg = sim_config(tmp_path, extra_main=f"proc-root: {proc_root}", record=False)
    cfg.write_text(cfg.read_text().replace("hypervisor-call-timeout: 5", "hypervisor-call-timeout: 1"))
    pid_file = tmp_path / "momd.pid"
    m = Momd(cfg, ["--pid-file", str(pid_file)])
    try:
        m.wait_log("momd running")
        time.sleep(1)  # the engine is in the blocked read by now
        rc, took = m.stop(signal.SIGTERM, timeout=15)
        assert rc == 1
        assert took < 10  # 2 x the call timeout + 5 s at most
        assert "the engine did not stop within 7 s; exiting without it" in m.log()
        assert not pid_file.exists()
    finally:
        m.close()
