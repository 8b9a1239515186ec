"""libvirt events: the process-wide event loop and the callbacks of one connection.

One daemon thread per process runs libvirt's default event loop, whatever the
number of guests. A connection that delivers domain lifecycle events makes
the engine run discovery at once when a domain starts or stops; lifecycle,
metadata, tunable and memory device size events also make the interface fetch
that domain's XML again (the handlers live in the interface, which owns those
caches).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import libvirt

log = logging.getLogger("mom.libvirt")


class EventLoop:
    """libvirt's default event loop on one daemon thread per process.

    The implementation is registered once (the registration survives a fork);
    the thread runs in the process that uses it: a process forked after its
    parent started the loop (``momd -d``) starts its own."""

    _lock = threading.Lock()
    _registered = False
    _pid: int | None = None  # the process whose thread runs the loop

    @classmethod
    def ensure(cls) -> bool:
        """Start the loop in this process if needed; False when this libvirt cannot run one."""
        with cls._lock:
            if cls._pid == os.getpid():
                return True
            if not cls._registered:
                try:
                    libvirt.virEventRegisterDefaultImpl()
                except libvirt.libvirtError as e:  # pragma: no cover - very old libvirt
                    log.warning("libvirt events unavailable: %s", e.get_error_message())
                    return False
                cls._registered = True
            threading.Thread(target=cls._run, name="mom-libvirt-events", daemon=True).start()
            cls._pid = os.getpid()
            return True

    @staticmethod
    def _run() -> None:
        while True:
            try:
                libvirt.virEventRunDefaultImpl()
            except Exception:  # noqa: BLE001 - the loop must survive anything
                time.sleep(0.5)


@dataclass(frozen=True)
class Handlers:
    """What a connection's events call (libvirt's callback signatures)."""

    closed: Callable[[Any, int, Any], None]            # (conn, reason, opaque)
    lifecycle: Callable[[Any, Any, int, int, Any], None]  # (conn, dom, event, detail, opaque)
    changed: Callable[..., None]                        # (conn, dom, ...): metadata, tunables, memory size


def register(conn: Any, uri: str, handlers: Handlers) -> list[int] | None:
    """Register the event callbacks on a new connection: their ids, None when
    there are no domain events (discovery then polls)."""
    try:
        conn.setKeepAlive(5, 3)
    except (libvirt.libvirtError, AttributeError):
        pass  # local drivers have no keepalive
    try:
        conn.registerCloseCallback(handlers.closed, None)
    except (libvirt.libvirtError, AttributeError):
        pass
    ids = []
    try:
        ids.append(conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                               handlers.lifecycle, None))
    except libvirt.libvirtError as e:
        log.info("libvirt: no domain events on %s (%s); discovery polls", uri, e.get_error_message())
        return None
    for event_id in (getattr(libvirt, "VIR_DOMAIN_EVENT_ID_METADATA_CHANGE", None),
                     getattr(libvirt, "VIR_DOMAIN_EVENT_ID_TUNABLE", None),
                     # libvirt >= 7.9: a virtio-mem device's plugged size changed
                     getattr(libvirt, "VIR_DOMAIN_EVENT_ID_MEMORY_DEVICE_SIZE_CHANGE", None)):
        if event_id is None:
            continue
        try:
            ids.append(conn.domainEventRegisterAny(None, event_id, handlers.changed, None))
        except libvirt.libvirtError:
            pass
    return ids


def release(conn: Any, ids: list[int]) -> None:
    """Deregister the callbacks and close a connection (errors ignored)."""
    for cid in ids:
        try:
            conn.domainEventDeregisterAny(cid)
        except libvirt.libvirtError:
            pass
    try:
        conn.unregisterCloseCallback()
    except (libvirt.libvirtError, AttributeError):
        pass
    try:
        conn.close()
    except Exception:  # noqa: BLE001 - closing anyway
        pass


# The lifecycle events after which discovery runs at once.
DISCOVERY_EVENTS = frozenset({libvirt.VIR_DOMAIN_EVENT_STARTED, libvirt.VIR_DOMAIN_EVENT_STOPPED,
                              libvirt.VIR_DOMAIN_EVENT_CRASHED})
# The lifecycle events after which the domain is gone from this connection.
GONE_EVENTS = frozenset({libvirt.VIR_DOMAIN_EVENT_STOPPED, libvirt.VIR_DOMAIN_EVENT_UNDEFINED})
CLIENT_CLOSE = getattr(libvirt, "VIR_CONNECT_CLOSE_REASON_CLIENT", 3)
