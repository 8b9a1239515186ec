"""GuestIoTune: a guest's disk IO limits and their policy bounds.

Reads the "io_tune" section of the tick's GuestData; raises CollectionError when
it is missing or an entry lacks a key.

Fields:

- io_tune: list with one dict per disk, {name, path, guaranteed, maximum,
  current}; the last three map mom.core.disks.IO_KEYS (total/read/write_bytes_sec,
  total/read/write_iops_sec) to numbers (bytes or operations per second,
  0 = unlimited). The dicts are deep copies, so the policy may change
  ``current`` in place to ask for new limits.
- io_tune_current: list of {name, path, current} per disk: a separate deep
  copy of the limits in force when collected, to compare the policy's wishes
  against.
"""

from __future__ import annotations

import copy
from typing import Any

from mom.collectors._common import guest_section
from mom.collectors.base import CollectionError, Collector, GuestSubject, optional_variant, register
from mom.core.disks import DISK_ENTRY_FIELDS

IO_TUNE_FIELDS = frozenset({"io_tune", "io_tune_current"})
ENTRY_KEYS = DISK_ENTRY_FIELDS


def io_tune_fields(entries: Any, where: str) -> dict[str, Any]:
    """Build io_tune and io_tune_current from the section's entries."""
    if not isinstance(entries, list):
        raise CollectionError(f"{where}: io_tune is not a list")
    tunes: list[dict[str, Any]] = []
    current: list[dict[str, Any]] = []
    for index, entry in enumerate(entries):
        missing = [k for k in ENTRY_KEYS if not isinstance(entry, dict) or k not in entry]
        if missing:
            raise CollectionError(f"{where}: io_tune entry {index} lacks {', '.join(missing)}")
        tunes.append({k: copy.deepcopy(entry[k]) for k in ENTRY_KEYS})
        current.append({
            "name": entry["name"],
            "path": entry["path"],
            "current": copy.deepcopy(entry["current"]),
        })
    return {"io_tune": tunes, "io_tune_current": current}


@register
class GuestIoTune(Collector):
    """Guest IO tuning; the guest is skipped when it is missing."""

    name = "GuestIoTune"
    scope = "guest"
    sections = frozenset({"io_tune"})
    mandatory = IO_TUNE_FIELDS

    def collect(self, subject: GuestSubject | None) -> dict[str, Any]:
        entries = guest_section(subject, "io_tune", self.name)
        assert subject is not None
        return io_tune_fields(entries, f"{self.name}: guest {subject.info.name} ({subject.info.uuid})")

    def collect_present(self, subject: GuestSubject | None) -> dict[str, Any]:
        # Both fields or neither: no section, or an entry lacking a key, is no fields.
        if subject is None or subject.data.io_tune is None:
            return {}
        try:
            return io_tune_fields(subject.data.io_tune, self.name)
        except CollectionError:
            return {}


# MOM's GuestIoTuneOptional: both fields optional; no fields when the guest has no usable IO tune data.
GuestIoTuneOptional = optional_variant(GuestIoTune)
