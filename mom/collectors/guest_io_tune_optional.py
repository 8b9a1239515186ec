"""GuestIoTuneOptional: the GuestIoTune fields, both optional.

Same source and meanings as :mod:`mom.collectors.guest_io_tune`; returns no
fields (never raises) when the guest has no usable IO tune data.
"""

from __future__ import annotations

from typing import Any

from mom.collectors.base import CollectionError, Collector, GuestSubject, register
from mom.collectors.guest_io_tune import IO_TUNE_FIELDS, io_tune_fields


@register
class GuestIoTuneOptional(Collector):
    """Guest IO tuning when available."""

    name = "GuestIoTuneOptional"
    scope = "guest"
    sections = frozenset({"io_tune"})
    optional = IO_TUNE_FIELDS

    def collect(self, subject: GuestSubject | None) -> dict[str, Any]:
        if subject is None or subject.data.io_tune is None:
            return {}
        try:
            return io_tune_fields(subject.data.io_tune, self.name)
        except CollectionError:
            return {}
