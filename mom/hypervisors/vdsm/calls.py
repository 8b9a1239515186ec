"""JSON-RPC 2.0 requests and their answers on the vdsm connection.

vdsm answers JSON-RPC requests sent as STOMP SEND frames to
``jms.topic.vdsm_requests`` with ``reply-to`` naming a destination the client
subscribed to. Each request gets an id; its answer comes back as a MESSAGE
frame on that subscription, in any order, on stomp.py's receiver thread.
:class:`PendingCalls` pairs them: a call waits at most its timeout for its own
answer. The calls belong to one connection *generation*: when the connection
is lost or replaced, :meth:`PendingCalls.renew` starts a new generation and
every call still waiting on the old one fails at once.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable
from typing import Any

from stomp.exception import StompException

from mom.hypervisors.vdsm.errors import VdsmCallError, VdsmTimeout, VdsmUnavailable

log = logging.getLogger("mom.vdsm")

REQUEST_QUEUE = "jms.topic.vdsm_requests"

Send = Callable[[str], None]  # sends one request body on the connection
OnTimeout = Callable[[int, str], None]  # (generation, why): the connection left a request unanswered


class _Pending:
    __slots__ = ("event", "response", "lost")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.response: dict[str, Any] | None = None
        self.lost = False


class PendingCalls:
    """The calls waiting for vdsm's answers, by request id."""

    def __init__(self, where: str, down_message: str, on_timeout: OnTimeout) -> None:
        self.where = where
        self.down_message = down_message
        self.on_timeout = on_timeout
        self._lock = threading.Lock()
        self._pending: dict[str, _Pending] = {}
        self.generation = 0

    def renew(self) -> int:
        """Start a new connection generation: the calls of the old one fail. Returns it."""
        with self._lock:
            self.generation += 1
            self._fail_locked()
            return self.generation

    def fail_all(self) -> None:
        """Every waiting call fails (its connection is gone)."""
        with self._lock:
            self._fail_locked()

    def _fail_locked(self) -> None:
        for pending in self._pending.values():
            pending.lost = True
            pending.event.set()
        self._pending.clear()

    def call(self, send: Send, gen: int, method: str, params: dict[str, Any], timeout: float) -> Any:
        """Send one request on the connection of generation ``gen``; its result.

        Raises VdsmUnavailable (that connection is gone), VdsmTimeout (no answer
        within ``timeout``; ``on_timeout`` is told first) or VdsmCallError."""
        rid = str(uuid.uuid4())
        pending = _Pending()
        body = json.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": rid})
        with self._lock:
            if gen != self.generation:
                raise VdsmUnavailable(self.down_message)
            self._pending[rid] = pending
        try:
            send(body)
        except (StompException, OSError, AttributeError, ValueError) as e:
            self._forget(rid)
            log.debug("cannot send %s to vdsm at %s: %s", method, self.where, e or type(e).__name__)
            raise VdsmUnavailable(self.down_message) from None
        if not pending.event.wait(timeout):
            self._forget(rid)
            # A connection that leaves a request unanswered may be half-dead (a
            # vdsm that stopped without closing it): start afresh.
            self.on_timeout(gen, f"no answer to {method} within {timeout:g} s")
            raise VdsmTimeout(f"vdsm at {self.where} did not answer {method} within {timeout:g} s")
        if pending.lost or pending.response is None:
            log.debug("the connection to vdsm at %s was lost during %s", self.where, method)
            raise VdsmUnavailable(self.down_message)
        return result_of(method, pending.response)

    def _forget(self, rid: str) -> None:
        with self._lock:
            self._pending.pop(rid, None)

    def deliver(self, body: Any) -> None:
        """A MESSAGE frame's body: hand each answer in it to its call."""
        if isinstance(body, bytes):
            body = body.decode("utf-8", "replace")
        try:
            data = json.loads(body)
        except (TypeError, ValueError):
            log.debug("vdsm sent a message that is not JSON: %.200r", body)
            return
        for item in data if isinstance(data, list) else [data]:
            if not isinstance(item, dict) or item.get("id") is None:
                continue  # an event (notification): not ours to handle
            with self._lock:
                pending = self._pending.pop(str(item["id"]), None)
            if pending is not None:
                pending.response = item
                pending.event.set()


def result_of(method: str, response: dict[str, Any]) -> Any:
    """A JSON-RPC response's result; VdsmCallError for its error."""
    error = response.get("error")
    if error is not None:
        if isinstance(error, dict):
            raise VdsmCallError(method, error.get("code"), str(error.get("message", error)))
        raise VdsmCallError(method, None, str(error))
    return response.get("result")
