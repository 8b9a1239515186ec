"""The vdsm client's run state: one value, changed only along its transitions,
through a real connection to the vdsm double (connect, loss, reconnection,
close); and stomp.py's patches installed on first use, not at import."""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from mom.core.errors import MomError
from mom.hypervisors.vdsm import RunState, VdsmClient, VdsmConfigError, VdsmError
from mom.hypervisors.vdsm.client import TRANSITIONS
from tests.support.certs import CertSet
from tests.support.wait import wait_until

ROOT = Path(__file__).resolve().parents[3]


def client_for(certs: CertSet, port: int) -> VdsmClient:
    return VdsmClient("127.0.0.1", port, str(certs.client_key), str(certs.client_cert), str(certs.ca_cert),
                      timeout=2.0, heartbeat_ms=1000, backoff_initial=0.1, backoff_max=0.4)


def recording(client: VdsmClient) -> list[RunState]:
    """The states the client goes through from now on."""
    seen = [client.state]
    change = client._to

    def to(state: RunState) -> None:
        change(state)
        seen.append(state)
    client._to = to  # type: ignore[method-assign]
    return seen


def wait_for(client: VdsmClient, state: RunState, timeout: float = 15.0) -> None:
    wait_until(lambda: client.state is state, timeout, 0.02, what=f"run state {state.value}",
               detail=lambda: f"still {client.state.value}")


def test_a_client_run_through_an_outage(certs: CertSet, double_factory: Any) -> None:
    double = double_factory().start()
    client = client_for(certs, double.port)
    seen = recording(client)
    try:
        assert client.state is RunState.IDLE and not client.connected
        assert client.call("Host.getAllVmStats") is not None  # the first call connects
        assert client.state is RunState.CONNECTED and client.connected
        double.stop()
        wait_for(client, RunState.DISCONNECTED)
        time.sleep(0.5)  # a few failed attempts with back-off
        double.start()
        wait_for(client, RunState.CONNECTED)
        assert client.connections == 2
    finally:
        client.close()
    assert client.state is RunState.CLOSED
    client.close()  # twice is fine
    assert seen[:3] == [RunState.IDLE, RunState.CONNECTING, RunState.CONNECTED]
    assert RunState.DISCONNECTED in seen and seen[-2:] == [RunState.CONNECTED, RunState.CLOSED]
    assert seen.count(RunState.CONNECTING) >= 3  # the first connection, retries, the reconnection
    for before, after in itertools.pairwise(seen):
        assert after in TRANSITIONS[before], (before, after)


def test_close_before_any_call_starts_nothing(certs: CertSet) -> None:
    client = client_for(certs, 1)
    client.close()
    assert client.state is RunState.CLOSED
    client.start()
    assert not client._thread.is_alive()


def test_only_the_listed_transitions_happen(certs: CertSet) -> None:
    client = client_for(certs, 1)
    with pytest.raises(RuntimeError, match="no transition from idle to connected"):
        client._to(RunState.CONNECTED)
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
