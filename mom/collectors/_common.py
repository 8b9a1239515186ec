"""Helpers shared by several collectors (not a collector itself)."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from typing import Any, ClassVar

from mom.collectors.base import CollectionError, Collector, GuestSubject


def guest_section(subject: GuestSubject | None, section: str, collector: str) -> Any:
    """Return ``subject.data.<section>``; CollectionError naming the guest when absent."""
    if subject is None:
        raise CollectionError(f"{collector}: needs a guest subject")
    value = getattr(subject.data, section)
    if value is None:
        reason = subject.data.errors.get(section, "the hypervisor returned no data")
        raise CollectionError(
            f"{collector}: no {section} data for guest {subject.info.name} "
            f"({subject.info.uuid}): {reason}"
        )
    return value


def pick(values: dict[str, Any], mandatory: Iterable[str], optional: Iterable[str],
         collector: str, subject: GuestSubject, wanted: AbstractSet[str] | None = None) -> dict[str, Any]:
    """Keep only declared fields; CollectionError listing missing mandatory ones.
    wanted: mandatory and optional together, when the caller has them made already."""
    missing = [k for k in mandatory if values.get(k) is None]
    if missing:
        raise CollectionError(
            f"{collector}: guest {subject.info.name} ({subject.info.uuid}) "
            f"lacks {', '.join(sorted(missing))}"
        )
    if wanted is None:
        wanted = set(mandatory) | set(optional)
    return {k: v for k, v in values.items() if k in wanted and v is not None}


def pick_present(values: dict[str, Any] | None, fields: Iterable[str]) -> dict[str, Any]:
    """Keep the declared fields that are present; never raises."""
    if not values:
        return {}
    wanted = fields if isinstance(fields, (set, frozenset)) else set(fields)
    return {k: v for k, v in values.items() if k in wanted and v is not None}


# A collector class's fields (mandatory | optional), made once per class: the section
# collectors pick from every guest's data at every step.
@functools.cache
def _fields_of(cls: type[Collector]) -> frozenset[str]:
    return cls.fields()


def read_pid_stat(path: str) -> list[str]:
    """Read /proc/PID/stat and return its fields from field 3 (state) on.

    The command name (field 2) may hold spaces and parentheses, so the split
    happens after its last ')'. Index 0 of the result is field 3 of proc(5).
    """
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise CollectionError(f"cannot read {path}: {e.strerror}") from None
    end = text.rfind(")")
    rest = text[end + 1:].split() if end >= 0 else []
    if len(rest) < 22:
        raise CollectionError(f"{path}: malformed stat line {text.strip()[:80]!r}")
    return rest


def stat_field(rest: list[str], number: int, path: str) -> int:
    """Field ``number`` (1-based, as numbered in proc(5)) of a split stat line."""
    try:
        return int(rest[number - 3])
    except (IndexError, ValueError):
        raise CollectionError(f"{path}: bad stat field {number}") from None


class SectionCollector(Collector):
    """Base of the guest collectors that copy fields out of one GuestData section.

    collect() raises CollectionError when the section or a mandatory field is
    missing; collect_present() (the Optional variant's) returns what is there.
    Either returns only the declared fields.
    """

    scope = "guest"
    section: ClassVar[str]

    def collect(self, subject: GuestSubject | None) -> dict[str, Any]:
        values = guest_section(subject, self.section, self.name)
        assert subject is not None
        return pick(values, self.mandatory, self.optional, self.name, subject, _fields_of(type(self)))

    def collect_present(self, subject: GuestSubject | None) -> dict[str, Any]:
        if subject is None:
            return {}
        return pick_present(getattr(subject.data, self.section), _fields_of(type(self)))
