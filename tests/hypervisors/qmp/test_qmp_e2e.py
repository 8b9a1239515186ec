"""End to end: momd on the ``qmp`` interface manages a real QEMU guest (TCG) started by
the test, without libvirt, and survives the QEMU being killed and started again.

The guest (tests/hypervisors/libvirt/guest_image.py: a Debian kernel and a busybox
initramfs with virtio_balloon and virtio_mem, hot-plugged memory onlined as it
arrives) has a balloon with free page reporting and a 1 GiB virtio-mem region
with 2 MiB blocks. QEMU gets two QMP sockets: one in the directory momd's
``qmp-socket-glob`` covers, one for the test's own look (a QMP socket serves one
client at a time). momd runs as a subprocess with a policy rewritten (and
SIGHUP) per phase: the balloon shrinks and grows back, the virtio-mem device
grows and shrinks, and each time the guest's own MemTotal (printed on its
serial console) follows. Then QEMU is killed (SIGKILL: its socket file stays)
and started again on the same socket; momd connects again and applies the
policy to the new QEMU. Every process is stopped by its PID.

Timings of each phase are printed (pytest -s).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.hypervisors.libvirt.guest_image import KERNEL_CMDLINE, MEMLINE, READY, GuestImage, ImageError, guest_image
from tests.support.momd import Momd
from tests.support.wait import wait_until

QEMU = shutil.which("qemu-system-x86_64")
pytestmark = pytest.mark.skipif(QEMU is None, reason="qemu-system-x86_64 is not installed (./setup.sh --test)")

GUEST = "momqmp"
GUEST_UUID = "3f1e6c52-8d0b-4e8e-b7a4-5c1c2d3e4f50"
MIB = 1024 * 1024
BASE_KIB = 512 * 1024
SHRUNK_KIB = 256 * 1024
VMEM_KIB = 256 * 1024
AFTER_RESTART_KIB = 384 * 1024


def qemu_command(img: GuestImage, momd_socket: Path, test_socket: Path, serial: Path) -> list[str]:
    assert QEMU is not None
    return [QEMU, "-accel", "tcg", "-machine", "q35", "-m", "512M,maxmem=2G,slots=1", "-smp", "1",
            "-name", GUEST, "-uuid", GUEST_UUID, "-nodefaults", "-display", "none", "-no-reboot",
            "-kernel", str(img.kernel), "-initrd", str(img.initrd), "-append", KERNEL_CMDLINE,
            "-serial", f"file:{serial}",
            "-device", "virtio-balloon-pci,id=balloon0,free-page-reporting=on",
            "-object", "memory-backend-ram,id=vmem0,size=1G",
            "-device", "virtio-mem-pci,id=vmem0dev,memdev=vmem0,block-size=2M,requested-size=0",
            "-qmp", f"unix:{momd_socket},server=on,wait=off",
            "-qmp", f"unix:{test_socket},server=on,wait=off"]


def guest_mem(serial: Path) -> int | None:
    """The guest's latest MemTotal (KiB) from its serial console."""
    try:
        text = serial.read_text(errors="replace")
    except OSError:
        return None
    found = re.findall(rf"^{MEMLINE} (\d+) (\d+)", text, re.M)
    return int(found[-1][0]) if found else None


def qmp(socket_path: Path, cmd: str, args: dict[str, Any] | None = None) -> Any:
    """One command on the test's own QMP socket (a fresh connection each time)."""
    from qemu.qmp import QMPClient

    async def run() -> Any:
        client = QMPClient("test")
        await asyncio.wait_for(client.connect(str(socket_path)), 5)
        try:
            return await asyncio.wait_for(client.execute(cmd, args), 5)
        finally:
            await client.disconnect()

    return asyncio.run(run())


class Qemu:
    """The test's QEMU process, started and killed by PID."""

    def __init__(self, cmd: list[str], serial: Path) -> None:
        self.cmd, self.serial = cmd, serial
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.serial.unlink(missing_ok=True)
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()  # a restart makes a new process and pipe

    def wait_ready(self) -> float:
        t0 = time.monotonic()

        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                pytest.fail(f"QEMU exited {self.proc.returncode}: {err[-1000:]}")
            text = self.serial.read_text(errors="replace") if self.serial.exists() else ""
            return READY in text and guest_mem(self.serial) is not None

        wait_until(ready, 120, 0.2, what="the guest's ready marker on its serial console",
                   detail=lambda: self.serial.read_text(errors="replace")[-800:] if self.serial.exists() else "")
        return time.monotonic() - t0


@pytest.fixture(scope="module")
def image() -> GuestImage:
    try:
        return guest_image()
    except ImageError as e:
        pytest.skip(f"end-to-end qmp test: no guest image: {e}")


@pytest.fixture
def world(image: GuestImage) -> Iterator[dict[str, Any]]:
    # Short paths (a unix socket's path is at most 107 bytes), under /var/tmp.
    base = Path(tempfile.mkdtemp(prefix="mom-qmp-e2e-", dir="/var/tmp"))
    (base / "sockets").mkdir()
    started: list[Any] = []
    try:
        yield {"base": base, "image": image, "started": started}
    finally:
        for thing in reversed(started):
            if isinstance(thing, Qemu):
                thing.kill()
            else:
                thing.close()
        if os.environ.get("MOM_KEEP_E2E"):
            print(f"\nkept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


def write_policy(path: Path, balloon: str, virtio_mem: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f'(with Guests vm (vm.Control "balloon_target" {balloon}))\n'
                   f'(with Guests vm (vm.Control "mem_requested_size" {virtio_mem}))\n')
    tmp.replace(path)


def test_momd_on_qmp_balloons_and_resizes_virtio_mem_and_survives_a_qemu_restart(world: dict[str, Any]) -> None:
    base: Path = world["base"]
    timings: dict[str, float] = {}
    momd_socket, test_socket, serial = base / "sockets" / "g1.qmp", base / "test.qmp", base / "serial.log"
    qemu = Qemu(qemu_command(world["image"], momd_socket, test_socket, serial), serial)
    world["started"].append(qemu)
    qemu.start()
    timings["guest boot"] = qemu.wait_ready()
    full_mem = guest_mem(serial)
    assert full_mem and full_mem > 350000, full_mem

    # -- momd -------------------------------------------------------------------------------
    sysroot = base / "sys"
    (sysroot / "kernel/mm/ksm").mkdir(parents=True)
    policy = base / "e2e.policy"
    write_policy(policy, str(SHRUNK_KIB), "0")
    record = base / "record.jsonl"
    conf = base / "mom.conf"
    conf.write_text(f"""[main]
hypervisor-interface: qmp
qmp-socket-glob: {base / 'sockets' / '*.qmp'}
main-loop-interval: 1
host-monitor-interval: 1
guest-monitor-interval: 1
guest-manager-interval: 1
policy-engine-interval: 1
hypervisor-call-timeout: 6
controllers: Balloon, VirtioMem
policy: {policy}
sys-root: {sysroot}
record-file: {record}

[logging]
log: stdio
verbosity: info

[host]
collectors: HostMemory

[guest]
collectors: GuestQemuProc, GuestMemory, GuestBalloon, GuestVirtioMemOptional
""")
    momd = Momd(conf)
    world["started"].append(momd)

    def balloon_kib() -> int | None:
        try:
            return int(qmp(test_socket, "query-balloon")["actual"]) // 1024
        except Exception:  # noqa: BLE001 - QEMU is restarting: not yet
            return None

    def vmem_kib() -> int | None:
        try:
            return int(qmp(test_socket, "query-memory-devices")[0]["data"]["size"]) // 1024
        except Exception:  # noqa: BLE001
            return None

    def state() -> str:
        alive = "alive" if momd.alive() else f"exited {momd.proc.returncode}"
        return (f"balloon {balloon_kib()} KiB, virtio-mem {vmem_kib()} KiB, guest MemTotal {guest_mem(serial)} "
                f"KiB; momd {alive}; log tail:\n{momd.log()[-2500:]}")

    def phase(name: str, done: Callable[[], bool], timeout: float = 60) -> None:
        t0 = time.monotonic()
        wait_until(done, timeout, 0.3, what=name, detail=state)
        timings[name] = time.monotonic() - t0

    def recorded() -> list[dict[str, Any]]:
        lines = record.read_text().splitlines(keepends=True) if record.exists() else []
        records = [json.loads(line) for line in lines if line.endswith("\n")]
        return [g["statistics"][-1] for r in records for g in r["guests"] if g["properties"]["name"] == GUEST]

    # -- balloon: shrink, then grow back ------------------------------------------------------
    phase("balloon shrunk (QEMU's actual at the target)", lambda: balloon_kib() == SHRUNK_KIB)
    phase("guest MemTotal fallen", lambda: (guest_mem(serial) or full_mem) < full_mem - 200000)
    log = momd.log()
    found = re.search(rf"guest {GUEST} \({GUEST_UUID}\) found, pid (\d+)", log)
    assert found and qemu.proc is not None and int(found.group(1)) == qemu.proc.pid, log[-2000:]
    wait_until(lambda: any(s.get("mem_available", full_mem) < full_mem - 200000 for s in recorded()), 30, 0.3,
               what="momd's recorded mem_available falling", detail=lambda: str(recorded()[-2:]))
    last = recorded()[-1]
    assert last["balloon_free_page_reporting"] == 1 and last["balloon_max"] == BASE_KIB, last
    assert last["virtio_mem_max"] == 1024 * 1024 and last["virtio_mem_block"] == 2048, last

    write_policy(policy, "vm.balloon_max", "0")
    momd.send(signal.SIGHUP)
    phase("balloon grown back", lambda: balloon_kib() == BASE_KIB)
    phase("guest MemTotal back up", lambda: (guest_mem(serial) or 0) > full_mem - 20000)

    # -- virtio-mem: grow, then shrink --------------------------------------------------------
    write_policy(policy, "vm.balloon_max", str(VMEM_KIB))
    momd.send(signal.SIGHUP)
    phase("virtio-mem grown (plugged size at the request)", lambda: vmem_kib() == VMEM_KIB)
    phase("guest MemTotal grown by the plugged memory", lambda: (guest_mem(serial) or 0) > full_mem + 200000)
    wait_until(lambda: any(s.get("virtio_mem_size") == VMEM_KIB for s in recorded()), 30, 0.3,
               what="momd's recorded virtio_mem_size", detail=lambda: str(recorded()[-2:]))
    # The balloon is the boot memory's, the plugged memory apart, as over libvirt and in
    # the simulator; mem_available is the guest's MemTotal, plugged memory included.
    plugged = [s for s in recorded() if s.get("virtio_mem_size") == VMEM_KIB]
    assert all(s["balloon_cur"] <= s["balloon_max"] == BASE_KIB for s in plugged), plugged[-3:]
    assert plugged[-1]["balloon_cur"] == balloon_kib() == BASE_KIB, plugged[-1]
    wait_until(lambda: recorded()[-1]["mem_available"] > full_mem + 200000, 30, 0.3,
               what="momd's recorded mem_available with the plugged memory", detail=lambda: str(recorded()[-1:]))
    write_policy(policy, "vm.balloon_max", "0")
    momd.send(signal.SIGHUP)
    phase("virtio-mem shrunk (unplugged)", lambda: vmem_kib() == 0)
    phase("guest MemTotal back down", lambda: (guest_mem(serial) or 10**9) < full_mem + 20000)

    # -- QEMU killed, then started again on the same socket -----------------------------------
    write_policy(policy, str(AFTER_RESTART_KIB), "0")
    momd.send(signal.SIGHUP)
    phase("balloon at the next target before the restart", lambda: balloon_kib() == AFTER_RESTART_KIB)
    old_pid = qemu.proc.pid
    t0 = time.monotonic()
    qemu.kill()
    assert momd_socket.exists()  # SIGKILL leaves the socket file: connecting to it is refused
    phase("momd noticing the QEMU gone", lambda: "is gone" in momd.log()[len(log):], 30)
    time.sleep(2)  # a few refused attempts meanwhile: one warning, not one per attempt
    assert momd.alive()
    qemu.start()
    timings["guest boot (restart)"] = qemu.wait_ready()
    phase("momd connected again", lambda: "connected again" in momd.log()[len(log):], 60)
    phase("the restarted QEMU's balloon at the policy's target", lambda: balloon_kib() == AFTER_RESTART_KIB)
    timings["QEMU killed to the restarted guest managed"] = time.monotonic() - t0
    after = momd.log()[len(log):]
    assert qemu.proc.pid != old_pid and re.search(rf"pid {qemu.proc.pid}\b", after), after[-2000:]
    assert after.count("Connection refused") <= 1, after[-2000:]
    assert momd.alive() and "Traceback" not in momd.log()
    print("\n" + "\n".join(f"  {name}: {seconds:.1f} s" for name, seconds in timings.items()))
