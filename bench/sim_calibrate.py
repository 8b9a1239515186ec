"""Calibrate the simulator's balloon driver against a real guest.

    .venv/bin/python bench/sim_calibrate.py [--cache DIR]

Boots a tiny KVM guest (the Debian kernel of the libvirt end-to-end test and a
busybox initramfs, run by qemu-system-x86_64 directly, no libvirt) with
512 MiB of RAM, a 192 MiB swap disk, a working set it reads all the time
(tmpfs), cold memory it wrote once (tmpfs) and a page cache (a disk read
once). Then inflates the balloon over QMP into the page cache, into swap, and
past what the guest can give, and compares balloon reached, swap used and time
to target with the simulator set up the same way. Prints a Markdown table
(the one in doc/sim-model.md). Needs /dev/kvm, qemu-system-x86_64, busybox
and apt-get (the kernel package is downloaded once into --cache).
"""

from __future__ import annotations

import argparse
import gzip
import json
import lzma
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from mom.sim.model import SimModel
from mom.sim.scenario import loads_scenario

MIB = 1024
RAM_MIB, SWAP_MIB, HOT_MIB, COLD_MIB, CACHE_MIB = 512, 192, 96, 160, 120
# TCG, as the libvirt end-to-end test runs its guest: KVM is not usable on every
# build machine (nested). The guest is slower than on KVM; times say so.
ACCEL = os.environ.get("MOM_CALIB_ACCEL", "tcg")
MODULES = ["drivers/virtio/virtio_ring", "drivers/virtio/virtio", "drivers/virtio/virtio_pci_modern_dev",
           "drivers/virtio/virtio_pci_legacy_dev", "drivers/virtio/virtio_pci", "drivers/virtio/virtio_balloon",
           "drivers/block/virtio_blk"]
APPLETS = ["sh", "mount", "insmod", "cat", "awk", "sleep", "echo", "mkswap", "swapon", "dd", "mkdir", "poweroff",
           "grep"]
INIT = f"""#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /lib/modules/order); do insmod /lib/modules/$m.ko || echo "CALIB-INSMOD-FAILED $m"; done
mkswap /dev/vda >/dev/null && swapon /dev/vda
mkdir -p /mem && mount -t tmpfs -o size=95% tmpfs /mem
dd if=/dev/zero of=/mem/cold bs=1M count={COLD_MIB} 2>/dev/null
dd if=/dev/zero of=/mem/hot bs=1M count={HOT_MIB} 2>/dev/null
# Page cache: the last close of a block device drops its cache, so keep it open.
exec 3< /dev/vdb
dd if=/dev/vdb of=/dev/null bs=1M count={CACHE_MIB} 2>/dev/null
# The working set: read over and over, as a busy program touches its memory.
(while true; do cat /mem/hot > /dev/null; done) &
echo CALIB-READY
while true; do
    echo "CALIB-MEM $(awk '/^(MemTotal|MemFree|Buffers|Cached|SwapTotal|SwapFree|Shmem):/{{printf "%s %s ", $1, $2}}' \\
        /proc/meminfo)"
    sleep 0.5
done
"""


def build_image(cache: Path) -> tuple[Path, Path]:
    """vmlinuz and an initramfs with the calibration init, made once in cache."""
    kernel, initrd = cache / "vmlinuz", cache / "calib-initramfs.cpio.gz"
    if kernel.exists() and initrd.exists():
        return kernel, initrd
    cache.mkdir(parents=True, exist_ok=True)
    debs = sorted(cache.glob("linux-image-*.deb"))
    if not debs:
        depends = subprocess.run(["apt-cache", "depends", "linux-image-amd64"],
                                 capture_output=True, text=True, check=True).stdout.splitlines()
        pkg = next(line.split(":", 1)[1].strip() for line in depends
                   if line.strip().startswith("Depends:") and "linux-image-" in line)
        subprocess.run(["apt-get", "download", "-qq", pkg], cwd=cache, check=True)
        debs = sorted(cache.glob("linux-image-*.deb"))
    wanted = {m.rsplit("/", 1)[1]: m for m in MODULES}
    modules: dict[str, bytes] = {}
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(debs[0])], stdout=subprocess.PIPE)
    with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
        for member in tar:
            name = member.name.lstrip("./")
            f = tar.extractfile(member) if member.isfile() else None
            if f is None:
                continue
            if name.startswith("boot/vmlinuz-"):
                kernel.write_bytes(f.read())
            base = os.path.basename(name).split(".ko")[0]
            if "/kernel/drivers/" in name and base in wanted and name.split("/kernel/")[1].startswith(wanted[base]):
                data = f.read()
                modules[base] = lzma.decompress(data) if name.endswith(".xz") else data
    proc.wait()
    entries = [(d, 0o040755, b"") for d in ("bin", "proc", "sys", "dev", "mem", "lib", "lib/modules")]
    entries.append(("bin/busybox", 0o100755, Path("/bin/busybox").read_bytes()))
    entries += [(f"bin/{a}", 0o120777, b"busybox") for a in APPLETS]
    order = [m.rsplit("/", 1)[1] for m in MODULES]
    entries += [(f"lib/modules/{m}.ko", 0o100644, modules[m]) for m in order]
    entries.append(("lib/modules/order", 0o100644, ("\n".join(order) + "\n").encode()))
    entries.append(("init", 0o100755, INIT.encode()))
    initrd.write_bytes(gzip.compress(cpio(entries), compresslevel=1))
    return kernel, initrd


def cpio(entries: list[tuple[str, int, bytes]]) -> bytes:
    """A newc archive of (path, mode, data) entries."""
    out = bytearray()
    for ino, (name, mode, data) in enumerate([*entries, ("TRAILER!!!", 0, b"")], 1):
        nb = name.encode() + b"\0"
        fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(nb), 0]
        out += b"070701" + b"".join(b"%08X" % v for v in fields) + nb
        out += b"\0" * (-(110 + len(nb)) % 4) + data + b"\0" * (-len(data) % 4)
    return bytes(out)


class Guest:
    """A running calibration guest: its serial log and QMP."""

    def __init__(self, kernel: Path, initrd: Path, work: Path) -> None:
        self.serial = work / "serial.log"
        swap, data = work / "swap.img", work / "data.img"
        with open(swap, "wb") as f:
            f.truncate(SWAP_MIB * 1024 * 1024)
        with open(data, "wb") as f:
            f.write(os.urandom(1024 * 1024) * (CACHE_MIB + 8))
        qmp = work / "qmp.sock"
        self.proc = subprocess.Popen([
            "qemu-system-x86_64", "-accel", ACCEL, "-m", str(RAM_MIB), "-smp", "2",
            "-kernel", str(kernel), "-initrd", str(initrd), "-append", "console=ttyS0 quiet panic=-1",
            "-display", "none", "-no-reboot", "-serial", f"file:{self.serial}",
            "-device", "virtio-balloon-pci,id=balloon0",
            "-drive", f"file={swap},if=virtio,format=raw,cache=none",
            "-drive", f"file={data},if=virtio,format=raw,cache=none",
            "-qmp", f"unix:{qmp},server=on,wait=off"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while "CALIB-READY" not in self.log():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"the guest did not come up: {self.log()[-500:]}")
            time.sleep(0.2)
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(str(qmp))
        self.buf = self.sock.makefile("rw")
        self.buf.readline()
        self.cmd("qmp_capabilities")

    def log(self) -> str:
        return self.serial.read_text(errors="replace") if self.serial.exists() else ""

    def cmd(self, name: str, **args: object) -> dict[str, Any]:
        self.buf.write(json.dumps({"execute": name, "arguments": args}) + "\n")
        self.buf.flush()
        while True:
            reply: dict[str, Any] = json.loads(self.buf.readline())
            if "return" in reply or "error" in reply:
                return reply

    def balloon_mib(self) -> float:
        actual: int = self.cmd("query-balloon")["return"]["actual"]
        return actual / 2**20

    def meminfo(self) -> dict[str, int]:
        line = [x for x in self.log().splitlines() if x.startswith("CALIB-MEM") and x.count(":") == 7][-1].split()[1:]
        return {line[i].rstrip(":"): int(line[i + 1]) for i in range(0, len(line) - 1, 2)}

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def inflate(guest: Guest, target_mib: float, limit_s: float = 30.0) -> dict[str, float]:
    """Set the target, follow the balloon until it reaches it, stops moving,
    or the guest dies (its OOM killer found nothing left to kill)."""
    guest.cmd("balloon", value=int(target_mib * 2**20))
    start = time.monotonic()
    last, still_since, died = guest.balloon_mib(), start, False
    while time.monotonic() - start < limit_s:
        time.sleep(0.1)
        try:
            now = guest.balloon_mib()
        except OSError:
            died = True
            break
        if abs(now - target_mib) < 1:
            last, still_since = now, time.monotonic()
            break
        if abs(now - last) > 0.5:
            last, still_since = now, time.monotonic()
        elif time.monotonic() - still_since > 5:
            break
    if not died:
        time.sleep(1.2)  # one more meminfo line from the guest
    info = guest.meminfo()
    log = guest.log()
    return {"reached": last, "seconds": still_since - start, "swap": (info["SwapTotal"] - info["SwapFree"]) / MIB,
            "cache": (info["Buffers"] + info["Cached"] - info["Shmem"]) / MIB,
            "oom": float(log.count("Out of memory: Killed")), "died": float(died or guest.proc.poll() is not None)}


def simulate(target_mib: float, base: dict[str, int]) -> dict[str, float]:
    """The same case in the simulator: its guest set to the real guest's state."""
    sc = loads_scenario(f"""step = 0.1
[host]
memory = 4096
[[guest]]
name = "g"
max = {RAM_MIB}
swap = {SWAP_MIB}
cache_fraction = 0.0
working_set = {HOT_MIB / (HOT_MIB + COLD_MIB):.4f}
workload = {{ type = "steady", level = {HOT_MIB + COLD_MIB} }}
""")
    m = SimModel(sc)
    g = m.guest("g")
    g.cache = (base["Buffers"] + base["Cached"] - base["Shmem"]) * 1.0
    g.free_touched = 0.0
    g.set_balloon_target(target_mib * MIB)
    start, reached_at = m.elapsed, None
    last = g.balloon_cur
    while m.elapsed - start < 30:
        m.advance(0.1)
        if abs(g.balloon_cur - g.balloon_target) < MIB:
            reached_at = m.elapsed
            break
        if g.balloon_cur != last:
            last, reached_at = g.balloon_cur, m.elapsed
    return {"reached": g.balloon_cur / MIB, "seconds": (reached_at or m.elapsed) - start,
            "swap": g.swap_used / MIB, "cache": g.cache / MIB, "oom": float(g.oom_kills), "died": 0.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", default="/var/tmp/mom-sim-calib")
    args = ap.parse_args()
    if not os.access("/dev/kvm", os.R_OK | os.W_OK) or shutil.which("qemu-system-x86_64") is None:
        sys.exit("calibration needs /dev/kvm and qemu-system-x86_64")
    kernel, initrd = build_image(Path(args.cache))
    rows = []
    with tempfile.TemporaryDirectory(prefix="mom-calib-") as tmp:
        for case in ("into page cache", "into swap", "past what it can give"):
            work = Path(tmp) / case.replace(" ", "-")
            work.mkdir()
            guest = Guest(kernel, initrd, work)
            try:
                time.sleep(1.5)
                base = guest.meminfo()
                free = base["MemFree"] / MIB
                cache = (base["Buffers"] + base["Cached"] - base["Shmem"]) / MIB
                target = {"into page cache": RAM_MIB - free - cache / 2,
                          "into swap": RAM_MIB - free - cache - COLD_MIB / 2,
                          "past what it can give": 96.0}[case]
                real = inflate(guest, target)
                sim = simulate(target, base)
                rows.append((case, target, free, cache, real, sim))
            finally:
                guest.close()
    print(f"Guest: {RAM_MIB} MiB RAM, {SWAP_MIB} MiB swap, working set {HOT_MIB} MiB (read all the time), "
          f"cold {COLD_MIB} MiB, page cache {CACHE_MIB} MiB.\n")
    print("| case | target MiB | free / cache before | balloon reached (real / sim) | swap used MiB (real / sim) "
          "| cache left MiB (real / sim) | seconds to target or stall (real / sim) | guest OOM kills (real / sim) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for case, target, free, cache, real, sim in rows:
        print(f"| {case} | {target:.0f} | {free:.0f} / {cache:.0f} | {real['reached']:.0f} / {sim['reached']:.0f} | "
              f"{real['swap']:.0f} / {sim['swap']:.0f} | {real['cache']:.0f} / {sim['cache']:.0f} | "
              f"{real['seconds']:.1f} / {sim['seconds']:.1f} | {real['oom']:.0f}{' (panic)' if real['died'] else ''}"
              f" / {sim['oom']:.0f} |")


if __name__ == "__main__":
    main()
