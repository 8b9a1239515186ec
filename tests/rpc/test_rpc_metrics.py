"""The Prometheus endpoint of a running momd, scraped and parsed with
prometheus_client's text parser."""

from __future__ import annotations

import gzip
import select
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.momd import Momd
from tests.support.net import free_port
from tests.support.rpc import unix_client, write_config


def scrape(port: int) -> dict[str, dict[tuple, float]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_metrics_endpoint(tmp_path: Path, sockdir: Path) -> None:
    port = free_port()
    sock = str(sockdir / "metrics.sock")
    cfg = write_config(tmp_path, rpc=sock, metrics=f"127.0.0.1:{port}",
                       host_collectors="HostMemory, HostKSM, HostCpu, HostPressure")
    m = Momd(cfg)
    try:
        mom = unix_client(sock)
        m.wait_listening(mom)
        records = m.wait_ticks(5)
        metrics = scrape(port)
        stats = mom.getStatistics()
        host = stats["host"]
        # Host gauges, in bytes.
        assert metrics["mom_host_memory_total_bytes"][()] == host["mem_available"] * 1024 == 4096 * 2**20
        for name in ("mom_host_memory_free_bytes", "mom_host_memory_unused_bytes", "mom_host_swap_total_bytes",
                     "mom_host_swap_used_bytes", "mom_host_ksm_run", "mom_host_ksm_pages_sharing",
                     "mom_host_ksm_pages_to_scan", "mom_host_ksm_sleep_seconds", "mom_host_ksmd_cpu_ratio"):
            assert () in metrics[name], name
        assert metrics["mom_host_swap_total_bytes"][()] == 1024 * 2**20
        pressure = metrics["mom_host_memory_pressure_ratio"]
        assert (("kind", "some"), ("window", "10s")) in pressure
        assert all(0 <= v <= 1 for v in pressure.values())
        assert set(metrics["mom_host_memory_pressure_stall_seconds_total"]) == {(("kind", "some"),),
                                                                               (("kind", "full"),)}
        # Per guest, labelled by name.
        assert metrics["mom_guests"][()] == 3
        for name in ("mom_guest_balloon_current_bytes", "mom_guest_balloon_max_bytes", "mom_guest_balloon_min_bytes",
                     "mom_guest_memory_unused_bytes", "mom_guest_memory_available_bytes",
                     "mom_guest_swap_in_bytes_total", "mom_guest_swap_out_bytes_total"):
            assert set(metrics[name]) == {(("guest", g),) for g in ("vm1", "vm2", "vm3")}, name
        assert metrics["mom_guest_balloon_max_bytes"][(("guest", "vm1"),)] == 2048 * 2**20
        assert metrics["mom_guest_balloon_min_bytes"][(("guest", "vm2"),)] == 256 * 2**20
        # Counters and histograms fed by the ticks.
        assert metrics["mom_policy_ticks_total"][()] >= 5
        applied = {}
        for r in m.records():
            for a in r["actions"]:
                if a["applied"]:
                    key = (("control", a["control"]), ("controller", a["controller"]))
                    applied[key] = applied.get(key, 0) + 1
        assert applied, "the sample policies act on this host"
        actions = scrape(port)["mom_actions_total"]
        for key, count in applied.items():
            assert actions[key] >= count
        assert metrics["mom_policy_evaluation_seconds_count"][()] >= 5
        assert metrics["mom_policy_evaluation_seconds_sum"][()] > 0
        collection = metrics["mom_collection_duration_seconds_count"]
        assert {(("step", s),) for s in ("discovery", "host", "guests")} <= set(collection)
        errors = metrics["mom_errors_total"]
        assert errors[(("component", "policy"),)] == 0
        # A policy that always fails is refused at once (its trial run fails)...
        assert mom.setNamedPolicy("zz-bad", '(Host.Control "ksm_run" (/ 1 0))') is False
        # ... one that fails from its second run on is accepted, and its failures count as policy errors.
        armed = '(if (== (Host.GetVar "armed") 1) (/ 1 0) (Host.SetVar "armed" 1))'
        assert mom.setNamedPolicy("zz-bad", armed) is True
        n = len(records)
        m.wait_for("a policy error", lambda: scrape(port)["mom_errors_total"][(("component", "policy"),)] > 0,
                   timeout=10)
        assert len(m.records()) > n
        # Names follow the conventions.
        for name in scrape(port):
            assert name.startswith("mom_"), name
    finally:
        m.close()


def test_slow_client_does_not_block_scrapes(tmp_path: Path) -> None:
    """One connection sending a byte a second: scrapes go on, and it is cut within the
    5 s request timeout. The endpoint answers HEAD and gzip, and refuses POST with 405."""
    port = free_port()
    m = Momd(write_config(tmp_path, rpc="-1", metrics=f"127.0.0.1:{port}"))
    slow = None
    try:
        m.wait_for("the metrics endpoint", lambda: _answers(port))
        slow = socket.create_connection(("127.0.0.1", port), timeout=10)
        t0 = time.monotonic()
        cut = None
        for byte in b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"y" * 20:
            try:
                slow.send(bytes([byte]))
            except OSError:
                cut = time.monotonic() - t0  # reset by momd
                break
            assert "mom_guests" in scrape(port)  # answered meanwhile
            if select.select([slow], [], [], 1.0)[0]:  # a byte a second, listening for the cut
                cut = time.monotonic() - t0  # momd answered 408 or closed it
                break
        assert cut is not None and cut < 7.0, cut
        m.wait_log("metrics: cut a client that did not send its request within 5 s")

        with urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/metrics", method="HEAD"),
                                    timeout=5) as r:
            assert r.status == 200 and r.read() == b"" and int(r.headers["Content-Length"]) > 1000
        req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={"Accept-Encoding": "gzip"})
        with urllib.request.urlopen(req, timeout=5) as r:
            assert r.headers["Content-Encoding"] == "gzip"
            assert b"mom_guests 3.0" in gzip.decompress(r.read())
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/metrics", data=b"x"), timeout=5)
        assert e.value.code == 405 and e.value.headers["Allow"] == "GET, HEAD"
        assert "Traceback" not in m.log()
    finally:
        if slow is not None:
            slow.close()
        m.close()


def _answers(port: int) -> bool:
    try:
        return "mom_guests" in scrape(port)
    except OSError:
        return False


VIRTIO_MEM_SCENARIO = """\
name = "elastic"
seed = 3
[host]
memory = 4096
swap = 1024
[[guest]]
name = "elastic"
max = 1024
min = 256
free_page_reporting = true
workload = { type = "steady", level = 300 }
[guest.virtio_mem]
max = "1G"
block = "2M"
requested = "512M"
[[guest]]
name = "plain"
max = 1024
min = 256
workload = { type = "steady", level = 300 }
"""


def test_virtio_mem_and_the_newer_statistics(tmp_path: Path, sockdir: Path) -> None:
    """A guest with a virtio-mem device and free page reporting beside one with neither:
    the virtio-mem gauges only for the first, free page reporting 1 and 0, and the
    guests' OOM kills and allocation stalls as counters (the simulator reports them)."""
    port = free_port()
    sock = str(sockdir / "metrics.sock")
    policy = tmp_path / "none.policy"
    policy.write_text("0\n")  # nothing changes the sizes read below
    cfg = write_config(tmp_path, rpc=sock, metrics=f"127.0.0.1:{port}", scenario_text=VIRTIO_MEM_SCENARIO,
                       policy=str(policy), controllers="Balloon, VirtioMem", host_collectors="HostMemory",
                       guest_collectors="GuestMemory, GuestBalloon, GuestVirtioMemOptional")
    m = Momd(cfg)
    try:
        mom = unix_client(sock)
        m.wait_listening(mom)
        m.wait_ticks(2)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            types = {f.name: f.type for f in text_string_to_metric_families(r.read().decode())}
        metrics = scrape(port)
    finally:
        m.close()
    elastic, plain = (("guest", "elastic"),), (("guest", "plain"),)
    assert metrics["mom_guest_virtio_mem_plugged_bytes"] == {elastic: 512 * 2**20}
    assert metrics["mom_guest_virtio_mem_requested_bytes"] == {elastic: 512 * 2**20}
    assert metrics["mom_guest_virtio_mem_block_bytes"] == {elastic: 2 * 2**20}
    assert metrics["mom_guest_virtio_mem_max_bytes"] == {elastic: 2**30}
    assert metrics["mom_guest_balloon_free_page_reporting"] == {elastic: 1, plain: 0}
    for name in ("mom_guest_virtio_mem_plugged_bytes", "mom_guest_balloon_free_page_reporting"):
        assert types[name] == "gauge", name
    for name in ("mom_guest_oom_kills", "mom_guest_alloc_stalls"):
        assert types[name] == "counter", name
        assert set(metrics[f"{name}_total"]) == {elastic, plain}, name
        assert all(v >= 0 for v in metrics[f"{name}_total"].values())
