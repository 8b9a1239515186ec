"""The policy loop keeps its interval whatever RPC and metrics clients do, and bad
clients do not lock normal ones out.

A real momd runs the simulated host in real time (clock speed 1) with 100 guests
and a policy tick due every 2 s, its RPC on TCP (with the metrics endpoint) or
on a unix socket. Under 50 clients calling getStatistics, getActiveGuests and
setPolicy back to back, or 20 scrapers, for 60 s, the tick intervals (from the
flight recorder) keep a p99 within 1.5 times the interval, and every call is
answered. With 300 idle connections, 16 clients that never read their answers
and a 1 byte/s client, a normal ping and a scrape are still answered within 1 s.

The machine is shared: before each load, the ticks of the idle daemon are
measured, and if even those miss the bound the test is skipped as unmeasurable;
if the loaded ticks miss it, the load is blamed (the test fails) only when the
idle ticks before and right after it were regular (p99 within 1.25 times the
interval), else the test is skipped with the numbers. The load
generators are the benchmark's (bench/load_bench.py); they run at nice 10, so
that what is measured is momd's own handling of its clients, not the two CPUs
they share with it (the starvation this guards against came from within momd:
its threads' turns at the interpreter lock)."""

from __future__ import annotations

import importlib.util
import os
import sys
import time
import xmlrpc.client
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

import pytest

from tests.support.momd import REPO, Momd, thread_count
from tests.support.net import free_port
from tests.support.rpc import write_config

INTERVAL = 2.0  # policy-engine-interval
BOUND = 1.5 * INTERVAL  # what the p99 of tick intervals may reach
GUESTS = 100
NICE = 10  # the load generators' priority: they share the machine's two CPUs with momd
LOAD_SECONDS = 60.0
BASELINE_SECONDS = 12.0
QUIET = 1.25 * INTERVAL  # idle ticks this regular: the machine is quiet enough to blame the load
QUIET_SECONDS = 20.0


def _load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("load_bench", REPO / "bench" / "load_bench.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["load_bench"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


bench = _load_bench()


class Target(NamedTuple):
    """A momd under test: its RPC address (port or socket), metrics port, idle tick intervals."""

    momd: Momd
    address: str | int
    metrics: int
    baseline: list[float]
POLICY = "\n".join(p.read_text() for p in sorted((REPO / "doc" / "policies").glob("*.policy")))


def _start(tmp: Path, rpc: str, metrics: str = "") -> Momd:
    cfg = write_config(tmp, rpc=rpc, metrics=metrics, scenario_text=bench.scenario(GUESTS), speed=1,
                       interval=1, policy_interval=INTERVAL)
    m = Momd(cfg)
    # The recorder's lines are big at 150 guests: read only their heads.
    m.wait_for("3 ticks", lambda: len(_ticks(m)) >= 3, 60)
    time.sleep(bench.SETTLE / 2)  # the first rounds, every guest new, are not a steady state
    return m


def _ticks(m: Momd) -> list[tuple[int, float]]:
    """(number, clock time) of every tick recorded, rotated files included."""
    ticks = dict(bench.tick_times(Path(f"{m.record}.1")))
    ticks.update(bench.tick_times(m.record))
    return sorted(ticks.items())


def _intervals(m: Momd, start: float, end: float) -> list[float]:
    time.sleep(INTERVAL + 0.5)  # the tick due at `end` is recorded
    return bench.intervals_between(_ticks(m), start + INTERVAL, end)


def _p99(intervals: list[float]) -> float:
    return bench.percentile(intervals, 99)


def _baseline(m: Momd) -> list[float]:
    """The idle daemon's tick intervals."""
    t0 = time.time()
    time.sleep(BASELINE_SECONDS)
    return _intervals(m, t0, time.time())


def _measurable(baseline: list[float]) -> None:
    """Skip when even the idle daemon misses the bound: the machine is too busy to measure."""
    if not baseline or _p99(baseline) > BOUND:
        pytest.skip(f"the machine is too busy: idle tick intervals {baseline}, load {os.getloadavg()}")


def _check_ticks(m: Momd, baseline: list[float], start: float, end: float, what: str) -> None:
    """The tick intervals' p99 is within the bound under load. When it is not, the load
    is blamed only if the idle daemon ticks cleanly (p99 within QUIET) before and right
    after it; otherwise the machine's own noise is too loud to tell, and the test skips."""
    loaded = _intervals(m, start, end)
    assert len(loaded) >= (end - start) / INTERVAL * 0.6, (what, loaded)  # it kept ticking
    if _p99(loaded) <= BOUND:
        return
    t0 = time.time()
    time.sleep(QUIET_SECONDS)
    after = _intervals(m, t0, time.time())
    report = (f"under {what}, tick intervals p99 {_p99(loaded):.2f} s > {BOUND:g} s: {sorted(loaded)}\n"
              f"idle before: {baseline}\nidle after: {after}\nload average {os.getloadavg()}")
    if max(_p99(baseline), _p99(after)) > QUIET:
        pytest.skip(f"the machine is too busy to tell: {report}")
    pytest.fail(report)


def _run_load(load: Any, seconds: float) -> tuple[float, float]:
    start = time.time()
    load.start()
    try:
        time.sleep(seconds)
    finally:
        load.stop()
    return start, time.time()


def _assert_all_answered(load: Any, clients: int, what: str) -> None:
    calls = load.calls
    assert not calls.errors, f"{what}: calls failed: {calls.errors}"
    # Every client got answers all along, not just a lucky few.
    assert len(load.answered) == clients and min(load.answered.values()) >= 5, (what, load.answered)


def _probe(address: str | int, mport: int, seconds: float) -> list[str]:
    """A normal client's pings and scrapes, one each a second, each given 1 s; the failures."""
    failures = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        t0 = time.monotonic()
        try:
            assert bench.client(address, timeout=1.0).ping() is True
        except (OSError, xmlrpc.client.Error) as e:
            failures.append(f"ping: {type(e).__name__}: {e}")
        try:
            assert b"mom_guests" in bench.scrape(mport, timeout=1.0)
        except OSError as e:
            failures.append(f"scrape: {type(e).__name__}: {e}")
        time.sleep(max(0.0, 1.0 - (time.monotonic() - t0)))
    return failures


def _hostile(m: Momd, address: str | int, mport: int, non_readers: int = 0) -> str:
    """300 idle connections, `non_readers` clients asking for the policy and never reading
    it, a 1 byte/s scraper; a normal ping and scrape answered within 1 s all along.
    momd's log afterwards."""
    hostile = bench.Hostile([address], idle=300, non_readers=non_readers, non_reader_target=address,
                            dribble_port=mport, non_reader_call="getPolicy").start()
    try:
        time.sleep(1.0)  # they are all connected
        failures = _probe(address, mport, 10.0)
    finally:
        hostile.stop()
    assert not failures, failures
    # momd keeps at most 128 connections, closing the oldest idle ones first.
    assert hostile.reconnects >= 300 - 128, hostile.reconnects
    # The 1 byte/s client was cut (within the 5 s request timeout), and came back.
    assert hostile.dribbles and max(hostile.dribbles) < 8, hostile.dribbles
    assert m.alive()
    log = m.log()
    assert "Traceback" not in log
    # Each kind of bad client is one line, not one per client.
    assert log.count("closing the oldest idle ones") == 1, log[-3000:]
    assert log.count("metrics: cut a client that did not send its request") == 1, log[-3000:]
    return log


@pytest.fixture(scope="class")  # torn down after its class
def tcp_momd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    port, mport = free_port(), free_port()
    m = _start(tmp_path_factory.mktemp("load-tcp"), str(port), f"127.0.0.1:{mport}")
    try:
        yield Target(m, port, mport, _baseline(m))
    finally:
        m.close()


@pytest.fixture(scope="class")  # torn down after its class
def unix_momd(tmp_path_factory: pytest.TempPathFactory, sockdir: Path) -> Iterator[Target]:
    sock, mport = str(sockdir / "load.sock"), free_port()
    m = _start(tmp_path_factory.mktemp("load-unix"), sock, f"127.0.0.1:{mport}")
    try:
        yield Target(m, sock, mport, _baseline(m))
    finally:
        m.close()


class TestTcp:
    """One momd with its RPC on TCP and the metrics endpoint."""

    def test_clients_do_not_delay_ticks(self, tcp_momd: Target) -> None:
        m, port, _, baseline = tcp_momd
        _measurable(baseline)
        threads = thread_count(m.pid)
        load = bench.Load(50, bench.rpc_step(port, POLICY), nice=NICE)
        start, end = _run_load(load, LOAD_SECONDS)
        _assert_all_answered(load, 50, "50 TCP clients")
        _check_ticks(m, baseline, start, end, "50 TCP clients")
        assert thread_count(m.pid) <= threads + 4  # the RPC workers, started by the first call
        # Calls are logged at debug level: at info, the log holds no line per call.
        assert "getStatistics" not in m.log() and "getActiveGuests" not in m.log()

    def test_scrapers_do_not_delay_ticks(self, tcp_momd: Target) -> None:
        m, _, mport, baseline = tcp_momd
        _measurable(baseline)
        load = bench.Load(20, bench.scrape_step(mport), nice=NICE)
        start, end = _run_load(load, LOAD_SECONDS)
        _assert_all_answered(load, 20, "20 scrapers")
        _check_ticks(m, baseline, start, end, "20 scrapers")
        assert f"mom_guests {GUESTS}.0".encode() in bench.scrape(mport)

    def test_hostile_clients_do_not_lock_out_a_normal_one(self, tcp_momd: Target) -> None:
        m, port, mport, _ = tcp_momd
        _hostile(m, port, mport)


class TestUnix:
    """One momd with its RPC on a unix socket (and the metrics endpoint)."""

    def test_clients_do_not_delay_ticks(self, unix_momd: Target) -> None:
        m, sock, _, baseline = unix_momd
        _measurable(baseline)
        load = bench.Load(50, bench.rpc_step(sock, POLICY), nice=NICE)
        start, end = _run_load(load, LOAD_SECONDS)
        _assert_all_answered(load, 50, "50 unix-socket clients")
        _check_ticks(m, baseline, start, end, "50 unix-socket clients")

    def test_hostile_clients_do_not_lock_out_a_normal_one(self, unix_momd: Target) -> None:
        m, sock, mport, _ = unix_momd
        # An answer bigger than the socket's buffer (about 200 KB), as the statistics
        # of a few hundred guests: a client that does not read it holds up its write.
        mom = bench.client(sock)
        assert mom.setNamedPolicy("zz-big", "# padding\n" * 60_000 + "(defvar padding 1)\n") is True
        try:
            log = _hostile(m, sock, mport, non_readers=16)
        finally:
            assert mom.setNamedPolicy("zz-big", None) is True
        assert log.count("RPC: cut a client that did not read its answer") == 1, log[-3000:]
