"""One momd on the simulated host for the momctl view tests (explain, plot, top):
a test policy shrinks every guest's balloon by SHRINK_MIB each tick while the
host's free share is under PRESSURE_FREE (always, by design), so every tick
has a ballooning to explain, plot and show. It runs for the whole session of
these tests, with a flight recorder, a plot-dir, a unix socket and a metrics endpoint."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.momd import Momd, scenario_toml, write_config
from tests.support.net import free_port

SHRINK_MIB = 10
PRESSURE_FREE = 0.99  # the host counts as short of memory below this free share: always
MAX_MIB, MIN_MIB = 2048, 256
GUESTS = ("vm1", "vm2", "vm3")

SHRINK_POLICY = f"""\
# Test policy: take {SHRINK_MIB} MiB from every guest each tick while the host is short.
(defvar pressure_free {PRESSURE_FREE})
(defvar host_free (/ (Host.StatAvg "mem_free") Host.mem_available))
(def shrink (vm) {{
    (defvar target (- vm.balloon_cur {SHRINK_MIB * 1024}))
    (vm.Control "balloon_target" target)
}})
(with Guests vm (if (< host_free pressure_free) (shrink vm) nil))
"""


@dataclass
class Daemon:
    momd: Momd
    dir: Path
    socket: Path
    metrics_port: int
    policy: Path

    @property
    def record(self) -> Path:
        return self.momd.record

    @property
    def plot_dir(self) -> Path:
        return self.dir / "plots"


@pytest.fixture(scope="session")
def shrinking() -> Iterator[Daemon]:
    d = Path(tempfile.mkdtemp(prefix="mom-cli-", dir="/tmp"))  # unix socket paths are short
    try:
        policy = d / "shrink.policy"
        policy.write_text(SHRINK_POLICY)
        (d / "plots").mkdir()
        guests = [{"name": n, "max": MAX_MIB, "min": MIN_MIB, "workload": {"type": "steady", "level": 600}}
                  for n in GUESTS]
        sock, metrics_port = d / "momd.sock", free_port()
        cfg = write_config(d, scenario=scenario_toml(guests, memory=8192), policy=str(policy), speed=50,
                           interval=1, policy_interval=2, controllers="Balloon",
                           host_collectors="HostMemory, HostKSM, HostPressure",
                           extra_main=f"plot-dir: {d / 'plots'}\nmetrics-address: 127.0.0.1:{metrics_port}")
        cfg.write_text(cfg.read_text().replace("rpc-port: -1", f"rpc-port: {sock}"))
        m = Momd(cfg)
        try:
            m.wait_ticks(6, timeout=30)
            yield Daemon(m, d, sock, metrics_port, policy)
        finally:
            m.close()
    finally:
        shutil.rmtree(d, ignore_errors=True)
