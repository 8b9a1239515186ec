"""Fixtures for the vdsm tests: certificates, the vdsm double, a host tree, and
momd run with vdsm's own mom.conf.in and policy set (placeholders filled)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.certs import CertSet, make_cert_set
from tests.support.momd import Momd
from tests.support.shared_policies import SHARED_POLICIES
from tests.support.vdsm_double import IO_KEYS, Disk, Guest, VdsmDouble

VDSM_SHARED = SHARED_POLICIES / "vdsm"
PARAMETERS = "(set balloonEnabled True)\n(set ksmEnabled True)\n"

# The host momd sees (proc-root/sys-root): 16 GiB, 1.5 GiB free counting caches
# (under the policies' 20 % pressure threshold, above the 5 % critical one), 4 CPUs.
HOST_MEM_KIB = 16 * 1024 * 1024
MEMINFO = f"""MemTotal:       {HOST_MEM_KIB} kB
MemFree:         1048576 kB
MemAvailable:    1572864 kB
Buffers:               0 kB
Cached:           524288 kB
AnonPages:      13000000 kB
SwapTotal:       2097152 kB
SwapFree:        2097152 kB
"""
KSM_START = {"run": 0, "pages_to_scan": 64, "sleep_millisecs": 20, "merge_across_nodes": 1,
             "pages_shared": 100, "pages_sharing": 400, "pages_unshared": 50, "pages_volatile": 5,
             "full_scans": 3}

needs_shared = pytest.mark.skipif(not VDSM_SHARED.is_dir(), reason=f"{VDSM_SHARED} is not available")


def make_host_tree(root: Path, pids: list[int]) -> tuple[Path, Path]:
    """A /proc and /sys tree for the host collectors; returns (proc, sys)."""
    proc, sys_ = root / "proc", root / "sys"
    proc.mkdir(parents=True)
    (proc / "meminfo").write_text(MEMINFO)
    (proc / "vmstat").write_text("pswpin 10\npswpout 20\n")
    (proc / "cpuinfo").write_text("".join(f"processor\t: {i}\nmodel name\t: test\n\n" for i in range(4)))
    for pid in pids:
        (proc / str(pid)).mkdir()
        (proc / str(pid) / "status").write_text("Name:\tqemu-kvm\nVmSize:\t 4200000 kB\n")
    ksm = sys_ / "kernel" / "mm" / "ksm"
    ksm.mkdir(parents=True)
    for key, value in KSM_START.items():
        (ksm / key).write_text(f"{value}\n")
    return proc, sys_


def standard_guests() -> list[Guest]:
    """Three Up guests and two that are not Up.

    - vm-limited: 50 % CPU limit on 2 vCPUs, period 50000 (so quota and period
      change), a disk with an IO policy;
    - vm-free: no CPU limit, already at the unlimited quota/period;
    - vm-noagent: Up, but memUsage 0 (no guest agent: no memory statistics);
    - vm-down (Down), vm-paused (Paused): never managed.
    """
    disk = Disk("vda", "/rhev/data-center/mnt/disk-a",
                guaranteed=dict.fromkeys(IO_KEYS, 100),
                maximum={"total_bytes_sec": 10_000_000, "read_bytes_sec": 0, "write_bytes_sec": 0,
                         "total_iops_sec": 500, "read_iops_sec": 0, "write_iops_sec": 0})
    return [
        Guest("11111111-aaaa-4000-8000-000000000001", "vm-limited", pid=4101, vcpu_user_limit=50,
              vcpu_quota=-1, vcpu_period=50000, vcpu_count=2, disks=[disk]),
        Guest("11111111-aaaa-4000-8000-000000000002", "vm-free", pid=4102),
        Guest("11111111-aaaa-4000-8000-000000000003", "vm-noagent", pid=4103, mem_usage=0),
        Guest("11111111-aaaa-4000-8000-000000000004", "vm-down", status="Down", pid=0),
        Guest("11111111-aaaa-4000-8000-000000000005", "vm-paused", status="Paused", pid=4105),
    ]


def guest_names(record: dict[str, Any]) -> set[str]:
    return {g["properties"]["name"] for g in record.get("guests", [])}


@pytest.fixture
def certs(tmp_path: Path) -> CertSet:
    return make_cert_set(tmp_path / "certs")


@pytest.fixture
def double_factory(tmp_path: Path, certs: CertSet) -> Iterator[Callable[..., VdsmDouble]]:
    """Build (not start) vdsm doubles; all are stopped at teardown."""
    made: list[VdsmDouble] = []

    def make(guests: list[Guest] | None = None, port: int = 0, **kw: Any) -> VdsmDouble:
        d = VdsmDouble(ca_cert=certs.ca_cert, server_cert=certs.server_cert, server_key=certs.server_key,
                       port=port, guests=standard_guests() if guests is None else guests, **kw)
        made.append(d)
        return d

    yield make
    for d in made:
        d.stop()


@pytest.fixture
def momd_factory(tmp_path: Path, certs: CertSet) -> Iterator[Callable[..., Momd]]:
    """Start momd with vdsm's mom.conf.in (placeholders filled) and vdsm's policies
    plus 01-parameters; every momd started is stopped by PID at teardown."""
    started: list[Momd] = []

    def start(port: int, *, pki_dir: Path | None = None, pids: list[int] | None = None) -> Momd:
        confdir = tmp_path / "etc"
        policy_dir = confdir / "mom.d"
        policy_dir.mkdir(parents=True)
        for p in sorted(VDSM_SHARED.glob("*.policy")):
            shutil.copy(p, policy_dir / p.name)
        (policy_dir / "01-parameters.policy").write_text(PARAMETERS)
        logdir = tmp_path / "log"
        logdir.mkdir()
        proc, sys_ = make_host_tree(tmp_path / "host", pids if pids is not None else [4101, 4102, 4103])
        text = (VDSM_SHARED / "mom.conf.in").read_text()
        text = text.replace("@CONFDIR@", str(confdir)).replace("@VDSMLOGDIR@", str(logdir))
        # Faster than vdsm's 15 s, and the test's own host tree, socket, port and PKI.
        for key in ("main-loop-interval", "host-monitor-interval", "guest-monitor-interval",
                    "guest-manager-interval", "policy-engine-interval"):
            assert f"{key}: 15" in text
            text = text.replace(f"{key}: 15", f"{key}: 1")
        text = text.replace("rpc-port: /var/run/vdsm/mom-vdsm.sock", f"rpc-port: {tmp_path / 'mom-vdsm.sock'}")
        text = text.replace("pki-dir=/etc/pki/vdsm", f"pki-dir={pki_dir or certs.pki_dir}")
        text = text.replace("port=54321", f"port={port}")
        text = text.replace("request-timeout=10", "request-timeout=3")
        text = text.replace("[main]\n", f"[main]\nrecord-file: {tmp_path / 'record.jsonl'}\n"
                                        f"proc-root: {proc}\nsys-root: {sys_}\nhypervisor-call-timeout: 5\n", 1)
        conf = tmp_path / "mom.conf"
        conf.write_text(text)
        m = Momd(conf, log_name="momd.out", mom_log=logdir / "mom.log")
        started.append(m)
        return m

    yield start
    for m in started:
        m.close()
