"""The log's tick lines: one per tick that did something, every action in MiB or
counted, quiet ticks summarised once a minute; and the demo, which prints at most
one line per tick."""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

import pytest

from mom.core.actions import Action
from mom.daemon.status import TickLog, tick_line
from tests.support.momd import REPO, Momd

HOST = {"mem_free": 1456 * 1024, "mem_available": 8192 * 1024}


def balloon(name: str, old_mib: int, new_mib: int, applied: bool = True) -> Action:
    return Action("Balloon", name, "balloon_target", old_mib * 1024, new_mib * 1024, applied)


def test_every_action_is_listed_in_mib_with_the_net_change() -> None:
    actions = [balloon(f"vm{i}", 2048, 1946) for i in range(1, 7)]
    actions.append(Action("KSM", "host", "ksm_pages_to_scan", 64, 364))
    line = tick_line(24, HOST, 6, 6, actions, True, None)
    assert line == ("tick 24: host free 17.8% (1456 of 8192 MiB), guests 6/6, 7 actions: balloon -612 MiB: "
                    "vm1 2048->1946, vm2 2048->1946, vm3 2048->1946, vm4 2048->1946, vm5 2048->1946, "
                    "vm6 2048->1946; ksm_pages_to_scan 64->364")
    assert "more" not in line


def test_past_the_limit_actions_are_counted_and_point_to_momctl_actions() -> None:
    actions = [balloon(f"vm{i}", 2048, 1948) for i in range(40)] + [balloon("big", 1000, 1200)]
    actions += [balloon("stuck", 2048, 1000, applied=False), Action("KSM", "host", "ksm_run", 0, 1)]
    line = tick_line(9, HOST, 42, 42, actions, True, None, max_listed=8)
    assert "43 actions (see momctl actions): balloon -4000 MiB on 40 guests, +200 MiB on 1 guest, 1 REFUSED; " \
           "ksm_run 0->1" in line, line
    assert "vm3" not in line


def test_a_refused_action_says_so() -> None:
    line = tick_line(3, HOST, 1, 1, [balloon("vm1", 2048, 1024, applied=False)], True, None)
    assert line.endswith("1 action: balloon +0 MiB: vm1 2048->1024 REFUSED"), line


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[tuple[int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((record.levelno, record.getMessage()))

    def info(self) -> list[str]:
        return [m for level, m in self.records if level == logging.INFO]


@pytest.fixture
def lines() -> Lines:
    logger = logging.getLogger("test.tick")
    logger.setLevel(logging.DEBUG)
    handler = Lines()
    logger.handlers = [handler]
    logger.propagate = False
    return handler


def host_free(mib: int) -> dict[str, int]:
    return {"mem_free": mib * 1024, "mem_available": 8192 * 1024}


def test_quiet_ticks_are_one_info_line_a_minute_and_a_debug_line_each(lines: Lines) -> None:
    log = TickLog(logging.getLogger("test.tick"), quiet_seconds=60)
    for n in range(1, 21):  # a tick every 10 s: 200 s
        log.tick(n, n * 10.0, host_free(4000 - 10 * n), 2, 2, [], True)
    info = lines.info()
    assert info[0].startswith("tick 1: host free")  # the first tick tells momd is at work
    assert info[1:] == [
        "ticks 2-7: no actions for 60 s; host free 48.6% -> 48.0% (lowest 48.0%), guests 2/2",
        "ticks 8-13: no actions for 60 s; host free 47.9% -> 47.2% (lowest 47.2%), guests 2/2",
        "ticks 14-19: no actions for 60 s; host free 47.1% -> 46.5% (lowest 46.5%), guests 2/2"]
    assert sum(1 for level, _ in lines.records if level == logging.DEBUG) == 19  # every quiet tick at debug


def test_a_tick_with_actions_names_the_quiet_ticks_before_it(lines: Lines) -> None:
    log = TickLog(logging.getLogger("test.tick"), quiet_seconds=60)
    for n in range(1, 5):
        log.tick(n, n * 10.0, host_free(4000), 2, 2, [], True)
    log.tick(5, 50.0, host_free(1000), 2, 2, [balloon("vm1", 2048, 1946)], True)
    assert lines.info()[-1] == ("tick 5 (ticks 2-4: no change): host free 12.2% (1000 of 8192 MiB), guests 2/2, "
                                "1 action: balloon -102 MiB: vm1 2048->1946")


def test_a_failing_policy_is_told_when_it_starts_and_summarised_while_it_lasts(lines: Lines) -> None:
    log = TickLog(logging.getLogger("test.tick"), quiet_seconds=60)
    log.tick(1, 10.0, host_free(4000), 2, 2, [], True)
    for n in range(2, 10):
        log.tick(n, n * 10.0, host_free(4000), 2, 2, [], False, "boom")
    log.tick(10, 100.0, host_free(4000), 2, 2, [], True)
    info = lines.info()
    assert info[1].startswith("tick 2: ") and "policy FAILED" in info[1]
    assert info[2].startswith("ticks 3-8: policy FAILED on 6 ticks")
    assert info[3].startswith("tick 10 (ticks 9-9: no change)") and info[3].endswith("no actions")


def test_a_guest_that_comes_or_goes_is_a_change(lines: Lines) -> None:
    log = TickLog(logging.getLogger("test.tick"), quiet_seconds=60)
    log.tick(1, 10.0, host_free(4000), 2, 2, [], True)
    log.tick(2, 20.0, host_free(4000), 2, 2, [], True)
    log.tick(3, 30.0, host_free(4000), 3, 3, [], True)
    assert [m.split(":")[0] for m in lines.info()] == ["tick 1", "tick 3 (ticks 2-2"]


def test_the_demo_prints_at_most_one_line_per_tick(tmp_path: Path) -> None:
    demo = (REPO / "doc" / "mom-sim-demo.conf").read_text()
    conf = tmp_path / "demo.conf"
    conf.write_text(demo.replace("rpc-port: /tmp/momd-demo.sock",
                                 f"rpc-port: {tmp_path / 'demo.sock'}\nrecord-file: {tmp_path / 'record.jsonl'}")
                    .replace("policy-dir: doc/policies", f"policy-dir: {REPO / 'doc' / 'policies'}"))
    m = Momd(conf)
    try:
        deadline = time.monotonic() + 40
        n = 24  # the demo's first ballooning is near tick 24; wait for it and 3 ticks more
        while not any(a["control"] == "balloon_target" for r in m.wait_ticks(n, timeout=40)[:-3]
                      for a in r["actions"]):
            assert time.monotonic() < deadline, "the demo ballooned no guest"
            n += 3
        assert m.stop()[0] == 0
        records = m.records()
    finally:
        m.close()
    log = m.log().splitlines()
    ticks = len(records)
    after_start = log[next(i for i, line in enumerate(log) if "mom.tick:" in line):]
    lines_after_start = [line for line in after_start if "SIGTERM" not in line and "momd stopped" not in line]
    assert len(lines_after_start) <= ticks, "\n".join(log)
    told = [line for line in log if "mom.tick:" in line]
    assert len(told) < ticks  # quiet ticks are summarised
    balloon_ticks = [r for r in records if any(a["control"] == "balloon_target" for a in r["actions"])]
    assert balloon_ticks, "the demo ballooned no guest"
    first = balloon_ticks[0]
    line = next(line for line in told if f"tick {first['tick']}" in line.split(": ")[1])
    for a in first["actions"]:  # every action of the tick, in MiB
        if a["control"] == "balloon_target":
            assert f"{a['target']} {a['old'] / 1024:.0f}->{a['new'] / 1024:.0f}" in line, line
    assert "KiB" not in "\n".join(log) and "more" not in line
    assert not re.search(r"Traceback|ERROR", "\n".join(log))
