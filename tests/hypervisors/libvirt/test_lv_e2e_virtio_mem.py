"""End to end: momd's VirtioMem controller resizes a real QEMU guest's virtio-mem device
through a real libvirtd, and the guest's MemTotal follows.

The guest (guest_image.py: virtio_mem loaded, hot-plugged memory onlined as
movable) boots with 512 MiB and an empty 512 MiB virtio-mem region in 2 MiB
blocks, and a balloon with free page reporting. momd's policy asks for 256 MiB
plugged: libvirt's live XML must show the request, the guest's MemTotal must
grow by it, and momd's own records must show the plugged size (its XML cache
dropped by libvirt's memory-device size event) and free page reporting on.
With memory plugged, momd's balloon figures must be the boot memory's (QEMU's
query-balloon, asked through libvirtd), not libvirt's, which count the plugged
memory; a balloon target set through the interface must reach QEMU as it is.
Then the policy asks for 0: the guest unplugs and MemTotal falls back.
Every process it starts (libvirtd, momd, QEMU) is stopped by PID.

Timings of each phase are printed (pytest -s).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.momd import Momd

from .conftest import NO_BINDING

libvirt = pytest.importorskip("libvirt", reason=NO_BINDING)

import libvirt_qemu  # noqa: E402

from mom.hypervisors.libvirt import LibvirtHypervisor  # noqa: E402
from mom.hypervisors.libvirt.domain_xml import parse_domain_xml  # noqa: E402

from .e2e import guest_mem, wait_for, write_policy  # noqa: E402
from .guest_image import KERNEL_CMDLINE, READY, GuestImage  # noqa: E402
from .lvd import Libvirtd  # noqa: E402

GUEST = "memguest"
BOOT_KIB = 524288
REGION_KIB = 524288
BLOCK_KIB = 2048
PLUGGED_KIB = 262144
INFLATE_KIB = 65536


def domain_xml(img: GuestImage, serial: Path) -> str:
    return f"""<domain type='qemu'>
  <name>{GUEST}</name>
  <maxMemory slots='1' unit='KiB'>{BOOT_KIB + REGION_KIB}</maxMemory>
  <memory unit='KiB'>{BOOT_KIB + REGION_KIB}</memory>
  <currentMemory unit='KiB'>{BOOT_KIB}</currentMemory>
  <vcpu>1</vcpu>
  <cpu><numa><cell id='0' cpus='0' memory='{BOOT_KIB}' unit='KiB'/></numa></cpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <kernel>{img.kernel}</kernel>
    <initrd>{img.initrd}</initrd>
    <cmdline>{KERNEL_CMDLINE}</cmdline>
  </os>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>{shutil.which('qemu-system-x86_64')}</emulator>
    <controller type='usb' model='none'/>
    <serial type='file'><source path='{serial}'/><target port='0'/></serial>
    <memballoon model='virtio' freePageReporting='on'><stats period='2'/></memballoon>
    <memory model='virtio-mem'>
      <target>
        <size unit='KiB'>{REGION_KIB}</size>
        <node>0</node>
        <block unit='KiB'>{BLOCK_KIB}</block>
        <requested unit='KiB'>0</requested>
      </target>
    </memory>
  </devices>
</domain>"""


def virtio_mem_policy(size_kib: int) -> str:
    return f'(with Guests vm (vm.Control "mem_requested_size" {size_kib}))\n'


def momd_config(base: Path, uri: str, policy: Path) -> Path:
    sysroot = base / "sys"
    (sysroot / "kernel/mm/ksm").mkdir(parents=True)
    for name, value in (("run", 0), ("pages_to_scan", 100), ("sleep_millisecs", 20)):
        (sysroot / "kernel/mm/ksm" / name).write_text(f"{value}\n")
    conf = base / "mom.conf"
    conf.write_text(f"""[main]
hypervisor-interface: libvirt
libvirt-hypervisor-uri: {uri}
main-loop-interval: 1
host-monitor-interval: 1
guest-monitor-interval: 1
guest-manager-interval: 2
policy-engine-interval: 1
hypervisor-call-timeout: 5
controllers: VirtioMem
policy: {policy}
sys-root: {sysroot}
record-file: {base / 'record.jsonl'}

[logging]
log: stdio
verbosity: info

[host]
collectors: HostMemory

[guest]
collectors: GuestMemory, GuestBalloon, GuestVirtioMem
""")
    return conf


def test_momd_resizes_a_real_guests_virtio_mem_device(world: dict) -> None:
    base: Path = world["base"]
    lvd: Libvirtd = world["lvd"]
    timings: dict[str, float] = {}
    serial = base / "serial.log"
    conn = libvirt.open(lvd.uri)
    dom = conn.defineXML(domain_xml(world["image"], serial))
    dom.create()
    world["guest_pids"].update(lvd.guest_pids())
    timings["guest boot"] = wait_for("guest ready marker on the serial console",
                                     lambda: READY in serial.read_text(errors="replace") and guest_mem(serial),
                                     90, lambda: serial.read_text(errors="replace")[-800:] if serial.exists() else "")
    boot_mem = guest_mem(serial)
    assert boot_mem and "MOMGUEST-INSMOD-FAILED" not in serial.read_text(errors="replace")

    policy = base / "virtio_mem.policy"
    write_policy(policy, virtio_mem_policy(PLUGGED_KIB))
    momd = Momd(momd_config(base, lvd.uri, policy))
    world["started"].append(momd)

    def device() -> Any:
        return parse_domain_xml(dom.XMLDesc(0)).virtio_mem

    def state() -> str:
        alive = "alive" if momd.proc.poll() is None else f"exited {momd.proc.returncode}"
        return f"device {device()}; guest MemTotal {guest_mem(serial)} KiB; momd {alive}; log:\n{momd.log()[-2500:]}"

    def qmp_balloon_kib() -> int:
        reply = libvirt_qemu.qemuMonitorCommand(dom, json.dumps({"execute": "query-balloon"}), 0)
        return int(json.loads(reply)["return"]["actual"]) // 1024

    def recorded() -> list[dict]:
        lines = (base / "record.jsonl").read_text().splitlines(keepends=True) \
            if (base / "record.jsonl").exists() else []
        records = [json.loads(line) for line in lines if line.endswith("\n")]
        return [g["statistics"][-1] for r in records for g in r["guests"] if g["properties"]["name"] == GUEST]

    # -- plug ---------------------------------------------------------------------------------
    t0 = time.monotonic()
    wait_for("libvirt's requested size at the policy's", lambda: device().requested == PLUGGED_KIB, 60, state)
    wait_for("the guest's MemTotal grown by the plugged size",
             lambda: (guest_mem(serial) or 0) >= boot_mem + PLUGGED_KIB - BLOCK_KIB, 30, state)
    timings["momd start to guest MemTotal grown"] = time.monotonic() - t0
    grown_mem = guest_mem(serial)
    # libvirt learns the plugged size from QEMU's (rate-limited) size-change events.
    wait_for("libvirt's current (plugged) size at the request", lambda: device().current == PLUGGED_KIB, 10, state)
    # momd's own view: the plugged size reached its records (the size event dropped the cached XML).
    wait_for("momd's recorded virtio_mem_size at the plugged size",
             lambda: any(s.get("virtio_mem_size") == PLUGGED_KIB for s in recorded()), 30,
             lambda: str(recorded()[-2:]))
    last = recorded()[-1]
    assert (last["virtio_mem_requested"], last["virtio_mem_block"], last["virtio_mem_max"]) == \
        (PLUGGED_KIB, BLOCK_KIB, REGION_KIB)
    assert last["balloon_free_page_reporting"] == 1 and last["hugetlb_pgalloc"] is not None
    # The balloon is the boot memory's, as over QMP and in the simulator (libvirt's own
    # figures count the plugged memory: 786432 of 1048576 KiB here): QEMU's balloon,
    # asked through this libvirtd, agrees; mem_available is the guest's MemTotal,
    # plugged memory included.
    plugged = [s for s in recorded() if s.get("virtio_mem_size") == PLUGGED_KIB]
    assert plugged and all(s["balloon_cur"] <= s["balloon_max"] == BOOT_KIB for s in plugged), plugged[-3:]
    assert dom.info()[1:3] == [BOOT_KIB + REGION_KIB, BOOT_KIB + PLUGGED_KIB]  # what libvirt says itself
    assert plugged[-1]["balloon_cur"] == qmp_balloon_kib() == BOOT_KIB
    wait_for("momd's recorded mem_available at the guest's MemTotal with the plugged memory",
             lambda: recorded()[-1]["mem_available"] == grown_mem, 15, lambda: str(recorded()[-1:]))

    # -- the balloon's target is the boot memory's too ----------------------------------------
    t0 = time.monotonic()
    lv = LibvirtHypervisor(lvd.uri)
    try:
        [guest] = [g for g in lv.list_guests() if g.name == GUEST]
        lv.set_balloon_target(guest, BOOT_KIB - INFLATE_KIB)
        wait_for("QEMU's balloon at the target", lambda: qmp_balloon_kib() == BOOT_KIB - INFLATE_KIB, 15, state)
        wait_for("momd's recorded balloon_cur at the target, the maximum still the boot memory",
                 lambda: (recorded()[-1]["balloon_cur"], recorded()[-1]["balloon_max"],
                          recorded()[-1]["virtio_mem_size"]) == (BOOT_KIB - INFLATE_KIB, BOOT_KIB, PLUGGED_KIB),
                 15, lambda: str(recorded()[-1:]))
        lv.set_balloon_target(guest, BOOT_KIB)
        wait_for("QEMU's balloon back at the boot memory", lambda: qmp_balloon_kib() == BOOT_KIB, 15, state)
    finally:
        lv.close()
    timings["balloon target there and back"] = time.monotonic() - t0

    # -- unplug ----------------------------------------------------------------------------
    write_policy(policy, virtio_mem_policy(0))
    t0 = time.monotonic()
    os.kill(momd.proc.pid, signal.SIGHUP)
    wait_for("libvirt's requested size back at 0", lambda: device().requested == 0, 30, state)
    wait_for("the guest's MemTotal back at its boot size", lambda: (guest_mem(serial) or 0) <= boot_mem, 30, state)
    timings["SIGHUP to guest MemTotal back"] = time.monotonic() - t0
    assert momd.proc.poll() is None

    rc, _ = momd.stop(timeout=10)
    assert rc == 0, momd.log()[-2000:]
    conn.close()
    print("\nvirtio-mem end-to-end timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    print(f"guest MemTotal: {boot_mem} KiB at boot, {grown_mem} KiB with {PLUGGED_KIB} KiB plugged")
