"""momd against the vdsm double, configured with vdsm's own mom.conf.in and
policy set (plus an 01-parameters policy turning ballooning and KSM on).

The host seen by momd (proc-root/sys-root in tmp_path) is under memory
pressure: 16 GiB, 1.5 GiB free counting caches, 4 CPUs, KSM stopped. The
expected values below follow from vdsm's policies on that host."""

from __future__ import annotations

from pathlib import Path

from tests.support.certs import make_cert_set
from tests.support.net import free_port
from tests.support.wait import wait_until

from .conftest import guest_names, needs_shared

pytestmark = needs_shared

LIMITED = "11111111-aaaa-4000-8000-000000000001"
FREE = "11111111-aaaa-4000-8000-000000000002"
NOAGENT = "11111111-aaaa-4000-8000-000000000003"
DOWN = "11111111-aaaa-4000-8000-000000000004"
PAUSED = "11111111-aaaa-4000-8000-000000000005"
UP_NAMES = {"vm-limited", "vm-free", "vm-noagent"}

# 02-balloon.policy under pressure (free 9.4 % < 20 %): shrink by 5 % of 4 GiB,
# since the guest's used memory + its share of free memory stays below that.
FIRST_BALLOON_TARGET = int(4 * 1024 * 1024 * 0.95)
# 04-cputune.policy: 50 % of (100000 us * 4 host CPUs) spread over 2 vCPUs.
LIMITED_QUOTA, PERIOD = 100000, 100000
# 03-ksm.policy under pressure: run, sleep 10 ms for 16 GiB, pages_to_scan 64 + 300.
FIRST_KSM = {"run": 1, "sleep_millisecs": 10, "pages_to_scan": 364}


def vm_calls(double, vm_id):
    return [c for c in double.calls if c.method.startswith("VM.") and c.params.get("vmID") == vm_id]


def test_controls_reach_vdsm(tmp_path: Path, double_factory, momd_factory) -> None:
    """Balloon, CPU quota/period, IO tune and KSM calls arrive with vdsm's
    parameter names and the policies' values; only Up guests are managed; one
    bulk statistics call per collection round."""
    ksm_dir = tmp_path / "host" / "sys" / "kernel" / "mm" / "ksm"  # momd's sys-root
    double = double_factory(ksm_dir=ksm_dir)  # Host.setKsmTune writes sysfs, as supervdsm does
    double.start()
    m = momd_factory(double.port)

    balloon = double.wait_for("VM.setBalloonTarget", vmID=LIMITED)
    assert balloon[0].params == {"vmID": LIMITED, "target": FIRST_BALLOON_TARGET}
    quota = double.wait_for("VM.setCpuTuneQuota", vmID=LIMITED)
    assert quota[0].params == {"vmID": LIMITED, "quota": LIMITED_QUOTA}
    period = double.wait_for("VM.setCpuTunePeriod", vmID=LIMITED)
    assert period[0].params == {"vmID": LIMITED, "period": PERIOD}
    io = double.wait_for("VM.setIoTune", vmID=LIMITED)
    assert io[0].params == {"vmID": LIMITED, "tunables": [{
        "name": "vda", "path": "/rhev/data-center/mnt/disk-a",
        "ioTune": {"total_bytes_sec": 10_000_000, "read_bytes_sec": 0, "write_bytes_sec": 0,
                   "total_iops_sec": 500, "read_iops_sec": 0, "write_iops_sec": 0}}]}
    ksm = double.wait_for("Host.setKsmTune")
    assert ksm[0].params == {"tuningParams": FIRST_KSM}

    # Let a few more rounds run, then take the counts (the bounds below allow
    # for a round in progress).
    m.wait_records(lambda r: len(r) >= 6, what="6 policy ticks")
    records = m.records()
    with double.lock:
        calls = list(double.calls)
    stats_calls = sum(1 for c in calls if c.method == "Host.getAllVmStats")

    # Applied values are not sent again: vdsm reports them back (or, for IO
    # limits, the interface remembers what vdsm accepted).
    assert len(double.calls_of("VM.setIoTune")) == 1
    assert len(double.calls_of("VM.setCpuTuneQuota")) == 1
    assert len(double.calls_of("VM.setCpuTunePeriod")) == 1
    # Later KSM calls only move pages_to_scan (the policy's boost), run and sleep are in place.
    assert all(set(c.params["tuningParams"]) == {"pages_to_scan"} for c in double.calls_of("Host.setKsmTune")[1:])
    assert (ksm_dir / "run").read_text().strip() == "1"

    # Only Up guests: nothing for Down or Paused, and the policy saw exactly the Up ones.
    assert vm_calls(double, DOWN) == [] and vm_calls(double, PAUSED) == []
    assert all(guest_names(r) == UP_NAMES for r in records[1:]), [guest_names(r) for r in records]
    # No guest agent, no memory statistics: the balloon policy leaves that guest alone.
    assert not any(c.method == "VM.setBalloonTarget" for c in vm_calls(double, NOAGENT))
    # The unlimited guest is already at quota -1 / period 100000: no CPU calls.
    assert not any(c.method.startswith("VM.setCpuTune") for c in vm_calls(double, FREE))

    # One bulk call per round (discovery, host KSM and guest collection share it), not one per guest.
    # (One per guest would be at least 3 per tick; set calls make the next read fresh.)
    assert len(records) - 2 <= stats_calls <= 1.5 * len(records) + 2, (stats_calls, len(records))
    assert len(double.calls_of("Host.getAllVmIoTunePolicies")) == 1
    assert double.calls_of("Host.ping2"), "momd pings vdsm after connecting"
    assert len(double.connects) == 1 and double.protocol_errors == [] and double.tls_failures == []
    connect = double.connects[0]  # STOMP 1.2 CONNECT as vdsm wants it (the double refuses others)
    assert connect["accept-version"] == "1.2" and connect["host"] == "127.0.0.1"
    assert connect["heart-beat"] == "5000,5000"
    assert [s["ack"] for s in double.subscribes] == ["auto"]
    assert m.count("vdsm") and "Traceback" not in m.log()


def test_error_reply_logged_once_tick_goes_on(double_factory, momd_factory) -> None:
    """vdsm error answers are logged once per distinct message (by the engine's
    fault log, not also by the interface) across many ticks; the rest of each
    tick goes on."""
    double = double_factory()
    double.fail("VM.setBalloonTarget", "Balloon operation is not available", code=53)
    double.fail("Host.getAllVmIoTunePolicies", "Recovering from crash or Initializing", code=99)
    double.start()
    m = momd_factory(double.port)
    double.wait_for("VM.setBalloonTarget", count=3, vmID=LIMITED)  # the policy keeps asking
    double.wait_for("Host.setKsmTune")
    double.wait_for("VM.setCpuTuneQuota", vmID=LIMITED)
    n = len(m.records())
    m.wait_records(lambda r: len(r) >= n + 5, what="ticks after the errors")
    double.wait_for("VM.setBalloonTarget", count=6, vmID=LIMITED)
    log = m.log()
    assert m.count("Balloon operation is not available (code 53)") == 1, log[-3000:]
    assert m.count("Recovering from crash or Initializing (code 99)") == 1, log[-3000:]
    assert m.count("vdsm answered") == 0  # the interface does not log them itself
    assert m.count("retrying later") == 0  # until the retry, the same fault (not a second message)
    assert double.calls_of("VM.setIoTune") == []  # no IO data, nothing to tune
    assert len(double.calls_of("Host.getAllVmIoTunePolicies")) == 1  # retried after 30 s, not every round
    assert m.alive()


def test_vdsm_restarts_mid_run(double_factory, momd_factory) -> None:
    """vdsm going away and coming back: one log line for the outage, guests kept,
    momd reconnects (same port) and goes on."""
    double = double_factory()
    double.start()
    m = momd_factory(double.port)
    m.wait_records(lambda r: r and guest_names(r[-1]) == UP_NAMES, what="a tick with the guests")
    double.stop()
    m.wait_log("lost the connection to vdsm", timeout=10)
    down = len(m.records())
    m.wait_records(lambda r: len(r) >= down + 3, what="several rounds without vdsm")
    stats_before = len(double.calls_of("Host.getAllVmStats"))
    n = len(m.records())
    double.start()
    m.wait_log(" again after ", timeout=15)
    double.wait_for("Host.getAllVmStats", count=stats_before + 1)
    m.wait_records(lambda r: len(r) > n + 1 and guest_names(r[-1]) == UP_NAMES, what="ticks after the restart")
    log = m.log()
    assert m.count("lost the connection to vdsm") == 1, log[-3000:]
    assert m.count("cannot reconnect to vdsm") == 0  # the outage has its one warning already
    assert m.count("connected to vdsm at 127.0.0.1") == 2 and " again after " in log
    assert "is gone" not in log  # the guests were kept through the outage
    assert len(double.connects) == 2
    assert double.protocol_errors == []


def test_vdsm_not_running_at_start(double_factory, momd_factory) -> None:
    """momd keeps retrying (with back-off) when vdsm is not up yet, then manages the guests."""
    port = free_port()
    m = momd_factory(port)
    m.wait_log(f"cannot connect to vdsm at 127.0.0.1:{port}: connection refused", timeout=10)
    m.wait_records(lambda r: len(r) >= 3, what="rounds without vdsm")
    assert m.count("cannot connect to vdsm") == 1
    double = double_factory(port=port)
    double.start()
    double.wait_for("VM.setBalloonTarget", vmID=LIMITED, timeout=20)
    assert m.count(f"connected to vdsm at 127.0.0.1:{port}") == 1
    m.wait_records(lambda r: r and guest_names(r[-1]) == UP_NAMES, what="a tick with the guests")


def test_wrong_ca_is_refused(tmp_path: Path, double_factory, momd_factory, certs) -> None:
    """MOM's CA did not sign vdsm's certificate: no connection, a clear error, no calls."""
    other = make_cert_set(tmp_path / "other", ca_cn="Another CA")
    (certs.pki_dir / "certs" / "cacert.pem").write_bytes(other.ca_cert.read_bytes())
    double = double_factory()
    double.start()
    m = momd_factory(double.port)
    log = m.wait_log("cannot connect to vdsm", timeout=10)
    line = next(line for line in log.splitlines() if "cannot connect to vdsm" in line)
    assert "certificate verify failed" in line and "ca-cert-file" in line and "cacert.pem" in line, line
    m.wait_records(lambda r: len(r) >= 3, what="rounds without vdsm")  # it keeps trying, quietly
    wait_until(lambda: len(double.tls_failures) >= 2, 15, what="a retry, refused again",
               detail=lambda: str(double.tls_failures))
    assert m.count("cannot connect to vdsm") == 1
    assert double.calls == [] and double.connects == []
    assert double.tls_failures, "the double saw the refused handshakes"
    assert all(not r["guests"] for r in m.records())  # no guest is managed without vdsm
