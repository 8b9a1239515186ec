"""A small fixed pool of daemon threads for blocking calls.

Unlike ThreadPoolExecutor, its threads are daemon threads that are never
joined at exit: a hypervisor call that hangs forever cannot keep momd from
stopping.

Lifecycle: building a pool starts nothing; ``start`` (or the first ``submit``)
starts the threads, so a daemon can fork after building its engine (threads do
not survive a fork); ``close`` lets idle workers end.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

# A queued call: the future its result goes to, the function, its arguments.
_Call = tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]


class CallPool:
    """A fixed number of daemon worker threads taking calls from one queue."""

    def __init__(self, workers: int, name: str = "mom-call") -> None:
        self._queue: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True) for i in range(workers)]
        self._started = False
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the worker threads (once; later calls do nothing)."""
        if self._started:
            return
        with self._lock:
            if not self._started:
                for t in self._threads:
                    t.start()
                self._started = True

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        """Queue a call, starting the pool if it was not started yet."""
        self.start()
        future: Future[Any] = Future()
        self._queue.put((future, fn, args))
        return future

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            future, fn, args = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as e:  # noqa: BLE001 - handed to the caller through the future
                future.set_exception(e)

    def close(self) -> None:
        """Let idle workers end; busy (hung) ones are abandoned."""
        if self._started:
            for _ in self._threads:
                self._queue.put(None)
