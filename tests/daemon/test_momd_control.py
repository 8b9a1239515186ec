"""momd for real: a balloon call that hangs for one guest costs only that guest's
control; the flight recorder shows the other guests' controls on every tick
and the hung guest's refusal with its reason, then the late answer."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.support.momd import Momd, idle_guests, scenario_toml, write_config

# Runs the real momd on a simulator whose set_balloon_target blocks for vm2
# while a flag file exists (a QEMU monitor that stops answering); collection
# for vm2 goes on.
STUCK_BALLOON_MAIN = """\
import os, sys, time
from mom.hypervisors.sim import SimHypervisor

FLAG = sys.argv.pop(1)
real = SimHypervisor.set_balloon_target

def set_balloon_target(self, guest, target_kib):
    deadline = time.monotonic() + 120
    while guest.name == "vm2" and os.path.exists(FLAG) and time.monotonic() < deadline:
        time.sleep(0.05)
    real(self, guest, target_kib)

SimHypervisor.set_balloon_target = set_balloon_target
from mom.cli.momd import main
sys.exit(main())
"""
SHRINK = '(with Guests g (g.Control "balloon_target" (- g.balloon_cur 10240)))\n'


def balloon_actions(record: dict, name: str) -> list[dict]:
    return [a for a in record["actions"] if a["target"] == name and a["control"] == "balloon_target"]


def test_hung_balloon_call_for_one_guest(tmp_path: Path) -> None:
    main = tmp_path / "momd_stuck_balloon.py"
    main.write_text(STUCK_BALLOON_MAIN)
    flag = tmp_path / "vm2-stuck"
    flag.write_text("")
    policy = tmp_path / "shrink.policy"
    policy.write_text(SHRINK)
    cfg = write_config(tmp_path, scenario=scenario_toml(idle_guests(3)), policy=str(policy), controllers="Balloon",
                       host_collectors="HostMemory")
    m = Momd(cfg, command=[sys.executable, str(main), str(flag)])
    try:
        records = m.wait_ticks(6, timeout=30)
        hung = [r for r in records if balloon_actions(r, "vm2")]
        first = hung[0]
        assert [(a["applied"], a["reason"]) for a in balloon_actions(first, "vm2")] == [
            (False, "no answer within 5 s")]
        for r in hung[1:]:
            assert [(a["applied"], a["reason"]) for a in balloon_actions(r, "vm2")] == [
                (False, "previous balloon_target call for vm2 has not returned")]
        # vm1 and vm3 are ballooned on every tick, the one that waited for vm2 included.
        for r in hung:
            for name in ("vm1", "vm3"):
                [a] = balloon_actions(r, name)
                assert a["applied"] and a["new"] < a["old"], r["actions"]
        seen = len(records)

        flag.unlink()  # vm2's monitor answers again
        records = m.wait_ticks(seen + 4, timeout=30)
        late = [a for r in records[seen:] for a in balloon_actions(r, "vm2") if a["reason"] and "after" in a["reason"]]
        assert [(a["applied"], a["reason"], a["new"]) for a in late] == [
            (True, "answered after the 5 s deadline", balloon_actions(first, "vm2")[0]["new"])]
        assert all(a["applied"] for a in balloon_actions(records[-1], "vm2"))
        rc, _ = m.stop()
        assert rc == 0
    finally:
        m.close()
    log = m.log()
    faults = [line for line in log.splitlines() if "guest vm2 controller Balloon" in line]
    assert len(faults) == 3, faults  # no answer; still out; recovered: not a line per tick
    assert "no answer within 5 s" in faults[0] and "WARNING" in faults[0]
    assert "has not returned" in faults[1] and "recovered" in faults[2]
    assert "Ballooning guest" not in log  # per-guest lines are debug
    assert "Traceback" not in log
