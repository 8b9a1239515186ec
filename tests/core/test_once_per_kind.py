"""OncePerKind: the first event of a kind is logged, the rest of the period counted;
without a period a kind is logged once for good (libvirt's per-guest error codes)."""

from __future__ import annotations

import logging

import pytest

from mom.core.faults import OncePerKind

log = logging.getLogger("test.once")


def test_without_a_period_each_kind_is_due_once() -> None:
    once = OncePerKind(log)
    assert [once.due(1), once.due(1), once.due(2), once.due(1)] == [0, None, 0, None]


def test_report_logs_the_first_and_then_counts(caplog: pytest.LogCaptureFixture) -> None:
    once = OncePerKind(log, period=0.0)  # every line due: the count of suppressed ones is 0
    caplog.set_level(logging.INFO, "test.once")
    once.report("origin", "refused: origin")
    once.report("origin", "refused: origin")
    assert [r.getMessage() for r in caplog.records] == ["refused: origin"] * 2
    caplog.clear()
    slow = OncePerKind(log, period=3600.0)
    for _ in range(3):
        slow.report("host", "refused: host", logging.WARNING)
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [(logging.WARNING, "refused: host")]
    slow.period = 0.0  # the period is over: the next line says how many were left out
    slow.report("host", "refused: host")
    assert caplog.records[-1].getMessage() == "refused: host (2 more since the last such line)"
