"""The simulator's /proc and /sys tree: rendering kernel file formats and writing them.

Layout under the tree root::

    proc/meminfo  proc/vmstat  proc/cpuinfo  proc/pressure/memory
    proc/PID/{status,stat,comm,cmdline}       one per running guest, plus ksmd
    sys/kernel/mm/ksm/{run,pages_to_scan,sleep_millisecs,merge_across_nodes,
                       pages_shared,pages_sharing,pages_unshared,pages_volatile,full_scans}

Files the simulator owns are replaced atomically (write a temp file, rename).
The four KSM tunables belong to whoever tunes KSM (MOM's KSM controller writes
them in place); the simulator only creates them and reads them back.
"""

from __future__ import annotations

import os
import shutil
from typing import Mapping

KSM_CONTROLS = ("run", "pages_to_scan", "sleep_millisecs", "merge_across_nodes")
KSM_STATS = ("pages_shared", "pages_sharing", "pages_unshared", "pages_volatile", "full_scans")
KSM_DIR = os.path.join("sys", "kernel", "mm", "ksm")


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
                    vsize_bytes: int, rss_pages: int) -> str:
    """/proc/PID/stat: 52 fields; utime/stime (14, 15) in clock ticks."""
    fields = [str(pid), f"({comm})", state, "2", "0", "0", "0", "-1", "4194304",
              "0", "0", "0", "0", str(utime), str(stime), "0", "0", "20", "0", "1", "0", "100",
              str(vsize_bytes), str(rss_pages)]
    fields += ["0"] * (52 - len(fields))
    return " ".join(fields) + "\n"


def render_pid_status(pid: int, name: str, vm_size_kib: int, vm_rss_kib: int) -> str:
    """/proc/PID/status with the lines collectors look at."""
    return (f"Name:\t{name}\nState:\tS (sleeping)\nTgid:\t{pid}\nPid:\t{pid}\nPPid:\t1\n"
            f"VmPeak:\t{vm_size_kib:>8} kB\nVmSize:\t{vm_size_kib:>8} kB\n"
            f"VmRSS:\t{vm_rss_kib:>8} kB\nThreads:\t4\n")


class ProcTree:
    """A directory holding proc/ and sys/ for the simulator."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        os.makedirs(os.path.join(self.root, "proc", "pressure"), exist_ok=True)
        os.makedirs(os.path.join(self.root, KSM_DIR), exist_ok=True)

    @property
    def proc_root(self) -> str:
        return os.path.join(self.root, "proc")

    @property
    def sys_root(self) -> str:
        return os.path.join(self.root, "sys")

    def path(self, rel: str) -> str:
        return os.path.join(self.root, rel)

    def write(self, files: Mapping[str, str]) -> None:
        """Replace each file (relative path -> content) atomically; raises OSError."""
        for rel, text in files.items():
            path = self.path(rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = f"{path}.tmp{os.getpid()}"
            with open(tmp, "w") as f:
                f.write(text)
            os.replace(tmp, path)

    def remove_dir(self, rel: str) -> None:
        """Delete a directory (a vanished process); missing is fine."""
        shutil.rmtree(self.path(rel), ignore_errors=True)

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
