"""Helpers shared by the policy engine tests: compile and run small policies."""

from __future__ import annotations

from typing import Any

import pytest

from mom.policy.errors import PolicyError, Source
from mom.policy.policy import CompiledPolicy, compile_policy
from mom.policy.runtime import Entity
from mom.policy.snapshot import EntityData, Snapshot
from mom.policy.validate import PolicyChecks

NAME = "t.policy"


def compiled(text: str, **limits: int) -> CompiledPolicy:
    return compile_policy([Source(NAME, text)], **limits)


def ev(text: str, host: Entity | None = None, guests: list[Entity] | None = None, **limits: int) -> list[Any]:
    """The values of every top-level expression of ``text``."""
    return compiled(text, **limits).evaluate(host, guests)


def ev1(text: str, host: Entity | None = None, guests: list[Entity] | None = None, **limits: int) -> Any:
    """The value of the last top-level expression of ``text``."""
    return ev(text, host, guests, **limits)[-1]


def err(text: str, host: Entity | None = None, guests: list[Entity] | None = None, **limits: int) -> PolicyError:
    """The PolicyError that compiling or evaluating ``text`` raises."""
    with pytest.raises(PolicyError) as info:
        compiled(text, **limits).evaluate(host, guests)
    return info.value


def where(e: PolicyError) -> tuple[str, int, int]:
    assert e.pos is not None, f"error without a position: {e!r}"
    return e.pos.source.name, e.pos.line, e.pos.col


def same(value: Any, expected: Any) -> bool:
    """Equal and of the same type (1 == 1.0 == True is not enough here)."""
    return type(value) is type(expected) and value == expected


def host(rows: list[dict[str, Any]] | None = None, props: dict[str, Any] | None = None,
         variables: dict[str, Any] | None = None) -> Entity:
    return Entity("Host", props if props is not None else {"name": "host"}, rows or [], variables)


def guest(name: str, rows: list[dict[str, Any]] | None = None, **props: Any) -> Entity:
    return Entity("Guest", {"name": name, **props}, rows or [])


def snapshot(host_rows: list[dict[str, Any]] | None = None,
             guests: dict[str, list[dict[str, Any]]] | None = None) -> Snapshot:
    return Snapshot(EntityData({"name": "host"}, host_rows or [{"mem_free": 1}]),
                    [EntityData({"name": n}, rows) for n, rows in (guests or {}).items()])


def registry_checks(controllers: list[str] | None = None, collectors: list[str] | None = None,
                    **kwargs: Any) -> PolicyChecks:
    """Checks from the real collector and controller registries, as the daemon builds them."""
    from mom.daemon.policy_checks import registry_checks as daemon_checks

    return daemon_checks(enabled_collectors=collectors, enabled_controllers=controllers, **kwargs)
