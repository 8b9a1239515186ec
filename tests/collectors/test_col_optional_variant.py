"""The Optional twins are made by one mechanism (optional_variant): registered
under MOM's names, the strict collector's sections and fields, all optional."""

from __future__ import annotations

import mom.collectors  # noqa: F401  (registers everything)
from mom.collectors.base import REGISTRY, CollectorContext, GuestSubject
from mom.hypervisors.base import GuestData, GuestInfo

TWINS = ("GuestMemory", "GuestBalloon", "GuestCpuTune", "GuestIoTune", "GuestVirtioMem")
INFO = GuestInfo("6f1c0d6e-8a4b-4bb2-9a8e-1d2c3b4a5f60", "web01", 4321)


def test_each_twin_is_its_strict_collector_with_every_field_optional() -> None:
    for strict_name in TWINS:
        strict, twin = REGISTRY[strict_name], REGISTRY[strict_name + "Optional"]
        assert issubclass(twin, strict) and twin.__name__ == twin.name == strict_name + "Optional"
        assert twin.__module__ == strict.__module__  # importable where its strict collector is
        assert twin.mandatory == frozenset() and twin.optional == strict.fields()
        assert (twin.scope, twin.sections, twin.blocking) == (strict.scope, strict.sections, strict.blocking)


def test_no_other_collector_has_a_twin() -> None:
    twins = {name for name in REGISTRY if name.endswith("Optional")}
    assert twins == {name + "Optional" for name in TWINS}


def test_a_twin_gives_nothing_rather_than_an_error() -> None:
    bare = GuestSubject(INFO, GuestData(errors={"memory": "no balloon driver"}))
    for strict_name in TWINS:
        assert REGISTRY[strict_name + "Optional"](CollectorContext()).collect(bare) == {}
        assert REGISTRY[strict_name + "Optional"](CollectorContext()).collect(None) == {}
