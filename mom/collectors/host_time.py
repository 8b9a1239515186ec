"""HostTime: the host's time, for time-of-day policies.

Reads ``ctx.clock()`` when the context has one (the daemon's or simulator's
clock, Unix-epoch seconds), else ``time.time()``.

Fields:

- time: seconds since the epoch (float).
- time_year, time_month, time_day, time_hour, time_minute, time_second,
  time_microsecond: that instant in the host's local time zone, as integers
  (month and day count from 1).
"""

from __future__ import annotations

import datetime
import time
from typing import Any

from mom.collectors.base import Collector, GuestSubject, register


@register
class HostTime(Collector):
    """Current time as epoch seconds and local calendar fields."""

    name = "HostTime"
    scope = "host"
    mandatory = frozenset({
        "time", "time_year", "time_month", "time_day", "time_hour",
        "time_minute", "time_second", "time_microsecond",
    })

    def collect(self, subject: GuestSubject | None = None) -> dict[str, Any]:
        now = self.ctx.clock() if self.ctx.clock is not None else time.time()
        local = datetime.datetime.fromtimestamp(now)
        return {
            "time": now,
            "time_year": local.year,
            "time_month": local.month,
            "time_day": local.day,
            "time_hour": local.hour,
            "time_minute": local.minute,
            "time_second": local.second,
            "time_microsecond": local.microsecond,
        }
