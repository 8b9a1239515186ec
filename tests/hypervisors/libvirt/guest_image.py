"""The tiny guest of the end-to-end tests: a Debian kernel and a busybox initramfs
that loads the virtio-pci, virtio_balloon and virtio_mem modules, then prints its
memory to the serial console every second.

Memory a virtio-mem device plugs is onlined at once (ZONE_MOVABLE, so it can be
unplugged again): the init writes ``online_movable`` to
``/sys/devices/system/memory/auto_online_blocks`` before loading virtio_mem, and
:data:`KERNEL_CMDLINE` says the same with ``memhp_default_state``. The Debian
kernel leaves hot-plugged memory offline by default
(CONFIG_MEMORY_HOTPLUG_DEFAULT_ONLINE is not set), which would leave a virtio-mem
device's memory out of MemTotal.

The kernel is not installed: the package that ``linux-image-amd64`` depends on
is fetched with ``apt-get download`` and only the kernel image and the few
modules the guest needs are unpacked, into a cache directory
(``$MOM_TEST_GUEST_CACHE``, default ``/var/tmp/mom-test-guest``) reused by
later runs. Run as a script to build (or show) the cached image.
"""

from __future__ import annotations

import fnmatch
import gzip
import hashlib
import io
import lzma
import os
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

CACHE = Path(os.environ.get("MOM_TEST_GUEST_CACHE", "/var/tmp/mom-test-guest"))
BUSYBOX = "/bin/busybox"
# insmod order (the initramfs has no modprobe): dependencies first.
MODULES = ["virtio/virtio_ring", "virtio/virtio", "virtio/virtio_pci_modern_dev",
           "virtio/virtio_pci_legacy_dev", "virtio/virtio_pci", "virtio/virtio_balloon", "virtio/virtio_mem"]
APPLETS = ["sh", "mount", "insmod", "cat", "grep", "sleep", "echo", "awk", "uname", "poweroff"]
READY = "MOMGUEST-READY"
MEMLINE = "MOMGUEST-MEM"
# The guest's kernel command line: serial console, exit on panic (with -no-reboot), and
# hot-plugged memory onlined as movable (virtio-mem; the init sets it too).
KERNEL_CMDLINE = "console=ttyS0 panic=-1 quiet memhp_default_state=online_movable"

INIT = f"""#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# virtio-mem's memory is usable only once onlined: online it as it arrives.
echo online_movable > /sys/devices/system/memory/auto_online_blocks 2>/dev/null
for m in $(cat /lib/modules/order); do
    insmod /lib/modules/$m.ko || echo "MOMGUEST-INSMOD-FAILED $m"
done
echo "{READY} $(uname -r)"
while true; do
    echo "{MEMLINE} $(awk '/^MemTotal:/{{t=$2}} /^MemFree:/{{f=$2}} END{{print t, f}}' /proc/meminfo)"
    sleep 1
done
"""


class ImageError(Exception):
    """The guest image cannot be made here (one line)."""


@dataclass
class GuestImage:
    kernel: Path
    initrd: Path
    version: str


# What the initramfs is made of: a cached image made from another recipe is made again.
RECIPE = hashlib.sha256(repr((MODULES, APPLETS, INIT)).encode()).hexdigest()[:16]


def _run(cmd: list[str], cwd: Path | None = None) -> str:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ImageError(f"{' '.join(cmd)}: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")
    return proc.stdout


def kernel_package() -> str:
    """The versioned kernel package linux-image-amd64 depends on (apt-get update when needed)."""
    for attempt in range(2):
        proc = subprocess.run(["apt-cache", "depends", "linux-image-amd64"], capture_output=True, text=True)
        for line in proc.stdout.splitlines():
            line = line.strip()
            if line.startswith("Depends:") and "linux-image-" in line:
                return line.split(":", 1)[1].strip()
        if attempt == 0:
            if os.geteuid() != 0:
                break
            _run(["apt-get", "update", "-qq"])
    raise ImageError("apt-cache knows no linux-image-amd64 (no Debian package lists?)")


def _extract_kernel(deb: Path, dest: Path) -> str:
    """Unpack boot/vmlinuz-* and the guest's modules from the .deb; return the kernel version."""
    wanted_mods = {m.rsplit("/", 1)[1] for m in MODULES}
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    version = ""
    with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
        for member in tar:
            name = member.name.lstrip("./")
            if not member.isfile():
                continue
            if fnmatch.fnmatch(name, "boot/vmlinuz-*"):
                version = name.split("vmlinuz-", 1)[1]
                target = dest / "vmlinuz"
            elif "/kernel/drivers/virtio/" in name and name.startswith(("lib/modules/", "usr/lib/modules/")):
                base = os.path.basename(name)
                mod = base.split(".ko", 1)[0]
                if mod not in wanted_mods:
                    continue
                target = dest / "modules" / base
            else:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            f = tar.extractfile(member)
            assert f is not None
            with open(target, "wb") as out:
                shutil.copyfileobj(f, out)
    if proc.wait() != 0:
        raise ImageError(f"dpkg-deb --fsys-tarfile {deb} failed")
    if not version:
        raise ImageError(f"{deb} holds no boot/vmlinuz-*")
    return version


def _cpio(entries: list[tuple[str, int, bytes]]) -> bytes:
    """A newc cpio archive of (path, mode, data) entries (data of a symlink: its target)."""
    out = io.BytesIO()
    ino = 1

    def add(name: str, mode: int, data: bytes) -> None:
        nonlocal ino
        nb = name.encode() + b"\0"
        fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(nb), 0]
        out.write(b"070701" + b"".join(b"%08X" % v for v in fields) + nb)
        out.write(b"\0" * (-(110 + len(nb)) % 4))
        out.write(data)
        out.write(b"\0" * (-len(data) % 4))
        ino += 1

    for name, mode, data in entries:
        add(name, mode, data)
    add("TRAILER!!!", 0, b"")
    return out.getvalue()


def build_initramfs(modules_dir: Path, out: Path) -> None:
    if not os.path.exists(BUSYBOX):
        raise ImageError(f"{BUSYBOX} is missing (Debian package busybox-static)")
    entries: list[tuple[str, int, bytes]] = []
    for d in ("bin", "proc", "sys", "dev", "tmp", "lib", "lib/modules"):
        entries.append((d, 0o040755, b""))
    entries.append(("bin/busybox", 0o100755, Path(BUSYBOX).read_bytes()))
    for applet in APPLETS:
        entries.append((f"bin/{applet}", 0o120777, b"busybox"))
    order = []
    for m in MODULES:
        mod = m.rsplit("/", 1)[1]
        plain, packed = modules_dir / f"{mod}.ko", modules_dir / f"{mod}.ko.xz"
        if plain.exists():
            data = plain.read_bytes()
        elif packed.exists():
            data = lzma.decompress(packed.read_bytes())
        else:
            raise ImageError(f"the kernel package has no {mod} module")
        entries.append((f"lib/modules/{mod}.ko", 0o100644, data))
        order.append(mod)
    entries.append(("lib/modules/order", 0o100644, ("\n".join(order) + "\n").encode()))
    entries.append(("init", 0o100755, INIT.encode()))
    tmp = out.with_suffix(".tmp")
    tmp.write_bytes(gzip.compress(_cpio(entries), compresslevel=1))
    tmp.replace(out)


def _has_modules(modules_dir: Path) -> bool:
    names = (m.rsplit("/", 1)[1] for m in MODULES)
    return all((modules_dir / f"{n}.ko").exists() or (modules_dir / f"{n}.ko.xz").exists() for n in names)


def _fetch_kernel(cache: Path, pkg: str) -> None:
    """Download the kernel package and unpack the kernel and modules into cache/pkg."""
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise ImageError(f"{tool} is not available")
    root = cache / pkg
    work = cache / f"{pkg}.partial"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    _run(["apt-get", "download", "-qq", pkg], cwd=work)
    debs = sorted(work.glob("*.deb"))
    if not debs:
        raise ImageError(f"apt-get download {pkg} left no .deb")
    version = _extract_kernel(debs[0], work)
    debs[0].unlink()
    build_initramfs(work / "modules", work / "initramfs.cpio.gz")
    (work / "version").write_text(version + "\n")
    (work / "recipe").write_text(RECIPE + "\n")
    shutil.rmtree(root, ignore_errors=True)
    work.rename(root)


def guest_image(cache: Path = CACHE) -> GuestImage:
    """The cached kernel and initramfs, made first when needed. Raises ImageError.

    An image cached by an older recipe (fewer modules, another init) gets a new
    initramfs; the kernel package is fetched again only when a module is missing."""
    pkg = kernel_package()
    root = cache / pkg
    kernel, initrd, stamp, recipe = root / "vmlinuz", root / "initramfs.cpio.gz", root / "version", root / "recipe"
    if not (kernel.exists() and initrd.exists() and stamp.exists() and _has_modules(root / "modules")):
        _fetch_kernel(cache, pkg)
    if not recipe.exists() or recipe.read_text().strip() != RECIPE:
        build_initramfs(root / "modules", initrd)
        recipe.write_text(RECIPE + "\n")
    # QEMU may run as an unprivileged user: everything on the way must be readable.
    for p in (cache, root):
        p.chmod(0o755)
    for p in (kernel, initrd):
        p.chmod(0o644)
    return GuestImage(kernel, initrd, stamp.read_text().strip())


if __name__ == "__main__":
    try:
        img = guest_image()
    except ImageError as e:
        sys.exit(f"guest image: {e}")
    print(f"kernel {img.kernel} ({img.version})\ninitrd {img.initrd} ({img.initrd.stat().st_size} bytes)")
