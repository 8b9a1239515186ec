"""Prometheus metrics (``[main] metrics-address: HOST:PORT``), with prometheus_client.

Gauges are read from the engine's newest published status (mom.engine.status)
at scrape time; counters and histograms are fed by the engine's tick and step
listeners. Memory is in
bytes (MOM's rows hold KiB), times in seconds. Names:

Host (newest host row; a metric is absent when its collector is off)::

    mom_host_memory_total_bytes, mom_host_memory_free_bytes,
    mom_host_memory_unused_bytes, mom_host_memory_anon_bytes,
    mom_host_memory_available_kernel_bytes,
    mom_host_swap_total_bytes, mom_host_swap_used_bytes,
    mom_host_ksm_run, mom_host_ksm_pages_to_scan, mom_host_ksm_sleep_seconds,
    mom_host_ksm_pages_shared, mom_host_ksm_pages_sharing,
    mom_host_ksm_pages_unshared, mom_host_ksm_pages_volatile,
    mom_host_ksm_merge_across_nodes, mom_host_ksm_shareable_bytes,
    mom_host_ksm_full_scans_total, mom_host_ksmd_cpu_ratio,
    mom_host_memory_pressure_ratio{kind="some|full",window="10s|60s|300s"},
    mom_host_memory_pressure_stall_seconds_total{kind}

Guests (label ``guest``, the guest's name)::

    mom_guest_balloon_current_bytes, mom_guest_balloon_max_bytes,
    mom_guest_balloon_min_bytes, mom_guest_memory_unused_bytes,
    mom_guest_memory_available_bytes, mom_guest_memory_free_bytes,
    mom_guest_swap_in_bytes_total, mom_guest_swap_out_bytes_total,
    mom_guest_major_faults_total, mom_guest_minor_faults_total,
    mom_guest_balloon_free_page_reporting,
    mom_guest_virtio_mem_plugged_bytes, mom_guest_virtio_mem_requested_bytes,
    mom_guest_virtio_mem_block_bytes, mom_guest_virtio_mem_max_bytes,
    mom_guest_oom_kills_total, mom_guest_alloc_stalls_total,
    mom_guest_hugetlb_allocations_total, mom_guest_hugetlb_allocation_failures_total

(the newer statistics and virtio-mem only for guests that report them)

The daemon::

    mom_guests                                       managed guests
    mom_policy_ticks_total                           policy runs
    mom_actions_total{controller,control}            controls applied
    mom_policy_evaluation_seconds                    histogram
    mom_collection_duration_seconds{step}            histogram (discovery, host, guests)
    mom_errors_total{component}                      faults seen (FaultLog)
"""

from __future__ import annotations

import gzip
import logging
import socket
import threading
import time
from collections.abc import Hashable, Iterable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mom.engine.status import EngineStatus, StatusSource
from mom.rpc.server import LISTEN_BACKLOG, HttpServer, Refusal, Request, http_response

log = logging.getLogger("mom.metrics")

KIB = 1024
METRICS_PATHS = ("/metrics", "/")
MAX_SCRAPE_BODY = 64 << 10  # a GET has no use for a body; a small one is read and ignored
EXPOSITION_MAX_AGE = 5.0  # seconds: rendered again at least this often even if nothing seems to change

# host row field -> (metric name, help, factor)
HOST_GAUGES = [
    ("mem_available", "mom_host_memory_total_bytes", "Host RAM (MemTotal)", KIB),
    ("mem_free", "mom_host_memory_free_bytes", "Host free memory counting the page cache as free", KIB),
    ("mem_unused", "mom_host_memory_unused_bytes", "Host memory not used for anything (MemFree)", KIB),
    ("anon_pages", "mom_host_memory_anon_bytes", "Host memory in anonymous mappings", KIB),
    ("mem_available_kernel", "mom_host_memory_available_kernel_bytes", "The kernel's MemAvailable", KIB),
    ("swap_total", "mom_host_swap_total_bytes", "Host swap space", KIB),
    ("swap_usage", "mom_host_swap_used_bytes", "Host swap space in use", KIB),
    ("ksm_run", "mom_host_ksm_run", "KSM state: 0 stopped, 1 running, 2 unmerged", 1),
    ("ksm_pages_to_scan", "mom_host_ksm_pages_to_scan", "Pages ksmd scans per wake-up", 1),
    ("ksm_sleep_millisecs", "mom_host_ksm_sleep_seconds", "ksmd's sleep between scans", 0.001),
    ("ksm_pages_shared", "mom_host_ksm_pages_shared", "KSM shared pages in use", 1),
    ("ksm_pages_sharing", "mom_host_ksm_pages_sharing", "Sites sharing KSM pages (memory saved)", 1),
    ("ksm_pages_unshared", "mom_host_ksm_pages_unshared", "Unique pages KSM still checks", 1),
    ("ksm_pages_volatile", "mom_host_ksm_pages_volatile", "Pages changing too fast to merge", 1),
    ("ksm_merge_across_nodes", "mom_host_ksm_merge_across_nodes", "1 when KSM merges across NUMA nodes", 1),
    ("ksm_shareable", "mom_host_ksm_shareable_bytes", "Estimate of memory offered to KSM", KIB),
    ("ksmd_cpu_usage", "mom_host_ksmd_cpu_ratio", "CPU used by ksmd, share of one CPU", 0.01),
]
HOST_COUNTERS = [
    ("ksm_full_scans", "mom_host_ksm_full_scans", "Completed KSM scans", 1),
]
GUEST_GAUGES = [
    ("balloon_cur", "mom_guest_balloon_current_bytes", "Guest memory size (balloon in effect)", KIB),
    ("balloon_max", "mom_guest_balloon_max_bytes", "Guest maximum memory", KIB),
    ("balloon_min", "mom_guest_balloon_min_bytes", "Guaranteed minimum of the guest's balloon", KIB),
    ("mem_unused", "mom_guest_memory_unused_bytes", "Memory the guest leaves completely unused", KIB),
    ("mem_available", "mom_guest_memory_available_bytes", "Memory the guest OS sees in total", KIB),
    ("mem_free", "mom_guest_memory_free_bytes", "Guest unused memory plus reclaimable caches", KIB),
    ("balloon_free_page_reporting", "mom_guest_balloon_free_page_reporting",
     "1 when the guest's balloon reports free pages to the host", 1),
    ("virtio_mem_size", "mom_guest_virtio_mem_plugged_bytes", "Memory the guest has plugged from its virtio-mem device",
     KIB),
    ("virtio_mem_requested", "mom_guest_virtio_mem_requested_bytes",
     "Memory the virtio-mem device asks the guest to plug", KIB),
    ("virtio_mem_block", "mom_guest_virtio_mem_block_bytes", "The virtio-mem device's block size", KIB),
    ("virtio_mem_max", "mom_guest_virtio_mem_max_bytes", "The virtio-mem device's region, the most it can plug",
     KIB),
]
GUEST_COUNTERS = [
    ("swap_in", "mom_guest_swap_in_bytes", "Memory the guest swapped in", KIB),
    ("swap_out", "mom_guest_swap_out_bytes", "Memory the guest swapped out", KIB),
    ("major_fault", "mom_guest_major_faults", "Guest major page faults", 1),
    ("minor_fault", "mom_guest_minor_faults", "Guest minor page faults", 1),
    ("oom_kills", "mom_guest_oom_kills", "Processes the guest's OOM killer killed", 1),
    ("alloc_stalls", "mom_guest_alloc_stalls", "Guest allocations that entered direct reclaim", 1),
    ("hugetlb_pgalloc", "mom_guest_hugetlb_allocations", "Guest huge page allocations", 1),
    ("hugetlb_pgfail", "mom_guest_hugetlb_allocation_failures", "Guest huge page allocations that failed", 1),
]
PRESSURE_WINDOWS = ("10", "60", "300")


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


class EngineCollector(Collector):
    """Reads the engine's newest host and guest rows and its fault counts at scrape time."""

    def __init__(self, status: StatusSource) -> None:
        self.status = status

    def collect(self) -> Iterable[Metric]:
        status = self.status()
        host = status.host
        guests = [(g.name, g.row if g.row is not None else {}) for g in status.guests]
        for field, name, doc, factor in HOST_GAUGES:
            v = _num(host.get(field))
            if v is not None:
                yield GaugeMetricFamily(name, doc, value=v * factor)
        for field, name, doc, factor in HOST_COUNTERS:
            v = _num(host.get(field))
            if v is not None:
                yield CounterMetricFamily(name, doc, value=v * factor)
        ratio = GaugeMetricFamily("mom_host_memory_pressure_ratio",
                                  "Share of time tasks stalled on memory (PSI), by kind and window",
                                  labels=["kind", "window"])
        stall = CounterMetricFamily("mom_host_memory_pressure_stall_seconds",
                                    "Time tasks stalled on memory since boot (PSI)", labels=["kind"])
        for kind in ("some", "full"):
            for w in PRESSURE_WINDOWS:
                v = _num(host.get(f"mem_pressure_{kind}_avg{w}"))
                if v is not None:
                    ratio.add_metric([kind, f"{w}s"], v / 100.0)
            v = _num(host.get(f"mem_pressure_{kind}_total"))
            if v is not None:
                stall.add_metric([kind], v / 1e6)
        if ratio.samples:
            yield ratio
        if stall.samples:
            yield stall

        yield GaugeMetricFamily("mom_guests", "Guests MOM manages", value=len(guests))
        for field, name, doc, factor in GUEST_GAUGES:
            fam = GaugeMetricFamily(name, doc, labels=["guest"])
            for gname, row in guests:
                v = _num(row.get(field))
                if v is not None:
                    fam.add_metric([gname], v * factor)
            if fam.samples:
                yield fam
        for field, name, doc, factor in GUEST_COUNTERS:
            cfam = CounterMetricFamily(name, doc, labels=["guest"])
            for gname, row in guests:
                v = _num(row.get(field))
                if v is not None:
                    cfam.add_metric([gname], v * factor)
            if cfam.samples:
                yield cfam

        errors = CounterMetricFamily("mom_errors", "Faults reported, by component", labels=["component"])
        counts = status.faults.counts
        for comp in sorted(set(counts) | {"collector", "controller", "engine", "hypervisor", "policy"}):
            errors.add_metric([comp], counts.get(comp, 0))
        yield errors


class Metrics:
    """The registry and its feeders; ``on_tick`` and ``on_step`` are the engine's listeners."""

    def __init__(self, status: StatusSource) -> None:
        self.status = status
        self.version = 0  # bumped by every tick and step: the exposition changes only then
        self._cache_lock = threading.Lock()
        self._cache_key: Hashable = None
        self._cache_time = 0.0
        self._cache: dict[bool, bytes] = {}  # gzipped? -> body
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(EngineCollector(status))
        self.ticks = Counter("mom_policy_ticks", "Policy runs", registry=self.registry)
        self.actions = Counter("mom_actions", "Controls applied, by controller and control",
                               ["controller", "control"], registry=self.registry)
        self.evaluation = Histogram("mom_policy_evaluation_seconds", "Time to evaluate the policy",
                                    registry=self.registry,
                                    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
        self.collection = Histogram("mom_collection_duration_seconds",
                                    "Time of a discovery or collection step", ["step"], registry=self.registry,
                                    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))

    def on_tick(self, status: EngineStatus) -> None:
        record = status.last_tick
        if record is None:
            return
        self.version += 1
        self.ticks.inc()
        self.evaluation.observe(record.eval_seconds)
        for a in record.actions:
            if a.applied:
                self.actions.labels(a.controller, a.control).inc()

    def on_step(self, step: str, seconds: float) -> None:
        self.version += 1
        if step in ("discovery", "host", "guests"):
            self.collection.labels(step).observe(seconds)

    def exposition(self, gzipped: bool = False) -> bytes:
        """The text exposition, rendered once per engine step (at 200 guests a render
        takes milliseconds of CPU; twenty scrapers must not multiply that)."""
        # Read before rendering: at worst a newer render is kept under an older key.
        status = self.status()
        key = (self.version, status.tick_count, tuple(sorted(status.faults.counts.items())))
        with self._cache_lock:
            if key != self._cache_key or time.monotonic() - self._cache_time > EXPOSITION_MAX_AGE:
                self._cache = {False: generate_latest(self.registry)}
                self._cache_key, self._cache_time = key, time.monotonic()
            if gzipped and True not in self._cache:
                self._cache[True] = gzip.compress(self._cache[False], compresslevel=1)
            return self._cache[gzipped]


class MetricsServer:
    """Serves /metrics (and /) on one selector thread, on the RPC's footing: timeouts,
    a connection cap, non-blocking writes, the clients' CPU budget. The exposition is
    rendered at most once per engine step (cached), however many scrapers ask.
    Binds at construction (OSError), serves after start()."""

    def __init__(self, metrics: Metrics, host: str, port: int) -> None:
        self.metrics = metrics
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(LISTEN_BACKLOG)
        except OSError:
            sock.close()
            raise
        self.address = sock.getsockname()
        self.http = HttpServer(sock, "mom-metrics", "metrics", self._check, self._answer, logger=log)

    @staticmethod
    def _check(req: Request) -> int:
        if req.method not in ("GET", "HEAD"):
            raise Refusal("http", "405 Method Not Allowed",
                          f"{req.method} is not allowed: this is momd's metrics endpoint (GET /metrics), "
                          "not its RPC port", {"Allow": "GET, HEAD"})
        if req.path not in METRICS_PATHS:
            raise Refusal("http", "404 Not Found", f"no {req.path} here: momd's metrics are at /metrics")
        return MAX_SCRAPE_BODY

    def _answer(self, req: Request) -> bytes:
        gzipped = "gzip" in req.headers.get("accept-encoding", "")
        body = self.metrics.exposition(gzipped)
        extra = {"Content-Encoding": "gzip"} if gzipped else None
        return http_response("200 OK", body, CONTENT_TYPE_LATEST, extra, head_only=req.method == "HEAD")

    def start(self) -> None:
        self.http.start()
        host, port = self.address[:2]
        log.info("metrics on http://%s:%s/metrics", f"[{host}]" if ":" in host else host, port)

    def close(self) -> None:
        """Stop serving (within about a second: writes never block the serving thread)."""
        self.http.close()
