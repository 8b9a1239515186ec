"""A private libvirtd for the end-to-end test, started by the test itself (no systemd).

libvirtd runs in its own mount namespace (``unshare -m``) where /etc/libvirt,
/run/libvirt, /var/lib/libvirt, /var/cache/libvirt and /var/log/libvirt are
bind mounts of directories under the test's ``base`` directory. So it reads
the test's own configuration (QEMU as root, no cgroups, no namespaces, no
security driver, stdio to files so no virtlogd), never the host's, and cannot
collide with a system libvirtd or another test's. Its pid file, which a
system-mode libvirtd otherwise takes (and locks) as /run/libvirtd.pid outside
those bind mounts, is ``BASE/libvirtd.pid``. Clients outside the namespace connect with
``qemu+unix:///system?socket=BASE/run/libvirt-sock``; the QEMU pid files are
in ``BASE/run/qemu``.

Every process started here is stopped by its PID: libvirtd by :meth:`stop`,
the guests' QEMU processes (children libvirt leaves running) by
:meth:`kill_guests`.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

QEMU_CONF = """# MOM's end-to-end test: a private libvirtd
user = "root"
group = "root"
dynamic_ownership = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
stdio_handler = "file"
"""
LIBVIRTD_CONF = """# MOM's end-to-end test: a private libvirtd
unix_sock_group = "root"
unix_sock_rw_perms = "0700"
auth_unix_rw = "none"
log_outputs = "3:stderr"
"""
BINDS = {"etc": "/etc/libvirt", "run": "/run/libvirt", "lib": "/var/lib/libvirt",
         "cache": "/var/cache/libvirt", "log": "/var/log/libvirt"}


class LibvirtdError(Exception):
    pass


def unavailable_reason() -> str | None:
    """Why a private libvirtd cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (a system-mode libvirtd with its own mount namespace)"
    for tool in ("libvirtd", "unshare", "mount", "qemu-system-x86_64"):
        if shutil.which(tool) is None and not os.path.exists(f"/usr/sbin/{tool}"):
            return f"{tool} is not installed (./setup.sh --test installs it as root on Debian)"
    if not os.path.exists("/usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_qemu.so") and \
            not any(Path("/usr/lib").glob("*/libvirt/connection-driver/libvirt_driver_qemu.so")):
        return "libvirt's QEMU driver is not installed (libvirt-daemon-driver-qemu)"
    return None


class Libvirtd:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        for key in BINDS:
            (base / key).mkdir(parents=True, exist_ok=True)
        (base / "etc" / "qemu.conf").write_text(QEMU_CONF)
        (base / "etc" / "libvirtd.conf").write_text(LIBVIRTD_CONF)
        (base / "lib" / "qemu").mkdir(exist_ok=True)

    @property
    def socket(self) -> Path:
        return self.base / "run" / "libvirt-sock"

    @property
    def pid_file(self) -> Path:
        return self.base / "libvirtd.pid"

    @property
    def uri(self) -> str:
        return f"qemu+unix:///system?socket={self.socket}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self, timeout: float = 30.0) -> None:
        """Start libvirtd and wait until it answers on its socket."""
        import libvirt

        if self.proc is not None and self.proc.poll() is None:
            raise LibvirtdError("libvirtd is already running")
        for target in BINDS.values():
            os.makedirs(target, exist_ok=True)  # bind targets; empty when libvirt is not configured here
        mounts = "; ".join(f"mount --bind {self.base / key} {target}" for key, target in BINDS.items())
        # Its own pid file: the default one, /run/libvirtd.pid, is shared with (and locked
        # by) any other system-mode libvirtd on the machine.
        script = f"set -e; mount --make-rprivate /; {mounts}; exec libvirtd --pid-file {self.pid_file}"
        self.starts += 1
        log = open(self.base / f"libvirtd-{self.starts}.log", "wb")
        try:
            self.proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                                         stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise LibvirtdError(f"libvirtd exited with status {self.proc.returncode}: {self.log_tail()}")
            if self.socket.exists():
                try:
                    conn = libvirt.open(self.uri)
                    conn.close()
                    return
                except libvirt.libvirtError:
                    pass
            time.sleep(0.1)
        self.stop()
        raise LibvirtdError(f"libvirtd did not answer within {timeout:g} s: {self.log_tail()}")

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = (self.base / f"libvirtd-{self.starts}.log").read_text(errors="replace")
        except OSError:
            return ""
        return " | ".join(text.strip().splitlines()[-lines:])

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM libvirtd by its PID, SIGKILL after ``timeout``. Guests keep running."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def guest_pids(self) -> list[int]:
        pids = []
        for f in (self.base / "run" / "qemu").glob("*.pid"):
            if f.name == "driver.pid":  # libvirtd's own
                continue
            try:
                pids.append(int(f.read_text().split()[0]))
            except (OSError, ValueError, IndexError):
                continue
        return pids

    @staticmethod
    def kill_guests(pids: list[int], timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL, the given QEMU processes (by PID)."""
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        for pid in pids:
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
            else:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
