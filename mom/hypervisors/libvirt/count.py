"""Measuring tools for the libvirt interface: benchmark and test tooling, not used
by MOM itself. It lives in the package because both ``bench/libvirt_bench.py``
and ``tests/hypervisors/libvirt`` import it.

:class:`CountingConnection` wraps a libvirt connection, and the domain objects
it hands out, and counts the calls that reach libvirt. Accessors that libvirt
answers from the client-side object without asking the driver (name, UUID,
ID, the connection's own bookkeeping) are not counted.

:class:`BalloonStatsFiller` stands in for a driver that fills the bulk
``balloon.*`` statistics, as the QEMU driver does, on top of a driver that
leaves them empty (libvirt's test driver): it copies each domain's
``memoryStats()`` and the current and maximum memory from its info(), read
once before the measurement, into the bulk records.
"""

from __future__ import annotations

import collections
import threading
from typing import Any

LOCAL = frozenset({"name", "UUIDString", "UUID", "ID", "connect", "isAlive", "close",
                   "registerCloseCallback", "unregisterCloseCallback", "setKeepAlive",
                   "domainEventRegisterAny", "domainEventDeregisterAny"})


class _Counter:
    def __init__(self) -> None:
        self.calls: collections.Counter[str] = collections.Counter()
        self.lock = threading.Lock()

    def add(self, name: str) -> None:
        with self.lock:
            self.calls[name] += 1

    @property
    def total(self) -> int:
        with self.lock:
            return sum(self.calls.values())

    def reset(self) -> None:
        with self.lock:
            self.calls.clear()


class _Proxy:
    _wrap_names: frozenset[str] = frozenset()
    _target: Any  # set in __init__ around __setattr__
    _counter: _Counter

    def __init__(self, target: Any, counter: _Counter) -> None:
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_counter", counter)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if not callable(attr):
            return attr
        counter = self._counter

        def call(*args: Any, **kwargs: Any) -> Any:
            if name not in LOCAL:
                counter.add(name)
            return self._wrap(name, attr(*args, **kwargs))
        return call

    def _wrap(self, name: str, value: Any) -> Any:
        return value


class CountingDomain(_Proxy):
    """A virDomain whose calls are counted."""


class CountingConnection(_Proxy):
    """A virConnect whose calls (and its domains' calls) are counted in ``counter``."""

    def __init__(self, conn: Any, counter: _Counter | None = None) -> None:
        super().__init__(conn, counter or _Counter())

    @property
    def counter(self) -> _Counter:
        return self._counter

    def _wrap(self, name: str, value: Any) -> Any:
        import libvirt

        if isinstance(value, libvirt.virDomain):
            return CountingDomain(value, self._counter)
        if isinstance(value, list) and value and isinstance(value[0], libvirt.virDomain):
            return [CountingDomain(d, self._counter) for d in value]
        if isinstance(value, list) and value and isinstance(value[0], tuple) and \
                isinstance(value[0][0], libvirt.virDomain):
            return [(CountingDomain(d, self._counter), s) for d, s in value]
        return value


class BalloonStatsFiller(_Proxy):
    """A connection whose getAllDomainStats carries balloon.* statistics (see the module doc)."""

    def __init__(self, conn: Any) -> None:
        super().__init__(conn, _Counter())
        import libvirt

        stats = {}
        for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
            mem = dom.memoryStats()
            info = dom.info()
            rec = {f"balloon.{k.replace('last_update', 'last-update')}": v for k, v in mem.items() if k != "actual"}
            rec["balloon.current"], rec["balloon.maximum"] = info[2], info[1]
            stats[dom.UUIDString()] = rec
        object.__setattr__(self, "_stats", stats)

    def getAllDomainStats(self, stats: int = 0, flags: int = 0) -> list[tuple[Any, dict[str, Any]]]:
        import libvirt

        out: list[tuple[Any, dict[str, Any]]] = self._target.getAllDomainStats(stats, flags)
        if not stats & libvirt.VIR_DOMAIN_STATS_BALLOON:
            return out
        filled = []
        for dom, rec in out:
            extra = self._stats.get(dom.UUIDString(), {})
            filled.append((dom, {**rec, **extra}))
        return filled
