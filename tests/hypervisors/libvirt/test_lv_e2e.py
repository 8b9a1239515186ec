"""End to end: momd with the libvirt interface manages a real QEMU guest's balloon
through a real libvirtd, and survives a libvirtd restart.

The test starts its own libvirtd (lvd.py: private mount namespace, own config,
no systemd), defines and starts a tiny TCG guest (guest_image.py: a Debian
kernel and a busybox initramfs with virtio_balloon) with a memory statistics
period, runs momd with a policy that shrinks the guest to 256 MiB, and checks
that libvirt reports the guest's current memory at the target and that the
guest's own MemTotal falls; then deflates it back; then restarts libvirtd under
the running momd and checks that momd reconnects and goes on ballooning.
Every process it starts (libvirtd, momd, QEMU) is stopped by PID.

Timings of each phase are printed (pytest -s).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import time
from pathlib import Path

import pytest

from tests.support.momd import Momd

from .conftest import NO_BINDING

libvirt = pytest.importorskip("libvirt", reason=NO_BINDING)

from .e2e import guest_mem, wait_for, write_policy  # noqa: E402
from .guest_image import READY, GuestImage  # noqa: E402
from .lvd import Libvirtd  # noqa: E402

GUEST = "momguest"
MAX_KIB = 524288
SHRUNK_KIB = 262144
AFTER_RESTART_KIB = 393216


def domain_xml(img: GuestImage, serial: Path) -> str:
    return f"""<domain type='qemu'>
  <name>{GUEST}</name>
  <memory unit='KiB'>{MAX_KIB}</memory>
  <currentMemory unit='KiB'>{MAX_KIB}</currentMemory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <kernel>{img.kernel}</kernel>
    <initrd>{img.initrd}</initrd>
    <cmdline>console=ttyS0 panic=-1 quiet</cmdline>
  </os>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>{shutil.which('qemu-system-x86_64')}</emulator>
    <controller type='usb' model='none'/>
    <serial type='file'><source path='{serial}'/><target port='0'/></serial>
    <memballoon model='virtio'><stats period='2'/></memballoon>
  </devices>
</domain>"""


def balloon_policy(target: str) -> str:
    return f'(with Guests vm (vm.Control "balloon_target" {target}))\n'


def test_momd_balloons_a_real_guest_and_survives_libvirtd_restart(world: dict) -> None:
    base: Path = world["base"]
    lvd: Libvirtd = world["lvd"]
    timings: dict[str, float] = {}
    t_start = time.monotonic()

    # -- the guest -------------------------------------------------------------------------
    serial = base / "serial.log"
    conn = libvirt.open(lvd.uri)
    dom = conn.defineXML(domain_xml(world["image"], serial))
    dom.create()
    world["guest_pids"].update(lvd.guest_pids())
    timings["guest boot"] = wait_for("guest ready marker on the serial console",
                                     lambda: READY in serial.read_text(errors="replace") and guest_mem(serial),
                                     90, lambda: serial.read_text(errors="replace")[-500:] if serial.exists() else "")
    full_mem = guest_mem(serial)
    assert full_mem and full_mem > 400000, full_mem

    # -- momd -------------------------------------------------------------------------------
    sysroot = base / "sys"
    (sysroot / "kernel/mm/ksm").mkdir(parents=True)
    for name, value in (("run", 0), ("pages_to_scan", 100), ("sleep_millisecs", 20)):
        (sysroot / "kernel/mm/ksm" / name).write_text(f"{value}\n")
    policy = base / "balloon.policy"
    write_policy(policy, balloon_policy(str(SHRUNK_KIB)))
    conf = base / "mom.conf"
    conf.write_text(f"""[main]
hypervisor-interface: libvirt
libvirt-hypervisor-uri: {lvd.uri}
main-loop-interval: 1
host-monitor-interval: 1
guest-monitor-interval: 1
guest-manager-interval: 2
policy-engine-interval: 1
hypervisor-call-timeout: 5
controllers: Balloon
policy: {policy}
sys-root: {sysroot}
record-file: {base / 'record.jsonl'}

[logging]
log: stdio
verbosity: info

[host]
collectors: HostMemory

[guest]
collectors: GuestQemuProc, GuestMemory, GuestBalloon
""")
    momd = Momd(conf)
    world["started"].append(momd)

    def info_mem() -> int | None:
        try:
            return conn.lookupByName(GUEST).info()[2]
        except libvirt.libvirtError:
            return None  # libvirtd down (or this test's connection closed meanwhile)

    def momd_state() -> str:
        alive = "alive" if momd.proc.poll() is None else f"exited {momd.proc.returncode}"
        return (f"libvirt current memory {info_mem()} KiB, guest MemTotal {guest_mem(serial)} KiB; momd {alive}; "
                f"log tail:\n{momd.log()[-2500:]}")

    # -- shrink -----------------------------------------------------------------------------
    t0 = time.monotonic()
    wait_for("libvirt's current memory at the shrink target", lambda: info_mem() == SHRUNK_KIB, 60, momd_state)
    timings["momd start to balloon target in libvirt"] = time.monotonic() - t0
    wait_for("the guest's MemTotal falling", lambda: (guest_mem(serial) or full_mem) < full_mem - 200000, 30,
             momd_state)
    timings["momd start to guest MemTotal fallen"] = time.monotonic() - t0
    shrunk_mem = guest_mem(serial)
    log = momd.log()
    assert f"guest {GUEST}" in log and "found, pid" in log, log[-2000:]
    found_pid = re.search(rf"guest {GUEST} \(\S+\) found, pid (\d+)", log)
    assert found_pid and int(found_pid.group(1)) in lvd.guest_pids(), "momd did not find the QEMU pid"

    def recorded() -> list[dict]:
        lines = (base / "record.jsonl").read_text().splitlines(keepends=True)
        records = [json.loads(line) for line in lines if line.endswith("\n")]
        return [g["statistics"][-1] for r in records for g in r["guests"] if g["properties"]["name"] == GUEST]
    # momd's own view: the balloon statistics it collected show the guest's total falling.
    wait_for("momd's recorded mem_available falling",
             lambda: min(s["mem_available"] for s in recorded()) < full_mem - 200000, 30,
             lambda: str(recorded()[-3:]))
    assert all(s["host_minor_faults"] is not None and s["balloon_cur"] for s in recorded())

    # -- deflate ----------------------------------------------------------------------------
    write_policy(policy, balloon_policy("vm.balloon_max"))
    t0 = time.monotonic()
    os.kill(momd.proc.pid, signal.SIGHUP)
    wait_for("libvirt's current memory back at the maximum", lambda: info_mem() == MAX_KIB, 30, momd_state)
    wait_for("the guest's MemTotal back up", lambda: (guest_mem(serial) or 0) > full_mem - 20000, 30, momd_state)
    timings["deflate (SIGHUP to guest MemTotal restored)"] = time.monotonic() - t0

    # -- libvirtd restart under the running momd ------------------------------------------------
    conn.close()
    t0 = time.monotonic()
    lvd.stop()
    lost = time.monotonic()
    wait_for("momd noticing the lost connection", lambda: "not connected (connection lost" in momd.log(), 30,
             momd_state)
    timings["libvirtd stopped to momd noticing"] = time.monotonic() - lost
    # Stay down a while: momd's reconnection attempts fail and back off meanwhile,
    # without a log line per attempt or per call (one warning per outage).
    time.sleep(3)
    assert momd.proc.poll() is None
    log = momd.log()
    assert log.count("not connected (") == 1 and "reconnected to" not in log, log[-2500:]
    lvd.start()
    conn = libvirt.open(lvd.uri)
    assert conn.lookupByName(GUEST).isActive(), "the guest did not survive the libvirtd restart"
    write_policy(policy, balloon_policy(str(AFTER_RESTART_KIB)))
    os.kill(momd.proc.pid, signal.SIGHUP)
    wait_for("libvirt's current memory at the post-restart target", lambda: info_mem() == AFTER_RESTART_KIB, 60,
             momd_state)
    timings["libvirtd restart to next balloon target applied"] = time.monotonic() - t0
    wait_for("momd reporting the reconnection", lambda: "libvirt: reconnected to" in momd.log(), 10,
             momd_state)
    assert momd.proc.poll() is None

    # -- stop momd by PID --------------------------------------------------------------------------
    rc, _ = momd.stop(timeout=10)
    assert rc == 0, momd.log()[-2000:]
    conn.close()
    timings["total"] = time.monotonic() - t_start
    print("\nlibvirt end-to-end timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    print(f"guest MemTotal: {full_mem} KiB full, {shrunk_mem} KiB shrunk to {SHRUNK_KIB} KiB")
