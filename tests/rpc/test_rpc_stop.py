"""Clients that never finish (a stalled scrape, a half-sent RPC request) cannot keep
momd from stopping: SIGTERM still ends it within 5 s, with exit status 0."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from tests.support.momd import Momd
from tests.support.net import free_port
from tests.support.rpc import unix_client, write_config


def test_stalled_clients_do_not_delay_stop(tmp_path: Path, sockdir: Path) -> None:
    sock = sockdir / "stop.sock"
    port = free_port()
    m = Momd(write_config(tmp_path, rpc=str(sock), metrics=f"127.0.0.1:{port}"))
    stalled: list[socket.socket] = []
    try:
        m.wait_listening(unix_client(sock))
        m.wait_ticks(2)
        # A scrape that sends half its request and then nothing: it holds the metrics thread.
        scrape = socket.create_connection(("127.0.0.1", port), timeout=5)
        scrape.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        stalled.append(scrape)
        # RPC requests that announce a body and never send it.
        for _ in range(6):
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            c.connect(str(sock))
            c.sendall(b"POST /RPC2 HTTP/1.0\r\nContent-Length: 500\r\n\r\n<?xml")
            stalled.append(c)
        time.sleep(0.3)  # let the server pick them up
        rc, _ = m.stop(timeout=5)  # raises if momd is still running after 5 s
        assert rc == 0, m.log()
        assert "Traceback" not in m.log()
        assert not sock.exists()
    finally:
        for c in stalled:
            c.close()
        m.close()
