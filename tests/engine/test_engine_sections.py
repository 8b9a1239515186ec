"""A section the interface does not support for a guest (NotSupported): a normal
case when only optional collectors read it (a guest without a virtio-mem device
under GuestVirtioMemOptional: one info line per guest, no fault, the guest takes
part with nil fields), a warning and a left-out guest when a collector needs it."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from mom.core.clock import ManualClock
from mom.daemon.config import load_config
from mom.engine.engine import Engine, EngineSettings
from mom.hypervisors.sim import SimHypervisor
from mom.policy.policy import PolicySet
from mom.sim.scenario import loads_scenario

from .test_engine_hang import tick

SCENARIO = """
[host]
memory = 8192

[[guest]]
name = "elastic"
max = 1024
workload = { type = "steady", level = 300 }
[guest.virtio_mem]
max = "1G"
block = "2M"
requested = "256M"

[[guest]]
name = "fixed"
max = 1024
workload = { type = "steady", level = 300 }
"""
TICKS = 4


def run(tmp_path: Path, virtio_mem_collector: str) -> Engine:
    clock = ManualClock()
    hv = SimHypervisor(loads_scenario(SCENARIO, "s.toml"), clock=clock, tree_dir=str(tmp_path / "tree"))
    settings = EngineSettings.from_config(
        load_config(None), call_timeout=5, host_collectors=("HostMemory",),
        guest_collectors=("GuestMemory", "GuestBalloon", virtio_mem_collector), controllers=("VirtioMem",),
        proc_root=hv.proc_root, sys_root=hv.sys_root)
    policies = PolicySet()
    policies.set("keep", '(with Guests g (if (valid g.virtio_mem_size) (g.Control "mem_requested_size" 262144) 0))')
    engine = Engine(settings, hv, policies, clock)
    try:
        for _ in range(TICKS):
            tick(engine, clock)
    finally:
        engine.close()
        hv.close()
    return engine


def about_fixed(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "fixed" in r.getMessage() and "virtio" in r.getMessage()]


def test_a_guest_without_a_device_under_the_optional_collector_is_one_info_line(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="mom")
    engine = run(tmp_path, "GuestVirtioMemOptional")
    said = about_fixed(caplog)
    assert [(r.levelno, r.getMessage()) for r in said] == [(
        logging.INFO, "guest fixed virtio_mem: guest fixed has no virtio-mem device "
                      "(only optional collectors read it: their fields are nil)")]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    status = engine.status()
    assert status.active_faults() == {} and status.faults.counts.get("hypervisor", 0) == 0
    rows = {g.name: g.row for g in status.guests}
    assert rows["fixed"] is not None and rows["fixed"]["virtio_mem_size"] is None  # it takes part, nil fields
    assert rows["elastic"] is not None and rows["elastic"]["virtio_mem_size"] == 256 * 1024


def test_a_guest_without_a_device_under_the_mandatory_collector_stays_a_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="mom")
    engine = run(tmp_path, "GuestVirtioMem")
    said = about_fixed(caplog)
    assert [(r.levelno, r.getMessage()) for r in said] == [
        (logging.WARNING, "guest fixed virtio_mem: guest fixed has no virtio-mem device")]  # once, not every tick
    status = engine.status()
    assert status.active_faults() == {"guest fixed virtio_mem": "guest fixed has no virtio-mem device"}
    ready = {g.name: g.ready for g in status.guests}
    assert ready == {"elastic": True, "fixed": False}  # left out of the policy
