"""HostPressure: memory pressure stall information (PSI) from {proc_root}/pressure/memory.

Needs a kernel with PSI (Linux >= 4.20, CONFIG_PSI, not booted with psi=0).
"some" is the share of time at least one task stalled waiting for memory
(reclaim, swap-in, thrashing); "full" the share of time all non-idle tasks
stalled at once, so the host did no useful work.

Fields:

- mem_pressure_some_avg10, mem_pressure_some_avg60, mem_pressure_some_avg300:
  "some" stall time in percent, averaged over the last 10 s, 60 s, 300 s.
- mem_pressure_some_total: cumulative "some" stall time since boot (µs).
- mem_pressure_full_avg10, mem_pressure_full_avg60, mem_pressure_full_avg300,
  mem_pressure_full_total: the same for "full".
"""

from __future__ import annotations

from typing import Any

from mom.collectors.base import CollectionError, Collector, GuestSubject, register

_KINDS = ("some", "full")
_KEYS = ("avg10", "avg60", "avg300", "total")


@register
class HostPressure(Collector):
    """Memory pressure (PSI) averages and totals."""

    name = "HostPressure"
    scope = "host"
    mandatory = frozenset(f"mem_pressure_{k}_{key}" for k in _KINDS for key in _KEYS)

    def collect(self, subject: GuestSubject | None = None) -> dict[str, Any]:
        path = self.proc_path("pressure", "memory")
        try:
            with open(path) as f:
                text = f.read()
        except OSError as e:
            raise CollectionError(
                f"cannot read {path}: {e.strerror} "
                "(memory pressure needs a kernel with PSI enabled)"
            ) from None
        data: dict[str, Any] = {}
        for lineno, line in enumerate(text.splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            kind = parts[0]
            if kind not in _KINDS:
                raise CollectionError(f"{path}:{lineno}: unexpected line {line.strip()!r}")
            for item in parts[1:]:
                key, sep, value = item.partition("=")
                if not sep or key not in _KEYS:
                    continue  # tolerate keys a later kernel may add
                try:
                    data[f"mem_pressure_{kind}_{key}"] = int(value) if key == "total" else float(value)
                except ValueError:
                    raise CollectionError(f"{path}:{lineno}: not a number: {item!r}") from None
        missing = sorted(self.mandatory - data.keys())
        if missing:
            raise CollectionError(f"{path}: missing {', '.join(missing)}")
        return data
