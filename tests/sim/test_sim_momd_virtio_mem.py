"""momd (a subprocess) on a simulated host with virtio-mem guests: a policy sets
mem_requested_size, the VirtioMem controller rounds it to the block, and the
simulated guest's plugged memory follows; a guest without a device is skipped
quietly and a bad value is said once, however many ticks repeat it."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the daemon tests' helpers
from tests.support.momd import Momd, scenario_toml, write_config

MIB = 1024
STEADY = {"type": "steady", "level": 400}
GUESTS = [{"name": name, "max": 1024, "min": 256, "workload": STEADY} for name in ("elastic", "fixed", "bad")]
DEVICE = '[guest.virtio_mem]\nmax = "2G"\nblock = "2M"\nrequested = "512M"\n'

POLICY = """
(def wanted (guest)
    (if (== (guest.Prop "name") "bad") "lots" (+ (* 1536 1024) 1000)))
(with Guests guest (guest.Control "mem_requested_size" (wanted guest)))
"""


def scenario() -> str:
    """elastic and bad have a device, fixed none (the table follows its guest's keys)."""
    text = scenario_toml(GUESTS, memory=8192, swap=1024)
    parts = text.split("[[guest]]")
    parts[1] += DEVICE
    parts[3] += DEVICE
    return "[[guest]]".join(parts)


def test_policy_sets_the_requested_size_and_the_guest_follows(tmp_path: Path) -> None:
    policy = tmp_path / "vmem.policy"
    policy.write_text(POLICY)
    cfg = write_config(tmp_path, scenario=scenario(), policy=str(policy), controllers="VirtioMem",
                       host_collectors="HostMemory",
                       guest_collectors="GuestMemory, GuestBalloon, GuestVirtioMemOptional")
    m = Momd(cfg)
    try:
        def plugged(records: list[dict]) -> dict[str, object]:
            last = records[-1]["guests"] if records else []
            return {g["properties"]["name"]: g["statistics"][-1].get("virtio_mem_size") for g in last}

        records = m.wait_records(lambda rs: plugged(rs).get("elastic") == 1536 * MIB and len(rs) >= 8, timeout=30)
        rc, _ = m.stop()
        log = m.log()
    finally:
        m.close()
    assert rc == 0, log[-2000:]
    assert "Traceback" not in log
    sizes = plugged(records)
    assert sizes == {"elastic": 1536 * MIB, "fixed": None, "bad": 512 * MIB}
    # The guest sees it: its total is its boot memory plus what is plugged.
    totals = {g["properties"]["name"]: g["statistics"][-1]["mem_available"] for g in records[-1]["guests"]}
    assert totals == {"elastic": (1024 + 1536) * MIB, "fixed": 1024 * MIB, "bad": (1024 + 512) * MIB}
    actions = [a for r in records for a in r["actions"] if a["control"] == "mem_requested_size"]
    applied = [a for a in actions if a["applied"]]
    assert [(a["target"], a["new"]) for a in applied] == [("elastic", 1536 * MIB)]  # once: then it is current
    assert "rounded down" in applied[0]["reason"]
    assert {a["target"] for a in actions if not a["applied"]} == {"bad"}  # fixed: skipped, not refused
    # The bad value is refused every tick but said once.
    assert m.count("not a number: 'lots'") == 1, log[-3000:]
    assert "fixed" not in "\n".join(line for line in log.splitlines() if "mem_requested_size" in line)
