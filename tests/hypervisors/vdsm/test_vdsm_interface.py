"""VdsmInterface and VdsmClient in-process against the vdsm double (real TLS,
real STOMP): field mapping, caching, errors, connection loss and TLS refusal."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mom.daemon.config import load_config
from mom.hypervisors import interface_class
from mom.hypervisors.base import GuestGone, GuestInfo, HypervisorError, HypervisorUnavailable
from mom.hypervisors.vdsm import VdsmClient, VdsmConfigError, VdsmInterface, VdsmUnavailable, io_tune_section
from tests.support.certs import CertSet, make_cert_set
from tests.support.net import free_port
from tests.support.vdsm_double import IO_KEYS, Disk, Guest, VdsmDouble
from tests.support.wait import wait_until

ALL = {"memory", "balloon", "cpu_tune", "io_tune"}


def down_message(port: int) -> str:
    return f"no connection to vdsm at 127.0.0.1:{port} (reconnecting in the background)"


def our_threads() -> list[str]:
    """The process's threads, less the double's own."""
    return [t.name for t in threading.enumerate() if not t.name.startswith("vdsm-double")]


def make_client(certs: CertSet, port: int, **kw: Any) -> VdsmClient:
    kw.setdefault("timeout", 2.0)
    return VdsmClient("127.0.0.1", port, str(certs.client_key), str(certs.client_cert), str(certs.ca_cert), **kw)


@pytest.fixture
def iface_factory(certs: CertSet) -> Iterator[Any]:
    made: list[VdsmInterface] = []

    def make(port: int, stats_max_age: float = 5.0, monotonic: Any = time.monotonic, **kw: Any) -> VdsmInterface:
        client = make_client(certs, port, **kw)
        iface = VdsmInterface(client, stats_max_age=stats_max_age, monotonic=monotonic)
        made.append(iface)
        return iface

    yield make
    for i in made:
        i.close()


def test_names_and_config_aliases(tmp_path: Path, certs: CertSet) -> None:
    assert interface_class("vdsm") is VdsmInterface and VdsmInterface.bulk
    for alias in ("vdsmjsonrpcbulk", "vdsmjsonrpc", "vdsmjsonrpcclient"):
        conf = tmp_path / f"{alias}.conf"
        conf.write_text(f"[main]\nhypervisor-interface: {alias}\n[vdsm]\npki-dir: {certs.pki_dir}\nport: 1234\n")
        cfg = load_config(str(conf))
        assert interface_class(cfg.main.hypervisor_interface) is VdsmInterface
        iface = VdsmInterface.from_config(cfg)
        try:
            assert (iface.client.host, iface.client.port) == ("127.0.0.1", 1234)
            assert iface.client.files.cert_path == str(certs.client_cert)
            assert not iface.client.connected  # nothing is dialled before the first call
        finally:
            iface.close()


def test_bad_pki_is_a_startup_error(tmp_path: Path, certs: CertSet) -> None:
    """One line for the operator, in a MomError of the interface's own (momd --check
    and a start print it: tests/daemon/test_momd_config.py)."""
    conf = tmp_path / "mom.conf"
    conf.write_text(f"[main]\nhypervisor-interface: vdsm\n[vdsm]\npki-dir: {tmp_path / 'nowhere'}\n")
    with pytest.raises(VdsmConfigError, match=r"\[vdsm\] ca-cert-file .*nowhere/certs/cacert.pem: No such file"):
        VdsmInterface.from_config(load_config(str(conf)))
    # A key that does not belong to the certificate.
    other = make_cert_set(tmp_path / "other")
    (certs.pki_dir / "keys" / "vdsmkey.pem").write_bytes(other.client_key.read_bytes())
    with pytest.raises(VdsmConfigError, match=r"cert-file/key-file .*KEY_VALUES_MISMATCH"):
        make_client(certs, 1)


def test_mapping_and_only_up_guests(double_factory, iface_factory) -> None:
    disk = Disk("vda", "/dev/vda", guaranteed=dict.fromkeys(IO_KEYS, 1), maximum=dict.fromkeys(IO_KEYS, 1000),
                current=dict.fromkeys(IO_KEYS, 7))
    guests = [
        Guest("u-1", "one", pid=321, majflt=5, pageflt=505, swap_total=2048, swap_usage=1024,
              vcpu_user_limit=40, vcpu_quota=25000, vcpu_period=100000, vcpu_count=3, disks=[disk]),
        Guest("u-2", "noagent", mem_usage=0),
        Guest("u-3", "down", status="Down"),
        Guest("u-4", "migrating", status="Migration Source"),
    ]
    double = double_factory(guests).start()
    iface = iface_factory(double.port)
    listed = iface.list_guests()
    assert listed == [GuestInfo("u-1", "one", 321), GuestInfo("u-2", "noagent", None)]
    data = iface.collect_all(listed + [GuestInfo("u-3", "down")], ALL)
    assert set(data) == {"u-1", "u-2"}  # a guest that is not Up is left out
    one = data["u-1"]
    assert one.memory == {"mem_available": 4194304, "mem_unused": 2097152, "mem_free": 2359296,
                          "major_fault": 5, "minor_fault": 500, "swap_in": 0, "swap_out": 0,
                          "swap_total": 2048, "swap_usage": 1024}
    assert one.balloon == {"balloon_cur": 4194304, "balloon_max": 4194304, "balloon_min": 1048576}
    assert one.cpu_tune == {"vcpu_user_limit": 40, "vcpu_quota": 25000, "vcpu_period": 100000, "vcpu_count": 3}
    assert one.io_tune == [{"name": "vda", "path": "/dev/vda", "guaranteed": dict.fromkeys(IO_KEYS, 1),
                            "maximum": dict.fromkeys(IO_KEYS, 1000), "current": dict.fromkeys(IO_KEYS, 7)}]
    assert one.errors == {}
    noagent = data["u-2"]
    assert noagent.memory is None and "guest agent is not active" in noagent.errors["memory"]
    assert noagent.balloon is not None and noagent.io_tune is None
    # Everything above cost one bulk stats call and one IO policy call.
    assert double.methods().count("Host.getAllVmStats") == 1
    assert double.methods().count("Host.getAllVmIoTunePolicies") == 1


def test_io_tune_matching() -> None:
    """Policies meet their device's current limits by path, by name when a path
    is missing; a policy for a device without current limits is left out."""
    entry = {
        "policy": [{"name": "vda", "path": "/p/a", "guaranteed": {"total_iops_sec": 1},
                    "maximum": {"total_iops_sec": 9}},
                   {"name": "vdb", "path": None, "guaranteed": {}, "maximum": {"read_iops_sec": 5}},
                   {"name": "vdc", "path": "/p/c", "guaranteed": {}, "maximum": {}}],
        "current_values": [{"name": "vdb", "path": "/p/b", "ioTune": {"read_iops_sec": 2}},
                           {"name": "other-name", "path": "/p/a", "ioTune": {"total_iops_sec": 3}}],
    }
    assert io_tune_section(entry) == [
        {"name": "other-name", "path": "/p/a", "guaranteed": {"total_iops_sec": 1},
         "maximum": {"total_iops_sec": 9}, "current": {"total_iops_sec": 3}},
        {"name": "vdb", "path": "/p/b", "guaranteed": {}, "maximum": {"read_iops_sec": 5},
         "current": {"read_iops_sec": 2}},
    ]
    assert io_tune_section({"policy": [], "current_values": []}) is None
    assert io_tune_section(None) is None


def test_stats_cache_and_refresh(double_factory, iface_factory) -> None:
    """The caches' ages on a clock the test moves: the statistics are fetched
    once per round while fresh (5 s here), again once older; a successful set
    call makes the next read fresh; the IO policies are kept 300 s."""
    now = [1000.0]
    double = double_factory().start()
    iface = iface_factory(double.port, stats_max_age=5.0, monotonic=lambda: now[0])

    def one_round() -> None:  # discovery, host KSM, refresh, collect_all
        guests = iface.list_guests()
        iface.list_guests()
        iface.refresh()
        iface.collect_all(guests, ALL)

    def count(method: str) -> int:
        return double.methods().count(method)

    one_round()
    assert count("Host.getAllVmStats") == 1
    now[0] += 4.9
    one_round()  # still fresh
    assert count("Host.getAllVmStats") == 1
    now[0] += 0.2
    one_round()  # 5.1 s old: fetched again, once for the whole round
    assert count("Host.getAllVmStats") == 2
    guest = iface.list_guests()[0]
    iface.set_balloon_target(guest, 2_000_000)
    one_round()  # a change was made: fresh, at the same clock reading
    assert count("Host.getAllVmStats") == 3
    assert count("Host.getAllVmIoTunePolicies") == 1  # cached for 300 s
    now[0] += 301
    one_round()
    assert count("Host.getAllVmStats") == 4 and count("Host.getAllVmIoTunePolicies") == 2


def test_control_calls_use_vdsm_names(double_factory, iface_factory) -> None:
    double = double_factory().start()
    iface = iface_factory(double.port)
    g = iface.list_guests()[0]
    iface.set_balloon_target(g, 3_000_000.7)  # type: ignore[arg-type]
    iface.set_cpu_tune(g, quota=50000)  # period unchanged: not sent
    iface.set_cpu_tune(g, period=200000)
    iface.set_ksm_tune({"run": 1, "pages_to_scan": 100})
    tunes = [{"name": "vda", "path": "/rhev/data-center/mnt/disk-a", "current": {"total_iops_sec": 300}}]
    iface.set_io_tune(g, tunes)
    sent = [(c.method, c.params) for c in double.calls if c.method not in ("Host.ping2", "Host.getAllVmStats")]
    assert sent == [
        ("VM.setBalloonTarget", {"vmID": g.uuid, "target": 3_000_000}),
        ("VM.setCpuTuneQuota", {"vmID": g.uuid, "quota": 50000}),
        ("VM.setCpuTunePeriod", {"vmID": g.uuid, "period": 200000}),
        ("Host.setKsmTune", {"tuningParams": {"run": 1, "pages_to_scan": 100}}),
        ("VM.setIoTune", {"vmID": g.uuid, "tunables": [{"name": "vda", "path": "/rhev/data-center/mnt/disk-a",
                                                         "ioTune": {"total_iops_sec": 300}}]}),
    ]
    # The IO limits vdsm accepted show in the next collection without another policy fetch.
    data = iface.collect_all([g], {"io_tune"})
    assert data[g.uuid].io_tune[0]["current"]["total_iops_sec"] == 300
    assert double.methods().count("Host.getAllVmIoTunePolicies") == 1
    with pytest.raises(HypervisorError, match="unknown KSM tunable"):
        iface.set_ksm_tune({"bogus": 1})


def test_set_io_tune_checks_values(double_factory, iface_factory) -> None:
    """IO limits are whole numbers >= 0 (None leaves one out); anything else is a
    HypervisorError and nothing is sent to vdsm."""
    double = double_factory().start()
    iface = iface_factory(double.port)
    g = next(g for g in iface.list_guests() if g.name == "vm-limited")
    path = "/rhev/data-center/mnt/disk-a"
    for bad in (-1, "300", 1.5, True, float("nan"), [1]):
        with pytest.raises(HypervisorError, match="total_iops_sec of disk vda must be a whole number >= 0"):
            iface.set_io_tune(g, [{"name": "vda", "path": path, "current": {"total_iops_sec": bad}}])
    with pytest.raises(HypervisorError, match="IO tune entry without limits"):
        iface.set_io_tune(g, [{"name": "vda", "path": path, "current": 5}])
    assert double.calls_of("VM.setIoTune") == []
    iface.set_io_tune(g, [{"name": "vda", "path": path,
                           "current": {"total_iops_sec": 300.0, "read_iops_sec": 0, "write_iops_sec": None}}])
    [call] = double.calls_of("VM.setIoTune")
    assert call.params["tunables"][0]["ioTune"] == {"total_iops_sec": 300, "read_iops_sec": 0}


def test_error_replies_raised_not_logged(double_factory, iface_factory, caplog) -> None:
    """A vdsm error answer is raised, not logged here (the engine's fault log
    logs each distinct fault once)."""
    double = double_factory().start()
    iface = iface_factory(double.port)
    g = iface.list_guests()[0]
    double.fail("VM.setBalloonTarget", "Balloon operation is not available", code=53)
    caplog.set_level(logging.DEBUG, logger="mom.vdsm")
    for _ in range(4):
        refused = r"VM.setBalloonTarget: Balloon operation is not available \(code 53\)"
        with pytest.raises(HypervisorError, match=refused) as info:
            iface.set_balloon_target(g, 1000)
        assert not isinstance(info.value, (GuestGone, HypervisorUnavailable))
    double.fail("VM.setBalloonTarget", "Another message", code=53)
    with pytest.raises(HypervisorError, match="Another message"):
        iface.set_balloon_target(g, 1000)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    # vdsm's "no such VM" is GuestGone; the connection is fine afterwards.
    with pytest.raises(GuestGone):
        iface.set_cpu_tune(GuestInfo("no-such-vm", "ghost"), quota=1000)
    assert iface.list_guests()


def next_attempts(caplog) -> list[float]:
    return [float(r.getMessage().rsplit("next attempt in ", 1)[1].split()[0])
            for r in caplog.records if "next attempt in" in r.getMessage()]


def test_fails_fast_while_down_then_reconnects(double_factory, iface_factory, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="mom.vdsm")
    double = double_factory().start()
    # A 10 s request timeout: a call that waited for anything would take seconds.
    iface = iface_factory(double.port, stats_max_age=0.0, heartbeat_ms=1000, backoff_initial=0.2, timeout=10.0)
    assert iface.list_guests()
    double.stop()
    wait_until(lambda: not iface.client.connected, 10, what="the loss noticed")
    t0 = time.monotonic()
    for call in (iface.list_guests, iface.refresh, lambda: iface.collect_all([], ALL),
                 lambda: iface.set_ksm_tune({"run": 1})) * 2:
        with pytest.raises(HypervisorUnavailable) as info:
            call()
        assert str(info.value) == down_message(double.port)  # one message for the whole outage
    assert time.monotonic() - t0 < 5  # no waiting (a wait would be 10 s per call)
    # Back-off between the attempts while vdsm is down: each wait longer than the last.
    wait_until(lambda: len(next_attempts(caplog)) >= 2, 15, what="two retries")
    double.start()
    wait_until(lambda: iface.client.connected, 15, what="the reconnection")
    assert [g.name for g in iface.list_guests()] == ["vm-limited", "vm-free", "vm-noagent"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and r.name == "mom.vdsm"]
    assert len(warnings) == 1 and warnings[0].startswith("lost the connection to vdsm"), warnings
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO and r.name == "mom.vdsm"]
    assert len([m for m in infos if " again after " in m]) == 1, infos
    waits = next_attempts(caplog)
    assert waits == sorted(waits) and waits[-1] > waits[0], waits


def test_unavailable_before_the_first_connection(certs: CertSet, double_factory, iface_factory, caplog) -> None:
    """vdsm not up yet: the first call waits only briefly (first_wait), then every
    call is HypervisorUnavailable with the one message; one warning with the
    reason; one info line when vdsm comes up."""
    caplog.set_level(logging.INFO, logger="mom.vdsm")
    port = free_port()
    iface = iface_factory(port, timeout=10.0, first_wait=0.3, backoff_initial=0.2, backoff_max=0.4)
    t0 = time.monotonic()
    for _ in range(5):
        with pytest.raises(HypervisorUnavailable) as info:
            iface.list_guests()
        assert str(info.value) == down_message(port)
    assert time.monotonic() - t0 < 5  # the first call's wait is short, the others do not wait
    wait_until(lambda: any("cannot connect" in r.getMessage() for r in caplog.records), 10, what="the warning")
    double = double_factory(port=port).start()
    wait_until(lambda: iface.client.connected, 15, what="the connection")
    assert len(iface.list_guests()) == 3
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "mom.vdsm"]
    assert lines == [("WARNING", f"cannot connect to vdsm at 127.0.0.1:{port}: connection refused; retrying in "
                                 "the background (back-off up to 0.4 s)"),
                     ("INFO", f"connected to vdsm at 127.0.0.1:{port} again after " + lines[1][1].rsplit(" ", 2)[1]
                      + " s")], lines
    assert double.connects


def test_first_wait_within_the_engine_deadline(tmp_path: Path, certs: CertSet) -> None:
    conf = tmp_path / "mom.conf"
    for deadline, first_wait in (("10", 2.0), ("2", 0.5)):
        conf.write_text(f"[main]\nhypervisor-interface: vdsm\nhypervisor-call-timeout: {deadline}\n"
                        f"[vdsm]\npki-dir: {certs.pki_dir}\n")
        iface = VdsmInterface.from_config(load_config(str(conf)))
        try:
            assert iface.client.first_wait == first_wait
        finally:
            iface.close()


def test_unanswered_calls_drop_the_connection(double_factory, iface_factory, caplog) -> None:
    """A vdsm that reads requests but stops answering them (and never closes its
    side): each call times out (HypervisorUnavailable, the connection is given
    up at once and reopened, no thread per timeout); calls succeed again once
    vdsm answers."""
    caplog.set_level(logging.INFO, logger="mom.vdsm")
    double = double_factory().start()
    iface = iface_factory(double.port, stats_max_age=0.0, timeout=0.5, backoff_initial=0.1, backoff_max=0.4)
    assert iface.list_guests()
    baseline = len(our_threads())  # with the connector, stomp.py's receiver and heart-beat threads
    peak = baseline

    def sample() -> bool:
        nonlocal peak
        peak = max(peak, len(our_threads()))
        return True

    # Only the calls hang, the STOMP session and Host.ping2 still work: each
    # reconnection succeeds and the next call times out again.
    double.mute(but=("Host.ping2",))
    timeouts = 0
    deadline = time.monotonic() + 60
    while timeouts < 8:
        assert time.monotonic() < deadline, f"{timeouts} timeouts"
        wait_until(lambda: sample() and iface.client.connected, 15, what="a reconnection")
        sent = len(double.calls_of("Host.getAllVmStats"))
        # Read after ``connected``: the client counts a connection before it marks it
        # up, so this includes the connection the call below goes out on.
        gen = iface.client.connections
        with pytest.raises(HypervisorUnavailable) as info:
            iface.list_guests()
        assert str(info.value) == down_message(double.port)
        if len(double.calls_of("Host.getAllVmStats")) > sent and iface.client.connections == gen:
            timeouts += 1
            # Given up at once: not left up for the next call to hang on.
            assert not iface.client.connected or iface.client.connections > gen
        sample()
    assert peak <= baseline + 3, (baseline, peak, our_threads())
    assert not [n for n in our_threads() if n == "vdsm-drop"]
    lost = [r.getMessage() for r in caplog.records if r.getMessage().startswith("lost the connection")]
    assert lost and all("no answer to Host.getAllVmStats within 0.5 s" in m for m in lost), lost

    # Nothing answered now, not even Host.ping2: one call times out, the others
    # fail at once while the reconnection attempts time out in the background.
    wait_until(lambda: sample() and iface.client.connected, 15, what="a reconnection")
    double.mute()
    for _ in range(20):
        with pytest.raises(HypervisorUnavailable):
            iface.list_guests()
        sample()
    wait_until(lambda: sample() and len(double.calls_of("Host.ping2")) >= iface.client.connections + 3, 15,
               what="reconnection attempts")
    assert peak <= baseline + 3, (baseline, peak, our_threads())

    double.unmute()
    wait_until(lambda: sample() and iface.client.connected, 15, what="a reconnection once vdsm answers")
    assert [g.name for g in iface.list_guests()] == ["vm-limited", "vm-free", "vm-noagent"]
    wait_until(lambda: len(our_threads()) <= baseline, 10, what="the dropped connections' threads ending")


def test_graceful_close_is_noticed_by_heartbeats(double_factory, iface_factory) -> None:
    """A vdsm that closes the TLS session cleanly (close_notify) is noticed through
    the missing heart-beats, and MOM reconnects."""
    double = double_factory().start()
    iface = iface_factory(double.port, stats_max_age=0.0, heartbeat_ms=1000, backoff_initial=0.2)
    assert iface.list_guests()
    double.stop(graceful=True)
    double.start()
    wait_until(lambda: len(double.connects) >= 2, 10, what="the reconnection")
    assert len(double.connects) == 2

    def lists_guests() -> bool:
        try:
            return bool(iface.list_guests())
        except HypervisorError:
            return False
    wait_until(lists_guests, 5, 0.1, what="a working connection after vdsm's restart")
    assert double.connects[0]["heart-beat"] == "1000,1000"


def test_client_certificate_refused_by_vdsm(tmp_path: Path, certs: CertSet, caplog) -> None:
    """vdsm does not trust MOM's certificate: a clear error, no calls."""
    other = make_cert_set(tmp_path / "other", ca_cn="vdsm's other CA")
    double = VdsmDouble(ca_cert=other.ca_cert, server_cert=certs.server_cert, server_key=certs.server_key,
                        guests=[Guest("u-1", "one")]).start()
    caplog.set_level(logging.WARNING, logger="mom.vdsm")
    client = make_client(certs, double.port, backoff_initial=0.2)
    try:
        with pytest.raises(VdsmUnavailable, match="no connection to vdsm"):
            client.call("Host.ping2")
        # Several refused attempts, however stomp.py's threads meet the close: one
        # warning, and it names the certificate (not stomp.py's read of the socket it
        # dropped already, "'NoneType' object has no attribute 'recv'").
        wait_until(lambda: len(double.tls_failures) >= 3, 10, what="three refused attempts")
        [line] = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert line.startswith(f"cannot connect to vdsm at 127.0.0.1:{double.port}: "), line
        assert "certificate" in line and str(certs.client_cert) in line and "NoneType" not in line, line
        assert double.calls == [] and double.tls_failures
    finally:
        client.close()
        double.stop()


def test_close_is_prompt_while_retrying(certs: CertSet) -> None:
    client = make_client(certs, free_port(), backoff_initial=5.0)
    client.start(wait=0.3)
    assert not client.connected
    t0 = time.monotonic()
    client.close()
    assert time.monotonic() - t0 < 1.0


def test_loss_noticed_without_heartbeats(double_factory, iface_factory) -> None:
    """vdsm going away is noticed from the end of the stream, not only after a
    missed heart-beat (here 60 s apart): stomp.py's reader would otherwise spin
    on the closed TLS socket until the heart-beat timeout."""
    double = double_factory().start()
    iface = iface_factory(double.port, stats_max_age=0.0, heartbeat_ms=60000, backoff_initial=0.1)
    assert iface.list_guests()
    double.stop()
    cpu = time.process_time()
    wait_until(lambda: not iface.client.connected, 15, what="the loss noticed")
    with pytest.raises(HypervisorUnavailable):
        iface.list_guests()
    double.start()
    wait_until(lambda: iface.client.connected, 15, what="the reconnection")
    assert iface.list_guests()
    assert time.process_time() - cpu < 5  # no thread spun meanwhile
