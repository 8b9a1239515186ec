"""GuestQemuProc: host-side statistics of a guest's QEMU process.

Reads {proc_root}/PID/stat for the guest's pid (``subject.info.pid``); raises
CollectionError when the guest has no known pid or the file cannot be read.

Fields:

- host_minor_faults: minor page faults the QEMU process caused on the host
  since the previous collection (0 the first time).
- host_major_faults: the same for major faults, which usually need host
  disk IO (swap or file reads) to be satisfied.
- rss: the QEMU process's resident set size (pages).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mom.collectors._common import read_pid_stat, stat_field
from mom.collectors.base import CollectionError, Collector, CollectorContext, GuestSubject, register


@register
class GuestQemuProc(Collector):
    """Host page faults and resident size of a guest's QEMU process."""

    name = "GuestQemuProc"
    scope = "guest"
    mandatory = frozenset({"host_minor_faults", "host_major_faults", "rss"})

    def __init__(self, ctx: CollectorContext, settings: Mapping[str, str] | None = None) -> None:
        super().__init__(ctx, settings)
        # uuid -> (pid, minor faults, major faults) at the previous collection;
        # the pid is kept so that a restarted guest starts from zero again.
        self._prev: dict[str, tuple[int, int, int]] = {}

    def collect(self, subject: GuestSubject | None) -> dict[str, Any]:
        if subject is None:
            raise CollectionError(f"{self.name}: needs a guest subject")
        info = subject.info
        if info.pid is None:
            raise CollectionError(f"{self.name}: guest {info.name} ({info.uuid}) has no known QEMU pid")
        path = self.proc_path(str(info.pid), "stat")
        rest = read_pid_stat(path)
        minor = stat_field(rest, 10, path)
        major = stat_field(rest, 12, path)
        rss = stat_field(rest, 24, path)
        prev = self._prev.get(info.uuid)
        self._prev[info.uuid] = (info.pid, minor, major)
        if prev is None or prev[0] != info.pid:
            prev = (info.pid, minor, major)
        return {
            "host_minor_faults": max(0, minor - prev[1]),
            "host_major_faults": max(0, major - prev[2]),
            "rss": rss,
        }

    def forget(self, uuid: str) -> None:
        """Drop the remembered counters of a guest that went away."""
        self._prev.pop(uuid, None)
