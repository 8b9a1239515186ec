"""Waiting for something that happens in another thread or process: one polling
loop for every test, failing with what was awaited (and why, if the caller can say)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.05, *,
               what: str = "the condition", detail: Callable[[], str] | None = None) -> T:
    """Call predicate every interval seconds until it returns a true value, and return that value.

    After timeout seconds an AssertionError names what was awaited, followed by
    detail() (a log tail, the state seen). predicate may raise to stop waiting at
    once (a daemon that died cannot produce what is awaited)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            extra = detail() if detail is not None else ""
            raise AssertionError(f"{what}: not within {timeout:g} s" + (f"\n{extra}" if extra else ""))
        time.sleep(interval)
