"""momd for real: faults leave the daemon running, each logged once.

Each test starts the daemon with one real fault (a collector that raises, a
malformed /proc file on disk, a KSM sysfs file that cannot be written, a
policy that fails at run time), lets many ticks pass and checks that ticks
go on and that the fault's log line appears exactly once.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

from mom.sim.model import FIRST_GUEST_PID
from tests.support.momd import REPO, Momd, idle_guests, scenario_toml, write_config

TICKS = 25
FIXTURE_PROC = REPO / "tests" / "fixtures" / "proc-basic"

# Runs the real momd after registering a host collector with a bug in it.
BROKEN_COLLECTOR_MAIN = """\
import sys
from mom.collectors.base import Collector, register

@register
class Broken(Collector):
    name = "Broken"
    scope = "host"
    optional = frozenset({"broken_value"})

    def collect(self, subject):
        raise RuntimeError("collector bug: boom")

from mom.cli.momd import main
sys.exit(main())
"""


def lines_with(log: str, text: str) -> list[str]:
    return [line for line in log.splitlines() if text in line]


def run_ticks(m: Momd, ticks: int = TICKS) -> list[dict]:
    try:
        records = m.wait_ticks(ticks, timeout=20)
        assert m.alive()
        rc, _ = m.stop()
        assert rc == 0, m.log()[-2000:]
        return records
    finally:
        m.close()


def test_collector_that_raises(tmp_path: Path) -> None:
    main = tmp_path / "momd_with_broken_collector.py"
    main.write_text(BROKEN_COLLECTOR_MAIN)
    cfg = write_config(tmp_path, scenario=scenario_toml(idle_guests(2)), policy=None,
                       host_collectors="HostMemory, Broken", controllers="Balloon")
    records = run_ticks(Momd(cfg, command=[sys.executable, str(main)]))
    # The broken collector's optional field is nil; the rest of the host row is there.
    assert all(r["ok"] for r in records)
    assert all(r["host"]["statistics"][-1]["broken_value"] is None for r in records)
    assert all(r["host"]["statistics"][-1]["mem_available"] > 0 for r in records)
    text = (cfg.parent / "momd.log").read_text()
    found = lines_with(text, "collector bug: boom")
    assert len(found) == 1, text[-3000:]
    assert "host collector Broken" in found[0] and "RuntimeError" in found[0]
    assert "Traceback" not in text


def test_malformed_proc_file(tmp_path: Path) -> None:
    """proc-root is a tree on disk built here; one guest's /proc/PID/stat is garbage."""
    proc = tmp_path / "proc"
    proc.mkdir()
    for name in ("meminfo", "vmstat"):
        shutil.copy(FIXTURE_PROC / name, proc / name)
    good, bad = FIRST_GUEST_PID, FIRST_GUEST_PID + 1  # vm1 and vm2 of the scenario
    stat = (FIXTURE_PROC / "4321" / "stat").read_text().replace("4321", str(good), 1)
    (proc / str(good)).mkdir()
    (proc / str(good) / "stat").write_text(stat)
    (proc / str(bad)).mkdir()
    (proc / str(bad) / "stat").write_text("this is not a stat line\n")
    cfg = write_config(tmp_path, scenario=scenario_toml(idle_guests(2)), policy=None, controllers="Balloon",
                       host_collectors="HostMemory", guest_collectors="GuestQemuProc, GuestMemory, GuestBalloon",
                       extra_main=f"proc-root: {proc}")
    m = Momd(cfg)
    records = run_ticks(m)
    # Ticks go on with the healthy guest; the one with the bad file is left out.
    assert all(r["ok"] for r in records)
    assert all([g["properties"]["name"] for g in r["guests"]] == ["vm1"] for r in records[2:])
    assert all(r["host"]["statistics"][-1]["mem_available"] == 65798292 for r in records)  # the fixture's MemTotal
    log = m.log()
    bad_path = f"{proc}/{bad}/stat"
    found = lines_with(log, bad_path)
    assert len(found) == 1, log[-3000:]
    assert "malformed" in found[0] and "vm2" in found[0]
    assert lines_with(log, "WARNING mom.faults") == found, "one fault, one warning"
    assert "Traceback" not in log


def test_unwritable_ksm_file(tmp_path: Path) -> None:
    """The simulator's sysfs 'run' file is a directory: writing it fails, even as root."""
    tree = tmp_path / "tree"
    run = tree / "sys" / "kernel" / "mm" / "ksm" / "run"
    run.mkdir(parents=True)  # the simulator keeps an existing tunable as it is
    policy = tmp_path / "ksm-on.policy"
    policy.write_text('(Host.Control "ksm_run" 1)\n(with Guests vm (vm.Control "balloon_target" vm.balloon_cur))\n')
    cfg = write_config(tmp_path, scenario=scenario_toml(idle_guests(2)), policy=str(policy),
                       controllers="Balloon, KSM", host_collectors="HostMemory")
    m = Momd(cfg)
    records = run_ticks(m)
    assert all(r["ok"] for r in records)
    assert all(len(r["guests"]) == 2 for r in records[2:])
    # Each tick the write is tried and refused, and the tick goes on.
    ksm = [a for r in records for a in r["actions"] if a["control"] == "ksm_run"]
    assert len(ksm) == len(records)
    assert all(not a["applied"] and "Is a directory" in a["reason"] for a in ksm)
    assert run.is_dir()
    log = m.log()
    found = lines_with(log, f"{run}: Is a directory")
    assert len(found) == 1, "\n".join(lines_with(log, "KSM"))[-3000:]
    assert "Traceback" not in log


COUNTING_POLICY = """\
# Counts its ticks in a host variable; from the 5th tick on it divides by zero.
(defvar prev (Host.GetVar "count"))
(defvar count (+ 1 (if (valid prev) prev 0)))
(Host.SetVar "count" count)
(if (>= count 5) (/ count 0) count)
(Host.Control "ksm_pages_to_scan" 77)
"""


def test_policy_error_at_run_time(tmp_path: Path) -> None:
    policy = tmp_path / "counting.policy"
    policy.write_text(COUNTING_POLICY)
    cfg = write_config(tmp_path, scenario=scenario_toml(idle_guests(2)), policy=str(policy),
                       controllers="Balloon, KSM", host_collectors="HostMemory, HostKSM")
    m = Momd(cfg)
    records = run_ticks(m)
    assert [r["ok"] for r in records[:4]] == [True] * 4
    assert all(r["host_controls"] == {"ksm_pages_to_scan": 77} for r in records[:4])
    failed = records[4:]
    assert len(failed) >= TICKS - 4
    assert all(not r["ok"] and "division by zero" in r["error"] and r["actions"] == [] for r in failed)
    log = m.log()
    found = lines_with(log, "division by zero")
    assert len(found) == 1, log[-3000:]
    assert f"{policy}:5:" in found[0] and "ERROR" in found[0]
    assert "Traceback" not in log
    # The first failed tick's line says so, without repeating the error; the failing ticks
    # after it are summed up once a minute (mom.daemon.status), each counted once.
    told = lines_with(log, "policy FAILED")
    assert f"mom.tick: tick {failed[0]['tick']} " in told[0] and "division by zero" not in told[0], told
    summed = [int(n) for line in told[1:] for n in re.findall(r"policy FAILED on (\d+) ticks?", line)]
    assert len(summed) == len(told) - 1 and 1 + sum(summed) <= len(failed), told
