"""momd (a subprocess) on a simulated host whose guests misbehave as scenario
files can now say: one never reports statistics, one has no balloon driver,
one stops answering. momd keeps ticking, says once what is wrong with the
silent guest, and balloons the others."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the daemon tests' helpers
from tests.support.momd import POLICIES, Momd, scenario_toml, write_config

GUESTS = [
    {"name": "quiet", "max": 2048, "min": 512, "stats": False, "workload": {"type": "steady", "level": 600}},
    {"name": "nodriver", "max": 2048, "min": 512, "balloon_driver": False,
     "workload": {"type": "steady", "level": 600}},
    {"name": "hung", "max": 2048, "min": 512, "stats_period": 2, "stats_stop": 30,
     "workload": {"type": "steady", "level": 500}},
    {"name": "ok", "max": 2048, "min": 512, "stats_period": 2, "workload": {"type": "steady", "level": 500}},
]


def test_momd_runs_on_guests_that_do_not_report_or_do_not_balloon(tmp_path: Path) -> None:
    # Four 2 GiB guests on 4 GiB: the host is short as soon as the guests'
    # caches fill, so balloon.policy shrinks what it can.
    # (the helper writes Python booleans; TOML spells them in lower case)
    text = scenario_toml(GUESTS, memory=4096, swap=2048).replace(" = False", " = false")
    pdir = tmp_path / "policies"
    pdir.mkdir()
    shutil.copy(POLICIES / "balloon.policy", pdir / "balloon.policy")
    cfg = write_config(tmp_path, scenario=text, policy_dir=str(pdir), speed=50, interval=2, policy_interval=4,
                       guest_collectors="GuestMemoryOptional, GuestBalloon")
    m = Momd(cfg)
    try:
        records = m.wait_ticks(25, timeout=30)
        rc, _ = m.stop()
        log = m.log()
    finally:
        m.close()
    assert rc == 0, log[-2000:]
    assert all(r["ok"] for r in records)
    assert "Traceback" not in log
    # The guests that never report: said once each, not every tick.
    for name in ("quiet", "nodriver"):
        assert log.count(f"guest {name}: the guest reports no balloon statistics") == 1, log[-3000:]
    actions = [a for r in records for a in r["actions"] if a["control"] == "balloon_target"]
    shrunk = {a["target"] for a in actions if a["new"] < a["old"]}
    assert "ok" in shrunk, actions[:10]
    assert "quiet" not in shrunk  # no statistics, nothing to decide on
    # The guest without a driver took its targets and never moved.
    for r in records:
        for g in r["guests"]:
            if g["properties"]["name"] == "nodriver":
                assert g["statistics"][-1]["balloon_cur"] == 2048 * 1024
    # The guest that stopped answering at 30 s: its numbers froze (major
    # faults tick on in a live guest), the others' did not.
    def faults(name: str) -> list[int]:
        return [g["statistics"][-1]["major_fault"] for r in records for g in r["guests"]
                if g["properties"]["name"] == name]
    assert len(set(faults("hung")[-8:])) == 1
    assert len(set(faults("ok")[-8:])) > 1
