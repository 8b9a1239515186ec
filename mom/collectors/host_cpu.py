"""HostCpu: the host's CPU count from {proc_root}/cpuinfo.

Fields:

- cpu_count: number of online logical CPUs, counted as the lines that start
  with "processor" and hold a colon (one per CPU on x86, arm64, ppc64le and
  s390x alike).
"""

from __future__ import annotations

from typing import Any

from mom.collectors.base import CollectionError, Collector, GuestSubject, register


@register
class HostCpu(Collector):
    """Number of host CPUs."""

    name = "HostCpu"
    scope = "host"
    mandatory = frozenset({"cpu_count"})

    def collect(self, subject: GuestSubject | None = None) -> dict[str, Any]:
        path = self.proc_path("cpuinfo")
        try:
            with open(path) as f:
                lines = f.read().splitlines()
        except OSError as e:
            raise CollectionError(f"cannot read {path}: {e.strerror}") from None
        count = sum(1 for line in lines if line.startswith("processor") and ":" in line)
        if count == 0:
            raise CollectionError(f"{path}: no processor lines")
        return {"cpu_count": count}
