"""The simulator's /proc and /sys tree: rendering kernel file formats and writing them.

Layout under the tree root::

    proc/meminfo  proc/vmstat  proc/cpuinfo  proc/pressure/memory
    proc/PID/{status,stat,comm,cmdline}       one per running guest, plus ksmd
    sys/kernel/mm/ksm/{run,pages_to_scan,sleep_millisecs,merge_across_nodes,
                       pages_shared,pages_sharing,pages_unshared,pages_volatile,full_scans}

Files the simulator owns are replaced atomically (write a temp file, rename).
The four KSM tunables belong to whoever tunes KSM (MOM's KSM controller writes
them in place); the simulator only creates them and reads them back.

A temporary tree (:meth:`ProcTree.temporary`) is ``mom-sim-<pid>-XXXXXXXX``
in the temporary directory, holding a marker file that its owner keeps locked
(flock) for as long as it lives. ``close()`` removes it; a tree whose owner
died without closing (SIGKILL) is removed by the next temporary tree's
creation: its marker is no longer locked. Nothing without the marker is
ever touched.
"""

from __future__ import annotations

import atexit
import errno
import fcntl
import logging
import os
import re
import shutil
import stat
import tempfile
import threading
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from mom.core.errors import MomError

KSM_CONTROLS = ("run", "pages_to_scan", "sleep_millisecs", "merge_across_nodes")
KSM_STATS = ("pages_shared", "pages_sharing", "pages_unshared", "pages_volatile", "full_scans")
KSM_DIR = os.path.join("sys", "kernel", "mm", "ksm")

TEMP_PREFIX = "mom-sim-"
TEMP_NAME = re.compile(r"mom-sim-(\d+)-[A-Za-z0-9_]+")
MARKER = ".mom-sim-owner"
MARKER_TEXT = b"mom simulator tree; removed when no process holds the lock on this file\n"

log = logging.getLogger("mom.sim")


def render_meminfo(values: Mapping[str, int]) -> str:
    """/proc/meminfo format: ``Key:<padding>value kB`` (HugePages_* without unit)."""
    lines = []
    for key, value in values.items():
        unit = "" if key.startswith("HugePages_") else " kB"
        lines.append(f"{key + ':':<16}{int(value):>8}{unit}")
    return "\n".join(lines) + "\n"


def render_vmstat(values: Mapping[str, int]) -> str:
    """/proc/vmstat format: ``key value``."""
    return "".join(f"{k} {int(v)}\n" for k, v in values.items())


def render_pressure(some: tuple[float, float, float, int], full: tuple[float, float, float, int]) -> str:
    """/proc/pressure/memory format (avg10, avg60, avg300 in %, total in µs)."""
    def line(kind: str, v: tuple[float, float, float, int]) -> str:
        return f"{kind} avg10={v[0]:.2f} avg60={v[1]:.2f} avg300={v[2]:.2f} total={int(v[3])}\n"
    return line("some", some) + line("full", full)


def render_cpuinfo(cpus: int) -> str:
    """A minimal x86-style /proc/cpuinfo with one block per CPU."""
    blocks = []
    for n in range(cpus):
        blocks.append(
            f"processor\t: {n}\nvendor_id\t: GenuineIntel\nmodel name\t: MOM simulated CPU\n"
            f"cpu MHz\t\t: 2400.000\nphysical id\t: 0\ncore id\t\t: {n}\ncpu cores\t: {cpus}\n"
        )
    return "\n".join(blocks) + "\n"


def render_pid_stat(pid: int, comm: str, state: str, utime: int, stime: int,
                    vsize_bytes: int, rss_pages: int, minflt: int = 0, majflt: int = 0) -> str:
    """/proc/PID/stat: 52 fields; minflt/majflt (10, 12) counts, utime/stime (14, 15) in clock ticks."""
    fields = [str(pid), f"({comm})", state, "2", "0", "0", "0", "-1", "4194304",
              str(minflt), "0", str(majflt), "0", str(utime), str(stime), "0", "0", "20", "0", "1", "0", "100",
              str(vsize_bytes), str(rss_pages)]
    fields += ["0"] * (52 - len(fields))
    return " ".join(fields) + "\n"


def render_pid_status(pid: int, name: str, vm_size_kib: int, vm_rss_kib: int) -> str:
    """/proc/PID/status with the lines collectors look at."""
    return (f"Name:\t{name}\nState:\tS (sleeping)\nTgid:\t{pid}\nPid:\t{pid}\nPPid:\t1\n"
            f"VmPeak:\t{vm_size_kib:>8} kB\nVmSize:\t{vm_size_kib:>8} kB\n"
            f"VmRSS:\t{vm_rss_kib:>8} kB\nThreads:\t4\n")


class TreeClosed(MomError, OSError):
    """A write to a tree that was closed (its owner is stopping)."""


class ProcTree:
    """A directory holding proc/ and sys/ for the simulator."""

    def __init__(self, root: str, *, _owner_fd: int | None = None) -> None:
        """A tree in ``root`` (created if missing), kept by close(). Raises OSError."""
        self.root = os.path.abspath(root)
        self._owner_fd = _owner_fd  # set for a temporary tree: the locked marker
        # Writers (the model, KSM tuning on the pool's threads) hold this lock, and
        # close() takes it before removing: no write can re-create a file or
        # directory under a removal in progress.
        self._lock = threading.RLock()
        self._closed = False
        os.makedirs(os.path.join(self.root, "proc", "pressure"), exist_ok=True)
        os.makedirs(os.path.join(self.root, KSM_DIR), exist_ok=True)

    @classmethod
    def temporary(cls, base: str | None = None) -> ProcTree:
        """A new tree ``mom-sim-<pid>-XXXXXXXX`` under base (default: the temporary
        directory, $TMPDIR), removed by close() or at exit. First removes the trees
        that dead processes left there. Raises OSError."""
        base = base or tempfile.gettempdir()
        remove_stale_trees(base)
        root = tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-", dir=base)
        try:
            fd = _create_marker(root)
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        try:
            tree = cls(root, _owner_fd=fd)
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            os.close(fd)
            raise
        _OWNED.add(tree)
        return tree

    @property
    def proc_root(self) -> str:
        return os.path.join(self.root, "proc")

    @property
    def sys_root(self) -> str:
        return os.path.join(self.root, "sys")

    def path(self, rel: str) -> str:
        return os.path.join(self.root, rel)

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Hold off close() while writing into the tree; raises TreeClosed once closed."""
        with self._lock:
            if self._closed:
                raise TreeClosed(errno.ENOENT, "the simulator tree is closed", self.root)
            yield

    def write(self, files: Mapping[str, str]) -> None:
        """Replace each file (relative path -> content) atomically; raises OSError."""
        # Every file of the tree is written at each step of the model: the path is
        # joined by hand (os.path.join's result for a relative path) and its
        # directory made only when the file cannot be created without it, rather
        # than a makedirs for every file.
        prefix = os.path.join(self.root, "")
        suffix = f".tmp{os.getpid()}"
        with self.writing():
            for rel, text in files.items():
                path = prefix + rel if not rel.startswith("/") else rel
                tmp = path + suffix
                try:
                    f = open(tmp, "w")
                except FileNotFoundError:
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                    f = open(tmp, "w")
                with f:
                    f.write(text)
                os.replace(tmp, path)

    def remove_dir(self, rel: str) -> None:
        """Delete a directory (a vanished process); missing is fine."""
        shutil.rmtree(self.path(rel), ignore_errors=True)

    def close(self) -> None:
        """Stop all writes; remove the tree if it is temporary. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._owner_fd is None:
                return
            _remove_tree(self.root)
            os.close(self._owner_fd)  # the lock goes with it, after the tree
            self._owner_fd = None
        _OWNED.discard(self)

    def init_ksm_controls(self, values: Mapping[str, int]) -> None:
        """Create the KSM tunable files that do not exist yet (keeps existing ones)."""
        for key in KSM_CONTROLS:
            if not os.path.exists(self.path(os.path.join(KSM_DIR, key))):
                self.write({os.path.join(KSM_DIR, key): f"{int(values[key])}\n"})

    def read_ksm_controls(self) -> dict[str, int]:
        """The KSM tunables as written in the tree; a file that is missing,
        half-written or not a number is left out (the caller keeps its old value)."""
        out: dict[str, int] = {}
        for key in KSM_CONTROLS:
            try:
                with open(self.path(os.path.join(KSM_DIR, key))) as f:
                    out[key] = int(f.read().strip())
            except (OSError, ValueError):
                continue
        return out


# -- temporary trees ---------------------------------------------------------------

_OWNED: weakref.WeakSet[ProcTree] = weakref.WeakSet()


@atexit.register
def _close_owned_trees() -> None:
    """A process that exits without closing its trees (an exception, sys.exit) still removes them."""
    for tree in list(_OWNED):
        tree.close()


def _create_marker(root: str) -> int:
    """Create root's marker, lock it, then fill it in (a reader who sees the text
    also sees the lock). The returned descriptor holds the lock; it survives
    fork (a detaching daemon) but not exec. Raises OSError."""
    fd = os.open(os.path.join(root, MARKER), os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, MARKER_TEXT)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _remove_tree(root: str) -> None:
    """Remove root; retried because a file opened just before the removal
    (a writer outside the lock) can make a directory non-empty once."""
    for _ in range(3):
        shutil.rmtree(root, ignore_errors=True)
        if not os.path.lexists(root):
            return


def remove_stale_trees(base: str) -> list[str]:
    """Remove the temporary trees under base whose owner is gone: named
    mom-sim-<pid>-*, owned by this user, holding the marker, and nobody holding
    the marker's lock. Returns the removed paths; errors are skipped (the
    next start tries again)."""
    removed: list[str] = []
    try:
        names = os.listdir(base)
    except OSError:
        return removed
    for name in names:
        if not TEMP_NAME.fullmatch(name):
            continue
        root = os.path.join(base, name)
        try:
            if _claim_stale(root):
                removed.append(root)
        except OSError:
            continue
    return removed


def _claim_stale(root: str) -> bool:
    """Remove root if it is a dead owner's tree. Raises OSError."""
    st = os.lstat(root)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():  # lstat: a symlink is not a directory
        return False
    try:
        fd = os.open(os.path.join(root, MARKER), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return False  # not ours, or still being created
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # its owner is alive (maybe detached under another pid)
        if os.read(fd, len(MARKER_TEXT) + 1) != MARKER_TEXT:
            return False
        _remove_tree(root)
    finally:
        os.close(fd)
    log.info("removed the simulator tree %s left by a process that is gone", root)
    return True
