#!/usr/bin/env python3
"""Load benchmark of momd's RPC and metrics endpoints on the simulated host.

    .venv/bin/python bench/load_bench.py [--guests 200] [--seconds 30] [--clients 50] [--scrapers 20]
                                         [--only tcp,unix,metrics,bad,hostile]

A real momd subprocess runs the simulated host in real time (clock speed 1)
with a 2-second policy interval, its RPC on TCP and on a unix socket (two
daemons) and its metrics endpoint. For each load, the table gives the clients,
the calls per second answered, the call latency (p50, p99), the errors, and the
policy tick interval under that load (p50, p99, max), read from the flight
recorder (each tick's clock time).

Loads:
- tcp / unix: CLIENTS threads each calling getStatistics, getActiveGuests and
  setPolicy (the policy in force) in turn, a new connection per call;
- metrics: SCRAPERS threads scraping /metrics back to back;
- bad: CLIENTS threads sending malformed and deeply nested requests;
- hostile: 300 idle connections, 16 unix-socket clients that never read their
  answers and a 1 byte/s dribbler on the metrics port, while one normal client
  pings and one scrapes once a second (their latency is the one reported).

The load generators are also used by tests/rpc/test_rpc_load.py.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import xmlrpc.client
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # daemon_bench, beside this file

from daemon_bench import scenario as mixed_scenario

from mom.cli.rpc_cmds import connect

ROOT = Path(__file__).resolve().parents[1]
POLICY_INTERVAL = 2.0
# Seconds after the first ticks before measuring: the first rounds, every guest new,
# are not a steady state.
SETTLE = 10.0


# -- the daemon ------------------------------------------------------------------------------

def scenario(guests: int) -> str:
    """A host with `guests` guests of 1-4 GiB on varied workloads (enough memory: no thrashing)."""
    return mixed_scenario(guests, name="load")


def config_text(directory: Path, rpc: str, metrics: str, policy_interval: float = POLICY_INTERVAL) -> str:
    """A momd configuration: sim host in real time, monitors every second, policy every policy_interval."""
    return f"""[main]
hypervisor-interface: sim
main-loop-interval: 1
host-monitor-interval: 1
guest-monitor-interval: 1
guest-manager-interval: 1
policy-engine-interval: {policy_interval:g}
sample-history-length: 3
controllers: Balloon, KSM
policy-dir: {ROOT}/bench/policies/mom-sample
rpc-port: {rpc}
metrics-address: {metrics}
record-file: {directory}/record.jsonl
record-max-bytes: 1000000000
hypervisor-call-timeout: 5
[sim]
scenario: {directory}/scenario.toml
seed: 3
speed: 1
tree-dir: {directory}/tree
[logging]
log: stdio
verbosity: info
[host]
collectors: HostMemory, HostKSM, HostCpu
[guest]
collectors: GuestMemory, GuestBalloon
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


_TICK = re.compile(rb'^\{"tick":(\d+),"time":([0-9.eE+-]+)')


def tick_times(record: Path) -> list[tuple[int, float]]:
    """(tick number, clock time) of each complete line of a flight recorder file."""
    try:
        data = record.read_bytes()
    except FileNotFoundError:
        return []
    out = []
    for line in data.split(b"\n")[:-1]:  # the last piece is empty or half written
        m = _TICK.match(line)
        if m:
            out.append((int(m.group(1)), float(m.group(2))))
    return out


def intervals_between(ticks: list[tuple[int, float]], start: float, end: float) -> list[float]:
    """The intervals between consecutive ticks whose later tick falls within [start, end] (clock time)."""
    return [b[1] - a[1] for a, b in itertools.pairwise(ticks) if start <= b[1] <= end]


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank); nan for no values."""
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s) + 0.5) - 1))]


class Daemon:
    """A momd subprocess on the simulated host; stopped by its pid."""

    def __init__(self, directory: Path, guests: int, rpc: str, metrics: str = "",
                 policy_interval: float = POLICY_INTERVAL) -> None:
        self.dir = directory
        (directory / "scenario.toml").write_text(scenario(guests))
        conf = directory / "mom.conf"
        conf.write_text(config_text(directory, rpc, metrics, policy_interval))
        self.record = directory / "record.jsonl"
        self.log_path = directory / "momd.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "mom.cli.momd", "-c", str(conf)], cwd=ROOT,
                                     stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT)

    def wait_ticks(self, n: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while len(tick_times(self.record)) < n:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"momd: no {n} ticks:\n{self.log_path.read_text()[-2000:]}")
            time.sleep(0.2)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


# -- clients ---------------------------------------------------------------------------------

def client(address: str | int, timeout: float = 10.0) -> xmlrpc.client.ServerProxy:
    """An XML-RPC client for a unix socket path or a TCP port on 127.0.0.1 (momctl's)."""
    if isinstance(address, str):
        return connect(address, None, timeout)
    return connect(None, address, timeout)


def scrape(port: int, timeout: float = 10.0) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/metrics")
        r = conn.getresponse()
        body = r.read()
        if r.status != 200:
            raise OSError(f"HTTP {r.status}")
        return body
    finally:
        conn.close()


@dataclass
class Calls:
    """Latencies of the calls answered, the errors by kind, and the calls answered per
    load thread, collected by the load's threads."""

    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    answered: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def timed(self, call: Callable[[], Any]) -> None:
        t0 = time.monotonic()
        try:
            call()
        except Exception as e:  # noqa: BLE001 - counted by kind: the table shows them
            with self.lock:
                key = f"{type(e).__name__}: {e}"[:80]
                self.errors[key] = self.errors.get(key, 0) + 1
            return
        took = time.monotonic() - t0
        who = threading.current_thread().name
        with self.lock:
            self.latencies.append(took)
            self.answered[who] = self.answered.get(who, 0) + 1


class Load:
    """Threads that run `step` in a loop until stop(); their calls counted in `calls`."""

    def __init__(self, threads: int, step: Callable[[int, Calls], None], pause: float = 0.0,
                 nice: int = 0) -> None:
        """nice: the threads' scheduling priority (Linux: per thread), so that a load
        generator sharing the machine's CPUs with momd does not simply take them."""
        self.calls = Calls()
        self._stop = threading.Event()
        self._pause = pause
        self._nice = nice
        self._threads = [threading.Thread(target=self._run, args=(i, step), name=f"load-{i}", daemon=True)
                         for i in range(threads)]

    @property
    def answered(self) -> dict[str, int]:
        return self.calls.answered

    def _run(self, i: int, step: Callable[[int, Calls], None]) -> None:
        if self._nice:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self._nice)
        n = 0
        while not self._stop.is_set():
            step(n + i, self.calls)
            n += 1
            if self._pause:
                self._stop.wait(self._pause)

    def start(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(15)


def rpc_step(address: str | int, policy: str) -> Callable[[int, Calls], None]:
    """getStatistics, getActiveGuests, setPolicy in turn, each on a new connection."""
    def step(n: int, calls: Calls) -> None:
        mom = client(address)
        which = n % 3
        if which == 0:
            calls.timed(mom.getStatistics)
        elif which == 1:
            calls.timed(mom.getActiveGuests)
        else:
            calls.timed(lambda: mom.setPolicy(policy))
    return step


def scrape_step(port: int) -> Callable[[int, Calls], None]:
    def step(n: int, calls: Calls) -> None:
        calls.timed(lambda: scrape(port))
    return step


def deep_request(depth: int = 100_000) -> bytes:
    """A methodCall whose one parameter nests `depth` arrays deep."""
    return (b"<?xml version='1.0'?><methodCall><methodName>ping</methodName><params><param>"
            + b"<value><array><data>" * depth + b"</data></array></value>" * depth
            + b"</param></params></methodCall>")


def post(body: bytes, path: str = "/RPC2") -> bytes:
    return (f"POST {path} HTTP/1.0\r\nContent-Type: text/xml\r\nContent-Length: {len(body)}\r\n\r\n"
            .encode() + body)


def raw(address: str | int, data: bytes, timeout: float = 10.0) -> bytes:
    """Send data, read to the end; what was answered."""
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    target = address if isinstance(address, str) else ("127.0.0.1", address)
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(target)
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


def bad_step(address: str | int) -> Callable[[int, Calls], None]:
    """Malformed, deeply nested and wrong-method requests in turn."""
    bodies = [post(b"<methodCall><methodName>ping</methodName>"), post(deep_request(20_000)),
              post(b"not xml"), b"GET / HTTP/1.0\r\n\r\n"]

    def step(n: int, calls: Calls) -> None:
        calls.timed(lambda: raw(address, bodies[n % len(bodies)]))
    return step


class Hostile:
    """Bad clients kept up until stop(): `idle` connections that send nothing (spread
    over `targets`, reconnected when momd closes them), `non_readers` clients that ask
    for the statistics (or `non_reader_call`) and never read the answer (reconnected
    every few seconds; a unix socket's buffer takes about 200 KB of an answer, a TCP
    one on the loopback about 1.4 MB), and a client sending one byte a second to the
    metrics port."""

    def __init__(self, targets: list[str | int], idle: int = 300, non_readers: int = 16,
                 non_reader_target: str | int | None = None, dribble_port: int | None = None,
                 non_reader_call: str = "getStatistics") -> None:
        self.targets, self.idle, self.non_readers = targets, idle, non_readers
        self.non_reader_call = non_reader_call
        self.non_reader_target, self.dribble_port = non_reader_target, dribble_port
        self.reconnects = 0  # idle connections momd closed (and were opened again)
        self.dribbles: list[float] = []  # how long each 1 byte/s connection lasted until momd cut it
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._all: list[socket.socket] = []

    def _connect(self, address: str | int, rcvbuf: int = 0) -> socket.socket | None:
        family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
        s = socket.socket(family, socket.SOCK_STREAM)
        s.settimeout(5)
        if rcvbuf:  # before connecting: TCP's window is agreed then
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        try:
            s.connect(address if isinstance(address, str) else ("127.0.0.1", address))
        except OSError:
            s.close()
            return None
        with self._lock:
            self._all.append(s)
        return s

    def start(self) -> Hostile:
        for target in (self._keep_idle, self._keep_non_readers, self._dribble):
            t = threading.Thread(target=target, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def _keep_idle(self) -> None:
        """Keep `idle` connections open: a closed one (readable, at its end) is replaced."""
        sel = selectors.DefaultSelector()
        i = 0
        while not self._stop.is_set():
            while len(sel.get_map()) < self.idle and not self._stop.is_set():
                s = self._connect(self.targets[i % len(self.targets)])
                i += 1
                if s is None:
                    break
                sel.register(s, selectors.EVENT_READ, data=s)
            for key, _ in sel.select(0.2):
                closed: socket.socket = key.data
                sel.unregister(closed)
                closed.close()
                self.reconnects += 1
        sel.close()

    def _keep_non_readers(self) -> None:
        if not self.non_readers or self.non_reader_target is None:
            return
        request = post(xmlrpc.client.dumps((), self.non_reader_call).encode())
        while not self._stop.is_set():
            batch = []
            for _ in range(self.non_readers):
                s = self._connect(self.non_reader_target, rcvbuf=4096)
                if s is not None:
                    try:
                        s.sendall(request)
                    except OSError:
                        pass
                    batch.append(s)
            self._stop.wait(7)  # longer than momd's write timeout: it cut them meanwhile
            for s in batch:
                s.close()

    def _dribble(self) -> None:
        """One byte a second of an endless request on the metrics port, reconnecting when cut."""
        if self.dribble_port is None:
            return
        request = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"y" * 10_000
        while not self._stop.is_set():
            s = self._connect(self.dribble_port)
            if s is None:
                self._stop.wait(1)
                continue
            t0 = time.monotonic()
            try:
                for byte in request:
                    s.send(bytes([byte]))
                    if self._stop.wait(1):
                        break
                    s.setblocking(False)
                    try:
                        if s.recv(4096) == b"":
                            break  # cut
                    except BlockingIOError:
                        pass
                    finally:
                        s.setblocking(True)
            except OSError:
                pass
            if not self._stop.is_set():
                self.dribbles.append(time.monotonic() - t0)
            s.close()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(10)
        with self._lock:
            for s in self._all:
                s.close()


# -- measuring -------------------------------------------------------------------------------

@dataclass
class Result:
    name: str
    clients: int
    seconds: float
    calls: Calls
    intervals: list[float]

    def row(self) -> str:
        lat = self.calls.latencies
        errors = sum(self.calls.errors.values())
        kinds = "; ".join(sorted(self.calls.errors)) if errors else ""
        return (f"{self.name:<15} {self.clients:>7} {len(lat) / self.seconds:>8.1f} "
                f"{percentile(lat, 50) * 1000:>8.1f} {percentile(lat, 99) * 1000:>8.1f} {errors:>6} "
                f"{percentile(self.intervals, 50):>6.2f} {percentile(self.intervals, 99):>6.2f} "
                f"{max(self.intervals, default=float('nan')):>6.2f} {len(self.intervals):>5}  {kinds}")


HEADER = (f"{'load':<15} {'clients':>7} {'calls/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6} "
          f"{'tick50':>6} {'tick99':>6} {'tickmx':>6} {'ticks':>5}")


def measure(daemon: Daemon, seconds: float, loads: list[tuple[str, int, Load]], background: Any = None) -> None:
    """Run the loads (and the background's bad clients) for `seconds`; print a row per
    load: its calls, and the tick intervals meanwhile."""
    started = time.time()
    if background is not None:
        background.start()
    for _, _, load in loads:
        load.start()
    time.sleep(seconds)
    ended = time.time()
    for _, _, load in loads:
        load.stop()
    if background is not None:
        background.stop()
    time.sleep(POLICY_INTERVAL + 0.5)  # the tick due at the end is written
    intervals = intervals_between(tick_times(daemon.record), started + POLICY_INTERVAL, ended)
    for name, clients, load in loads or [("idle", 0, Load(0, lambda n, c: None))]:
        print(Result(name, clients, seconds, load.calls, intervals).row(), flush=True)


def probes(address: str | int, mport: int) -> list[tuple[str, int, Load]]:
    """A normal client: a ping and a scrape once a second, each given 5 s."""
    return [("  ping", 1, Load(1, lambda n, calls: calls.timed(lambda: client(address, 5).ping()), pause=1.0)),
            ("  scrape", 1, Load(1, lambda n, calls: calls.timed(lambda: scrape(mport, 5)), pause=1.0))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--guests", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--scrapers", type=int, default=20)
    ap.add_argument("--nice", type=int, default=0, help="the load threads' nice value (default 0)")
    ap.add_argument("--only", default="idle,tcp,metrics,bad,hostile-tcp,unix,hostile-unix")
    args = ap.parse_args()
    only = args.only.split(",")
    policy = "\n".join(p.read_text() for p in sorted((ROOT / "bench" / "policies" / "mom-sample").iterdir()))
    print(f"momd on the simulated host: {args.guests} guests, clock speed 1, policy every {POLICY_INTERVAL:g} s; "
          f"{args.seconds:g} s per load; load threads at nice {args.nice}")
    print(HEADER)
    with tempfile.TemporaryDirectory(prefix="momload-") as tmp:
        port, mport = free_port(), free_port()
        sock = str(Path(tmp, "mom.sock"))
        for transport, rpc, address in (("tcp", str(port), port), ("unix", sock, sock)):
            names = [n for n in only if n in ("idle", "bad", "metrics", transport, f"hostile-{transport}")
                     and (transport == "tcp" or n not in ("idle", "bad", "metrics"))]
            if not names:
                continue
            directory = Path(tmp, transport)
            directory.mkdir()
            daemon = Daemon(directory, args.guests, rpc, f"127.0.0.1:{mport}")
            try:
                daemon.wait_ticks(3)
                time.sleep(SETTLE)
                for name in names:
                    run_one(name, daemon, address, mport, policy, args)
            finally:
                daemon.close()
    print("\ncalls/s, p50, p99: the load's calls answered; errors: calls that failed (none should);")
    print("hostile: 300 idle connections, 16 clients not reading their answers (unix), a 1 byte/s scraper;")
    print("  the rows below it are a normal client's ping and scrape, once a second;")
    print(f"tick50/99/mx: seconds between policy ticks (nominal {POLICY_INTERVAL:g}) while the load ran.")


def run_one(name: str, daemon: Daemon, address: str | int, mport: int, policy: str, args: Any) -> None:
    if name == "idle":
        measure(daemon, args.seconds, [])
    elif name in ("tcp", "unix"):
        measure(daemon, args.seconds, [(name, args.clients, Load(args.clients, rpc_step(address, policy),
                                                                  nice=args.nice))])
    elif name == "metrics":
        measure(daemon, args.seconds, [(name, args.scrapers, Load(args.scrapers, scrape_step(mport),
                                                                   nice=args.nice))])
    elif name == "bad":
        measure(daemon, args.seconds, [(name, args.clients, Load(args.clients, bad_step(address),
                                                                  nice=args.nice))])
    elif name.startswith("hostile"):
        # Non-readers on the unix socket: at 200 guests the statistics (about 230 KB)
        # are more than its buffer takes, so momd's write waits on them.
        non_readers = 16 if isinstance(address, str) else 0
        print(f"{name:<15} {300 + non_readers + 1:>7}")
        hostile = Hostile([address], non_readers=non_readers, non_reader_target=address, dribble_port=mport)
        measure(daemon, args.seconds, probes(address, mport), hostile)


if __name__ == "__main__":
    main()
