"""Collectors: one module per data source, registered by its MOM name.

A collector declares the fields it provides, split into mandatory and optional.
The engine merges the rows of all configured collectors into one sample per
entity per tick. When a collector raises :class:`CollectionError` (or a mandatory
field is missing), the entity is left out of that tick's policy run; optional
fields that are missing simply become nil.

Host collectors read files through ``proc_root``/``sys_root`` (like
node_exporter's ``--path.procfs``), so tests point them at fixture trees and the
simulator at its own tree. Guest collectors read the GuestData the hypervisor
interface returned for the tick (or /proc/PID for GuestQemuProc).
"""

from __future__ import annotations

import os
import types
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeVar

from mom.core.errors import MomError
from mom.core.host_paths import PROC_ROOT, SYS_ROOT
from mom.hypervisors.base import GuestData, GuestInfo, HypervisorInterface


class CollectionError(MomError):
    """The collector could not produce its data this time (one clear message)."""


@dataclass
class CollectorContext:
    """What every collector may use."""

    proc_root: str = PROC_ROOT  # the configuration's proc-root and sys-root default too
    sys_root: str = SYS_ROOT
    hypervisor: HypervisorInterface | None = None
    interval: float = 5.0
    clock: Callable[[], float] | None = None  # seconds; monotonic or simulated
    # The guests the engine knows (no hypervisor call); None outside the daemon.
    guests: Callable[[], list[GuestInfo]] | None = None


@dataclass
class GuestSubject:
    """The guest a guest collector collects for, with this tick's bulk data."""

    info: GuestInfo
    data: GuestData = field(default_factory=GuestData)


class Collector(ABC):
    """Base class. Subclasses set name, scope, mandatory and optional fields."""

    name: ClassVar[str]
    scope: ClassVar[Literal["host", "guest"]]
    mandatory: ClassVar[frozenset[str]] = frozenset()
    optional: ClassVar[frozenset[str]] = frozenset()
    # Hypervisor data sections this collector needs (for guest collectors).
    sections: ClassVar[frozenset[str]] = frozenset()
    # True when collect() may wait on something outside the host (the guest
    # agent): the engine then runs it on its call pool, under the deadline.
    blocking: ClassVar[bool] = False

    def __init__(self, ctx: CollectorContext, settings: Mapping[str, str] | None = None) -> None:
        self.ctx = ctx
        self.settings = dict(settings or {})

    @classmethod
    def fields(cls) -> frozenset[str]:
        return cls.mandatory | cls.optional

    @abstractmethod
    def collect(self, subject: GuestSubject | None) -> dict[str, Any]:
        """Return {field: value}; host collectors get None as subject.

        Raises CollectionError when the data cannot be had this time.
        """

    def collect_present(self, subject: GuestSubject | None) -> dict[str, Any]:
        """What there is for the subject, every field optional, never an error: the
        collect() of this collector's Optional variant (:func:`optional_variant`).
        A collector that has such a variant overrides this."""
        raise NotImplementedError(f"{self.name} has no Optional variant")

    # helpers ---------------------------------------------------------------
    def proc_path(self, *parts: str) -> str:
        return os.path.join(self.ctx.proc_root, *parts)

    def sys_path(self, *parts: str) -> str:
        return os.path.join(self.ctx.sys_root, *parts)


REGISTRY: dict[str, type[Collector]] = {}


def register(cls: type[Collector]) -> type[Collector]:
    """Class decorator: make a collector known by its MOM name."""
    if cls.name in REGISTRY:
        raise ValueError(f"collector {cls.name} registered twice")
    REGISTRY[cls.name] = cls
    return cls


C = TypeVar("C", bound=Collector)


def optional_variant(strict: type[C]) -> type[C]:
    """Register the original MOM's "<Name>Optional" twin of a guest collector and return it.

    The twin reads the same sections with the same field meanings, but every field
    is optional and it never raises: its collect() is the strict collector's
    collect_present(), so a guest without the data (no balloon device, no IO
    tune) still takes part in the policy with those fields nil. MOM
    configurations name the twins (GuestMemoryOptional ...), so the names stay."""
    name = strict.name + "Optional"

    def collect(self: C, subject: GuestSubject | None) -> dict[str, Any]:
        return self.collect_present(subject)

    def body(namespace: dict[str, Any]) -> None:
        namespace.update(
            __doc__=f"{strict.name}'s fields when available, all optional; never raises.",
            __module__=strict.__module__, __qualname__=name,
            name=name, mandatory=frozenset(), optional=strict.fields(), collect=collect)

    variant: type[C] = types.new_class(name, (strict,), exec_body=body)
    register(variant)
    return variant


def parse_key_values(text: str, where: str) -> dict[str, int]:
    """Parse /proc/meminfo-style ("Key: 123 kB") and /proc/vmstat-style ("key 123")
    text into {key: int}. Raises CollectionError naming ``where`` and the line."""
    values: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.replace(":", " ").split()
        if len(parts) < 2:
            raise CollectionError(f"{where}:{lineno}: malformed line {line.strip()!r}")
        try:
            values[parts[0]] = int(parts[1])
        except ValueError:
            raise CollectionError(f"{where}:{lineno}: not a number: {parts[1]!r}") from None
    return values


def read_key_value_file(path: str) -> dict[str, int]:
    """parse_key_values of a file. Raises CollectionError with the path on any problem."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise CollectionError(f"cannot read {path}: {e.strerror}") from None
    return parse_key_values(text, path)
