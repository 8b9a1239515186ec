"""A guest's disk IO limits: the keys, the one rule for which disk an entry
means, and the one rule for which limit values are accepted.

An io_tune entry (in GuestData.io_tune, the snapshot and the policy) is a map
``{name, path, guaranteed, maximum, current}``; the three limit maps are keyed
by :data:`IO_KEYS` (bytes or operations per second, 0 = unlimited). A control
entry sent to an interface needs only name, path and ``current`` (vdsm calls
it ``ioTune``, which is accepted too). :class:`DiskLimits` is such an entry,
checked: every interface (libvirt, vdsm, the simulator) builds one with
:meth:`DiskLimits.from_entry` and finds its disk with :func:`find_disk`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from mom.core.errors import MomError

IO_KEYS = ("total_bytes_sec", "read_bytes_sec", "write_bytes_sec",
           "total_iops_sec", "read_iops_sec", "write_iops_sec")
DISK_ENTRY_FIELDS = ("name", "path", "guaranteed", "maximum", "current")

Disk = TypeVar("Disk")


class DiskLimitError(MomError, ValueError):
    """An io_tune entry an interface cannot apply (one line, without the guest:
    the interface names it when it raises its own HypervisorError)."""


def io_limit(disk: str, key: Any, value: Any) -> int:
    """One IO limit as every interface applies it. Raises DiskLimitError.

    The rule: a whole number >= 0. A float that is whole (1000.0) is taken as
    that integer, because a policy's arithmetic (``(* 0.5 max)``) yields floats
    that mean exactly that number and refusing them would refuse a correct
    policy. A fraction is refused rather than rounded: libvirt and vdsm take
    integers, and rounding would apply a limit the policy did not ask for.
    Booleans are refused although Python counts them as ints: a limit of
    ``True`` is a policy mistake, not 1. Negative numbers, NaN, infinity and
    anything else (strings included) are refused."""
    if key not in IO_KEYS:
        raise DiskLimitError(f"unknown IO limit {key} of disk {disk} (known: {', '.join(IO_KEYS)})")
    whole = (isinstance(value, int) and not isinstance(value, bool)) or \
        (isinstance(value, float) and math.isfinite(value) and value.is_integer())
    if not whole or value < 0:
        raise DiskLimitError(f"IO limit {key} of disk {disk} must be a whole number >= 0, not {value!r}")
    return int(value)


@dataclass(frozen=True)
class DiskLimits:
    """The limits to set on one disk: which disk (name and/or path) and the
    checked values. A limit given as None is left out (the policy unset it:
    that limit keeps its value)."""

    name: str | None
    path: str | None
    limits: Mapping[str, int]

    @property
    def label(self) -> str:
        return str(self.name if self.name is not None else self.path)

    @classmethod
    def from_entry(cls, entry: Any) -> DiskLimits:
        """Check one control entry ``{name, path, current | ioTune}``. Raises DiskLimitError."""
        values = entry.get("current", entry.get("ioTune")) if isinstance(entry, Mapping) else None
        if not isinstance(values, Mapping):
            raise DiskLimitError(f"IO tune entry without limits: {entry!r}")
        name, path = entry.get("name"), entry.get("path")
        label = str(name if name is not None else path)
        limits = {str(k): io_limit(label, k, v) for k, v in values.items() if v is not None}
        return cls(name=name, path=path, limits=limits)


def find_disk(disks: Iterable[Disk], name: Any, path: Any,
              ident: Callable[[Disk], tuple[Any, Any]]) -> Disk | None:
    """The disk an entry (name, path) means, or None. ``ident`` gives a disk's (name, path).

    The rule: the disk with the entry's path when there is one; else the disk
    with the entry's name. The path is tried first because it names the
    storage itself; the name (the target, vda) is the fall-back because a
    disk's path can change under a running guest (a live snapshot, a storage
    migration) while its target stays, so an entry collected before the
    change still finds its disk."""
    disks = list(disks)
    if path is not None:
        for disk in disks:
            if ident(disk)[1] == path:
                return disk
    if name is not None:
        for disk in disks:
            if ident(disk)[0] == name:
                return disk
    return None


def entry_ident(entry: Any) -> tuple[Any, Any]:
    """(name, path) of an io_tune entry: a map, or an object with name and path."""
    if isinstance(entry, Mapping):
        return entry.get("name"), entry.get("path")
    return getattr(entry, "name", None), getattr(entry, "path", None)
