"""The gateway: every blocking call the engine makes goes through here.

Calls run on a fixed pool with a deadline (``hypervisor-call-timeout``). A call
that has not returned is never queued again behind itself: named hypervisor
calls, per-guest collection and per-guest collectors each remember their last
future, and a control call that missed its deadline holds its target until it
returns. Failures are faults, logged once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, wait
from dataclasses import dataclass
from typing import Any, Protocol

from mom.controllers.base import PlannedCall
from mom.core.faults import FaultKey, FaultLog
from mom.hypervisors.base import GuestData, GuestInfo, HypervisorInterface, HypervisorUnavailable

POOL_SIZE = 4


class Pool(Protocol):
    """What the engine needs of a call pool (mom.core.pool.CallPool, or an inline one)."""

    def start(self) -> None: ...
    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]: ...
    def close(self) -> None: ...


@dataclass
class ControlCall:
    """A controller's planned call handed to the pool."""

    controller: str
    call: PlannedCall
    future: Future[Any]


def hypervisor_key(what: str) -> FaultKey:
    return FaultKey("hypervisor", what)


class Gateway:
    """The pool, the deadline and the calls in flight."""

    def __init__(self, pool: Pool, call_timeout: float, faults: FaultLog) -> None:
        self.pool = pool
        self.call_timeout = call_timeout
        self.faults = faults
        self.stopping = False  # set by the engine's stop(): waits end early, quietly
        self._inflight: dict[str, Future[Any]] = {}  # call name -> its last future
        self._guest_calls: dict[str, Future[Any]] = {}  # guest uuid -> its last collection call
        self._guest_merges: dict[str, Future[Any]] = {}  # guest uuid -> its blocking collectors' run
        self._controls: dict[tuple[str, str], ControlCall] = {}  # (controller, target) -> a call past its deadline

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        return self.pool.submit(fn, *args)

    def timeout_message(self) -> str:
        return f"no answer within {self.call_timeout:g} s"

    def wait(self, futures: list[Future[Any]]) -> set[Future[Any]]:
        """Wait for futures up to the call deadline, returning early on stop; the done ones."""
        deadline = time.monotonic() + self.call_timeout
        pending = set(futures)
        while pending and not self.stopping:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            _, pending = wait(pending, timeout=min(left, 0.2))  # all done, or a slice passed
        return set(futures) - pending

    def call(self, what: str, fn: Callable[[], Any]) -> tuple[bool, Any]:
        """Run a hypervisor call on the pool with the deadline; (ok, result)."""
        key = hypervisor_key(what)
        previous = self._inflight.get(what)
        if previous is not None and not previous.done():
            # The last call is still running (hung): do not queue another behind it,
            # or the pool fills up and stale calls (old controls) run later.
            if not self.stopping:
                self.faults.report(key, "the previous call has not returned yet")
            return False, None
        future = self._inflight[what] = self.pool.submit(fn)
        if not self.wait([future]):
            if not self.stopping:
                self.faults.report(key, self.timeout_message())
            return False, None
        try:
            result = future.result()
        except HypervisorUnavailable as e:  # the interface logs its outage itself
            self.faults.report(key, str(e), logging.DEBUG)
            return False, None
        except Exception as e:  # noqa: BLE001 - any interface error is one logged fault
            self.faults.report(key, str(e) or type(e).__name__)
            return False, None
        self.faults.clear(key)
        return True, result

    def guest_data(self, hv: HypervisorInterface, guests: list[GuestInfo],
                   sections: set[str]) -> dict[str, GuestData]:
        """The guests' interface data (by uuid): one bulk call, or one call per guest in
        parallel under one deadline, so a hung guest only loses its own data."""
        if not self.call("refresh", hv.refresh)[0]:
            return {}
        if not sections:
            return {g.uuid: GuestData() for g in guests}
        if hv.bulk:
            ok, bulk = self.call("collect_all", lambda: hv.collect_all(guests, sections))
            return bulk if ok else {}
        sent: list[GuestInfo] = []
        for g in guests:
            pending = self._guest_calls.get(g.uuid)
            if pending is not None and not pending.done():
                continue  # its last call is still hanging; do not pile up more
            self._guest_calls[g.uuid] = self.pool.submit(hv.collect_all, [g], sections)
            sent.append(g)
        done = self.wait([self._guest_calls[g.uuid] for g in sent])
        result: dict[str, GuestData] = {}
        for g in guests:
            key = FaultKey("hypervisor", "collection", g.name)
            f = self._guest_calls.get(g.uuid)
            if f is None or f not in done:
                if f is not None and not self.stopping:  # on stop, wait returns before the deadline
                    self.faults.report(key, self.timeout_message())
                continue
            try:
                result.update(f.result())
                self.faults.clear(key)
            except HypervisorUnavailable as e:  # logged by the interface
                self.faults.report(key, str(e), logging.DEBUG)
            except Exception as e:  # noqa: BLE001
                self.faults.report(key, str(e) or type(e).__name__)
        return result

    def per_guest(self, guests: list[GuestInfo], fn: Callable[[GuestInfo], Any]) -> dict[str, Future[Any]]:
        """Run fn for each guest on the pool, skipping guests whose previous run is still
        busy; the futures that finished within the deadline, by uuid."""
        futures: dict[str, Future[Any]] = {}
        for g in guests:
            previous = self._guest_merges.get(g.uuid)
            if previous is not None and not previous.done():
                continue  # still busy from an earlier round
            self._guest_merges[g.uuid] = futures[g.uuid] = self.pool.submit(fn, g)
        done = self.wait(list(futures.values()))
        return {uuid: f for uuid, f in futures.items() if f in done}

    def forget_guest(self, uuid: str) -> None:
        """A guest is gone: its calls in flight are no longer waited for."""
        self._guest_calls.pop(uuid, None)
        self._guest_merges.pop(uuid, None)

    # -- control calls -------------------------------------------------------------------
    def control_in_flight(self, controller: str, target: str) -> ControlCall | None:
        """The call for this target that missed its deadline and has not returned."""
        return self._controls.get((controller, target))

    def send_control(self, controller: str, call: PlannedCall) -> ControlCall:
        return ControlCall(controller, call, self.pool.submit(call.run))

    def hold(self, sent: ControlCall) -> None:
        """Keep a call past its deadline: its target gets no other call until it returns."""
        self._controls[(sent.controller, sent.call.target)] = sent

    def returned_controls(self, known: set[str]) -> list[ControlCall]:
        """Calls held past their deadline that have returned since (their targets are
        free again); calls for targets no longer known are forgotten."""
        out = []
        for key, sent in list(self._controls.items()):
            target = sent.call.target
            if not sent.future.done():
                if target not in known:
                    del self._controls[key]
                continue
            del self._controls[key]
            if target in known:
                out.append(sent)
        return out
