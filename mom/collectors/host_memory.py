"""HostMemory: host memory and swap figures from {proc_root}/meminfo and /vmstat.

Fields (memory in KiB, swap traffic in pages):

- mem_available: total usable RAM (meminfo MemTotal). The name is MOM's
  historical one; it is not the kernel's MemAvailable.
- mem_unused: memory not used for anything (MemFree).
- mem_free: free memory counting the page cache as free
  (MemFree + Buffers + Cached).
- anon_pages: memory in anonymous mappings (AnonPages).
- swap_total: swap space (SwapTotal).
- swap_usage: swap space in use (SwapTotal - SwapFree).
- swap_in, swap_out: pages swapped in/out since the previous collection
  (vmstat pswpin/pswpout deltas, not rates); 0 on the first collection.
- mem_available_kernel (optional): the kernel's own estimate of memory
  available for new work without swapping (MemAvailable, Linux >= 3.14).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mom.collectors.base import (
    CollectionError,
    Collector,
    CollectorContext,
    GuestSubject,
    read_key_value_file,
    register,
)


def _need(values: dict[str, int], key: str, path: str) -> int:
    try:
        return values[key]
    except KeyError:
        raise CollectionError(f"{path}: no {key} line") from None


@register
class HostMemory(Collector):
    """Host memory, swap usage and swap traffic."""

    name = "HostMemory"
    scope = "host"
    mandatory = frozenset({
        "mem_available", "mem_unused", "mem_free", "anon_pages",
        "swap_in", "swap_out", "swap_total", "swap_usage",
    })
    optional = frozenset({"mem_available_kernel"})

    def __init__(self, ctx: CollectorContext, settings: Mapping[str, str] | None = None) -> None:
        super().__init__(ctx, settings)
        self._prev_swap: tuple[int, int] | None = None

    def collect(self, subject: GuestSubject | None = None) -> dict[str, Any]:
        meminfo_path = self.proc_path("meminfo")
        vmstat_path = self.proc_path("vmstat")
        meminfo = read_key_value_file(meminfo_path)
        vmstat = read_key_value_file(vmstat_path)

        total, unused, buffers, cached, anon, swap_total, swap_free = (
            _need(meminfo, key, meminfo_path)
            for key in ("MemTotal", "MemFree", "Buffers", "Cached", "AnonPages",
                        "SwapTotal", "SwapFree")
        )
        swapped = (_need(vmstat, "pswpin", vmstat_path), _need(vmstat, "pswpout", vmstat_path))

        prev = self._prev_swap if self._prev_swap is not None else swapped
        self._prev_swap = swapped
        data: dict[str, Any] = {
            "mem_available": total,
            "mem_unused": unused,
            "mem_free": unused + buffers + cached,
            "anon_pages": anon,
            "swap_total": swap_total,
            "swap_usage": swap_total - swap_free,
            # Counters only go back on a counter reset (or a swapped fixture
            # tree); report no traffic rather than a negative amount.
            "swap_in": max(0, swapped[0] - prev[0]),
            "swap_out": max(0, swapped[1] - prev[1]),
        }
        if "MemAvailable" in meminfo:
            data["mem_available_kernel"] = meminfo["MemAvailable"]
        return data
