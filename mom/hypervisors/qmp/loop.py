"""One asyncio event loop in a thread of its own, for the QMP interface.

qemu.qmp is asyncio; MOM's engine calls interfaces from a thread pool. The
interface owns one loop, run by one daemon thread, and every call from a pool
thread is submitted to it (``run_coroutine_threadsafe``) and waited for with a
deadline. All QMP connections live on this loop, so a QEMU that does not answer
holds only the coroutines talking to it, never a thread of the pool.

Nothing starts in the constructor: :meth:`LoopThread.start` (the interface calls
it on first use, after ``momd -d`` forked) and :meth:`LoopThread.close`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class LoopClosed(RuntimeError):
    """The loop was closed (the interface is closing); nothing more runs on it."""


class LoopThread:
    """An event loop run by a daemon thread; coroutines are submitted from any thread."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self._calls: set[asyncio.Task[Any]] = set()  # the submitted calls still running (loop thread only)

    @property
    def running(self) -> bool:
        return self._loop is not None and not self._closed

    def start(self) -> asyncio.AbstractEventLoop:
        """Start the loop's thread once; the loop. Raises LoopClosed after close()."""
        with self._lock:
            if self._closed:
                raise LoopClosed(f"{self.name}: closed")
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                self._thread = threading.Thread(target=run, name=self.name, daemon=True)
                self._thread.start()
                ready.wait()
                self._loop = loop
            return self._loop

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the loop (starting it first when needed)."""
        try:
            loop = self.start()
        except LoopClosed:
            coro.close()
            raise
        return asyncio.run_coroutine_threadsafe(self._tracked(coro), loop)

    async def _tracked(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a submitted call, known to close() so that it can be cancelled there."""
        task = asyncio.current_task()
        assert task is not None
        self._calls.add(task)
        try:
            return await coro
        finally:
            self._calls.discard(task)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        """Run ``coro`` on the loop and wait at most ``timeout`` seconds for it.

        The coroutines bound their own QMP calls with shorter deadlines; this one
        is the backstop: on expiry the coroutine is cancelled and TimeoutError raised.
        LoopClosed when the loop is closed before or while it runs."""
        future = self.submit(coro)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"no answer within {timeout:g} s") from None
        except concurrent.futures.CancelledError:  # close() cancelled it
            raise LoopClosed(f"{self.name}: closed") from None

    def close(self, cleanup: Coroutine[Any, Any, Any] | None = None, timeout: float = 2.0) -> None:
        """Cancel the calls still running (their callers get LoopClosed at once rather
        than waiting for their backstop), run ``cleanup``, each bounded by
        ``timeout``, stop the loop and join its thread. Later submissions raise
        LoopClosed. Raises nothing."""
        with self._lock:
            loop, thread = self._loop, self._thread
            already, self._closed = self._closed, True
        if loop is None or thread is None or already:
            if cleanup is not None:
                cleanup.close()
            return
        try:
            asyncio.run_coroutine_threadsafe(self._finish(cleanup, timeout), loop).result(2 * timeout + 1)
        except Exception:  # noqa: BLE001 - closing goes on whatever the cleanup met
            pass
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        if not thread.is_alive():
            loop.close()

    async def _finish(self, cleanup: Coroutine[Any, Any, Any] | None, timeout: float) -> None:
        calls = [t for t in self._calls if not t.done()]
        for task in calls:
            task.cancel()
        if calls:
            await asyncio.wait(calls, timeout=timeout)
        if cleanup is not None:
            await asyncio.wait_for(cleanup, timeout)
