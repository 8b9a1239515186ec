"""The vdsm client's run state: one value, changed only along its transitions,
through a real connection to the vdsm double (connect, loss, reconnection,
close); and stomp.py's patches installed on first use, not at import."""

from __future__ import annotations

import itertools
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from mom.core.errors import MomError
from mom.hypervisors.runstate import TRANSITIONS, RunStateError
from mom.hypervisors.vdsm import RunState, VdsmClient, VdsmConfigError, VdsmError, VdsmUnavailable
from mom.hypervisors.vdsm.tls import TlsFiles, attempt_cause
from tests.support.certs import CertSet
from tests.support.wait import wait_until

ROOT = Path(__file__).resolve().parents[3]


def client_for(certs: CertSet, port: int) -> VdsmClient:
    return VdsmClient("127.0.0.1", port, str(certs.client_key), str(certs.client_cert), str(certs.ca_cert),
                      timeout=2.0, heartbeat_ms=1000, backoff_initial=0.1, backoff_max=0.4)


def recording(client: VdsmClient) -> list[RunState]:
    """The states the client goes through from now on."""
    seen = [client.state]
    client.run.listen(lambda old, new: seen.append(new))
    return seen


def wait_for(client: VdsmClient, state: RunState, timeout: float = 15.0) -> None:
    wait_until(lambda: client.state is state, timeout, 0.02, what=f"run state {state.value}",
               detail=lambda: f"still {client.state.value}")


def test_a_client_run_through_an_outage(certs: CertSet, double_factory: Any) -> None:
    double = double_factory().start()
    client = client_for(certs, double.port)
    seen = recording(client)
    try:
        assert client.state is RunState.IDLE and not client.connected and client.connections == 0
        assert not client.wait_connected(0.1)  # nothing is dialled before the first call
        assert client.call("Host.getAllVmStats") is not None  # the first call connects
        assert client.state is RunState.CONNECTED and client.connected and client.wait_connected(0)
        assert client.connections == 1
        double.stop()
        wait_for(client, RunState.DISCONNECTED)
        time.sleep(0.5)  # a few failed attempts with back-off
        double.start()
        assert client.wait_connected(15)
        assert client.connections == 2
    finally:
        client.close()
    assert client.state is RunState.CLOSED and client.closed and not client.connected
    client.close()  # twice is fine
    assert seen[:3] == [RunState.IDLE, RunState.CONNECTING, RunState.CONNECTED]
    assert RunState.DISCONNECTED in seen and seen[-2:] == [RunState.CONNECTED, RunState.CLOSED]
    assert seen.count(RunState.CONNECTING) >= 3  # the first connection, retries, the reconnection
    for before, after in itertools.pairwise(seen):
        assert after in TRANSITIONS[before], (before, after)


def test_close_before_any_call_starts_nothing(certs: CertSet) -> None:
    client = client_for(certs, 1)
    client.close()
    assert client.closed
    client.start()
    assert client.state is RunState.CLOSED and not client.connecting_in_background
    t0 = time.monotonic()
    with pytest.raises(VdsmUnavailable, match="no connection to vdsm"):
        client.call("Host.ping2")  # at once: no first wait once closed
    assert time.monotonic() - t0 < client.first_wait
    assert client.connections == 0


def test_the_connector_runs_from_the_first_call_until_close(certs: CertSet) -> None:
    client = client_for(certs, 1)
    assert not client.connecting_in_background
    with pytest.raises(VdsmUnavailable):
        client.call("Host.ping2")
    assert client.connecting_in_background
    client.close()
    assert not client.connecting_in_background


def test_only_the_listed_transitions_happen(certs: CertSet) -> None:
    client = client_for(certs, 1)
    with pytest.raises(RunStateError, match="no transition from idle to connected"):
        client.run.move(RunState.CONNECTED)
    assert client.state is RunState.IDLE
    assert TRANSITIONS[RunState.CLOSED] == frozenset()


def test_errors_are_mom_errors() -> None:
    assert issubclass(VdsmError, MomError) and issubclass(VdsmConfigError, VdsmError)


def test_stomp_patches_installed_on_first_use_not_at_import(certs: CertSet) -> None:
    script = f"""
import logging
from mom.hypervisors.vdsm import VdsmClient, stomp_compat
stomp_log = logging.getLogger("stomp.py")
print(stomp_compat.installed(), len(stomp_log.filters))
c = VdsmClient("127.0.0.1", 1, {str(certs.client_key)!r}, {str(certs.client_cert)!r}, {str(certs.ca_cert)!r})
print(stomp_compat.installed(), len(stomp_log.filters))
c.start()
print(stomp_compat.installed(), len(stomp_log.filters))
c.close()
"""
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:3] == ["False 0", "False 0", "True 1"]


def test_the_cause_of_a_refused_attempt_is_the_tls_error(certs: CertSet) -> None:
    """However stomp.py's threads meet vdsm's close (a reset, a broken pipe, a read of
    the socket it dropped already), the TLS alert refusing MOM's certificate is the cause."""
    files = TlsFiles(str(certs.client_key), str(certs.client_cert), str(certs.ca_cert))
    dropped = AttributeError("'NoneType' object has no attribute 'recv'")
    alert = ssl.SSLError(1, "[SSL: TLSV1_ALERT_UNKNOWN_CA] tlsv1 alert unknown ca")
    for met in ([dropped, alert], [ConnectionResetError(104, "Connection reset by peer"), alert, dropped],
                [BrokenPipeError(32, "Broken pipe"), ssl.SSLEOFError(8, "EOF"), alert]):
        cause = attempt_cause(met, files, time.monotonic())
        assert cause.startswith("TLS: vdsm refused MOM's certificate (") and str(certs.client_cert) in cause, met
    # Nothing that says why: vdsm closed the connection, most likely refusing the certificate.
    for met in ([], [dropped], [dropped, ConnectionResetError(104, "Connection reset by peer")]):
        cause = attempt_cause(met, files, time.monotonic())
        assert cause.startswith("vdsm closed the connection before the STOMP handshake completed"), met
        assert str(certs.client_cert) in cause
    # A cause that is not an aftermath of the close is named as it is.
    assert attempt_cause([dropped, OSError(113, "No route to host")], files, 0.0) == "No route to host"
