"""Bad clients against a running momd: oversized requests, malformed XML, entity
bombs, many clients at once, slow clients. Each gets a fault or a closed
connection within a second, and the server and the daemon's ticks go on."""

from __future__ import annotations

import socket
import threading
import time
import xmlrpc.client
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.momd import MOMD, Momd, run_momctl, thread_count
from tests.support.net import free_port
from tests.support.rpc import post, raw_request, tcp_client, unix_client, write_config


@pytest.fixture(scope="module")
def momd(tmp_path_factory: pytest.TempPathFactory, sockdir: Path) -> Iterator[tuple[Momd, str]]:
    tmp = tmp_path_factory.mktemp("hard")
    sock = str(sockdir / "hard.sock")
    m = Momd(write_config(tmp, rpc=sock))
    try:
        m.wait_listening(unix_client(sock))
        yield m, sock
    finally:
        m.close()


def _fault(answer: bytes) -> xmlrpc.client.Fault:
    assert answer.startswith(b"HTTP/1.0 200"), answer[:200]
    body = answer.split(b"\r\n\r\n", 1)[1]
    with pytest.raises(xmlrpc.client.Fault) as e:
        xmlrpc.client.loads(body)
    return e.value


def _timed(sock: str, data: bytes) -> tuple[bytes, float]:
    t0 = time.monotonic()
    answer = raw_request(sock, data, timeout=3)
    return answer, time.monotonic() - t0


def test_oversized_requests_refused_fast(momd: tuple[Momd, str]) -> None:
    _, sock = momd
    big = b"<methodCall><methodName>ping</methodName><params><param><value><string>" + b"x" * (2 << 20) \
        + b"</string></value></param></params></methodCall>"
    # Announced: refused on the headers alone.
    answer, took = _timed(sock, post(big))
    assert answer == b"" or answer.startswith(b"HTTP/1.0 413"), answer[:100]
    assert took < 1.0
    # Not announced (a lying Content-Length is served by its length, never beyond 1 MiB).
    answer, took = _timed(sock, post(b"", length=(1 << 20) + 1))
    assert answer.startswith(b"HTTP/1.0 413") and took < 1.0
    # Headers that never end.
    answer, took = _timed(sock, b"POST /RPC2 HTTP/1.1\r\n" + b"X-Junk: " + b"y" * (1 << 20))
    assert (answer == b"" or answer.startswith(b"HTTP/1.0 431")) and took < 1.0
    # Exactly at the limit is still served (as a fault: it is not XML-RPC).
    answer, took = _timed(sock, post(b" " * (1 << 20)))
    assert _fault(answer).faultCode == 3 and took < 1.0
    assert unix_client(sock).ping() is True


def test_malformed_xml_is_a_fault(momd: tuple[Momd, str]) -> None:
    _, sock = momd
    for body in (b"<methodCall><methodName>ping</methodName>", b"not xml at all", b"\xff\xfe<<<",
                 b"<methodCall><params><param><value><int>x</int></value></param></params></methodCall>",
                 b"<methodCall><methodName>setPolicy</methodName><params><param><value><boolean>7</boolean>"
                 b"</value></param></params></methodCall>"):
        answer, took = _timed(sock, post(body))
        assert took < 1.0
        assert _fault(answer).faultCode in (1, 3, 4)  # \xff\xfe looks like UTF-16: refused before parsing
    # Broken HTTP, no Content-Length, chunked: HTTP errors, connection closed.
    assert _timed(sock, b"garbage\r\n\r\n")[0].startswith(b"HTTP/1.0 400")
    assert _timed(sock, b"POST /RPC2 HTTP/1.1\r\nHost: x\r\n\r\n")[0].startswith(b"HTTP/1.0 411")
    assert _timed(sock, b"POST /RPC2 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")[0] \
        .startswith(b"HTTP/1.0 411")
    assert unix_client(sock).ping() is True


BILLION_LAUGHS = (b'<?xml version="1.0"?>\n<!DOCTYPE lolz [\n<!ENTITY lol "lol">\n'
                  + b"".join(b'<!ENTITY lol%d "%s">\n' % (i + 1, (b"&lol%s;" % (str(i).encode() if i else b"")) * 10)
                             for i in range(9))
                  + b"]>\n<methodCall><methodName>setPolicy</methodName><params><param><value><string>&lol9;"
                    b"</string></value></param></params></methodCall>")
EXTERNAL = (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
            b"<methodCall><methodName>setPolicy</methodName><params><param><value><string>&e;</string>"
            b"</value></param></params></methodCall>")
QUADRATIC = (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "' + b"a" * 50000 + b'">]>'
             b"<methodCall><methodName>setPolicy</methodName><params><param><value><string>"
             + b"&a;" * 20000 + b"</string></value></param></params></methodCall>")


UTF16 = BILLION_LAUGHS.replace(b'<?xml version="1.0"?>', b'<?xml version="1.0" encoding="UTF-16"?>') \
    .decode().encode("utf-16")
EBCDIC = b'<?xml version="1.0" encoding="cp037"?>' + BILLION_LAUGHS.split(b"?>", 1)[1].decode().encode("cp037")


@pytest.mark.parametrize("bomb", [BILLION_LAUGHS, EXTERNAL, QUADRATIC, UTF16, EBCDIC],
                         ids=["billion-laughs", "external", "quadratic", "utf-16", "ebcdic"])
def test_entity_bombs_refused(momd: tuple[Momd, str], bomb: bytes) -> None:
    _, sock = momd
    mom = unix_client(sock)
    before = mom.getNamedPolicies()
    answer, took = _timed(sock, post(bomb))
    assert took < 1.0
    fault = _fault(answer)
    assert fault.faultCode == 4 and ("DOCTYPE" in fault.faultString or "UTF-8" in fault.faultString)
    assert mom.getNamedPolicies() == before  # setPolicy never ran
    assert mom.ping() is True


def test_many_concurrent_clients_with_fixed_threads(momd: tuple[Momd, str]) -> None:
    m, sock = momd
    before = thread_count(m.pid)
    results: list[object] = []
    errors: list[BaseException] = []

    def client() -> None:
        try:
            mom = unix_client(sock, timeout=10)
            results.append((mom.ping(), sorted(mom.getStatistics()["guests"])))
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=client) for _ in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert not errors, errors[:3]
    assert results == [(True, ["vm1", "vm2", "vm3"])] * 100
    # The worker pool is fixed: at most 4 more threads than before, whatever the clients.
    assert thread_count(m.pid) <= before + 4


def test_slow_clients_do_not_block_rpc_or_ticks(momd: tuple[Momd, str]) -> None:
    m, sock = momd
    mom = unix_client(sock)
    slow: list[socket.socket] = []
    for i in range(40):  # half dribble headers, half connect and say nothing
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(sock)
        if i % 2:
            s.sendall(b"POST /RPC2 HTTP/1.1\r\nContent-Length: 100\r\n\r\n<method")  # body never completes
        slow.append(s)
    try:
        ticks0 = len(m.records())
        t0 = time.monotonic()
        for _ in range(10):
            t = time.monotonic()
            assert mom.ping() is True
            assert time.monotonic() - t < 0.5
            time.sleep(0.2)
        # Ticks keep their pace (policy every 0.1 s real time at speed 20).
        elapsed = time.monotonic() - t0
        assert len(m.records()) - ticks0 >= elapsed / 0.1 * 0.5
        # The server cuts them off (within its 5 s request timeout).
        for s in slow:
            s.settimeout(max(0.1, 6.5 - (time.monotonic() - t0)))
            try:
                data = s.recv(1024)
            except ConnectionResetError:
                data = b""
            assert data == b"" or data.startswith(b"HTTP/1.0 408")
    finally:
        for s in slow:
            s.close()
    assert mom.ping() is True


# -- refused requests: a clear answer on both transports, one log line per kind ----------

@pytest.fixture(scope="module")
def tcp_momd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Momd, int]]:
    port = free_port()
    m = Momd(write_config(tmp_path_factory.mktemp("hard-tcp"), rpc=str(port)))
    try:
        m.wait_listening(tcp_client(port))
        yield m, port
    finally:
        m.close()


def _nested(depth: int) -> bytes:
    return (b"<?xml version='1.0'?><methodCall><methodName>setVerbosity</methodName><params><param>"
            + b"<value><array><data>" * depth + b"</data></array></value>" * depth
            + b"</param></params></methodCall>")


def test_deeply_nested_request_is_one_fault_and_one_line(momd: tuple[Momd, str]) -> None:
    m, sock = momd
    for depth in (20_000, 65, 20_000):  # 860 KB: within the size limit
        fault = _fault(raw_request(sock, post(_nested(depth)), timeout=5))
        assert fault.faultCode == 3 and "nested deeper than 64 levels" in fault.faultString
    # 64 levels are still parsed (and refused by the method, as any list would be).
    fault = _fault(raw_request(sock, post(_nested(64))))
    assert fault.faultCode == 3 and "verbosity" in fault.faultString
    assert unix_client(sock).ping() is True
    log = m.wait_log("nested deeper than 64 levels")
    assert "Traceback" not in log and " ERROR " not in log
    assert log.count("nested deeper than 64 levels") == 1  # a flood is one line (per minute)


def _address(momd: tuple[Momd, str] | tuple[Momd, int]) -> list[str]:
    _m, where = momd
    return ["--socket", where] if isinstance(where, str) else ["--port", str(where)]


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_oversized_push_is_one_line_and_exit_1(transport: str, momd: tuple[Momd, str],
                                               tcp_momd: tuple[Momd, int], tmp_path: Path) -> None:
    daemon = momd if transport == "unix" else tcp_momd
    m = daemon[0]
    big = tmp_path / "big.policy"
    big.write_text("# padding\n" * 110_000 + "(defvar big 1)\n")  # 1.1 MB
    r = run_momctl([*_address(daemon), "policy", "set-named", "zz-big", str(big)])
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == "momctl: request too large (1.1 MB; momd accepts at most 1 MiB)\n"
    r = run_momctl([*_address(daemon), "policy", "list"])
    assert r.returncode == 0 and "zz-big" not in r.stdout  # not set
    # Logged (once a minute per kind: an earlier oversized request may have said it).
    m.wait_log("RPC: refused a request (HTTP 413): request too large (")


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_oversized_body_is_read_and_answered_not_reset(transport: str, momd: tuple[Momd, str],
                                                       tcp_momd: tuple[Momd, int]) -> None:
    address: str | tuple[str, int] = momd[1] if transport == "unix" else ("127.0.0.1", tcp_momd[1])
    body = b"x" * (6 << 20)
    # The whole body goes out (momd discards it) and the answer is there to read.
    answer = raw_request(address, post(body), timeout=10)
    assert answer.startswith(b"HTTP/1.0 413"), answer[:100]
    assert b"X-Mom-Max-Body: 1048576" in answer and b"request too large (6.3 MB" in answer


def test_momctl_at_the_metrics_port_says_what_is_wrong(tmp_path: Path) -> None:
    port, mport = free_port(), free_port()
    m = Momd(write_config(tmp_path, rpc=str(port), metrics=f"127.0.0.1:{mport}"))
    try:
        m.wait_listening(tcp_client(port))
        r = run_momctl(["--port", str(mport), "ping"])
        assert r.returncode == 1 and len(r.stderr.splitlines()) == 1, r.stderr
        assert "not momd's RPC endpoint" in r.stderr and "metrics endpoint" in r.stderr and "rpc-port" in r.stderr
        # The metrics endpoint answers what it is, too.
        answer = raw_request(("127.0.0.1", mport), b"GET /nothing HTTP/1.0\r\n\r\n")
        assert answer.startswith(b"HTTP/1.0 404") and b"/metrics" in answer
    finally:
        m.close()


SET_POLICY = (b"<?xml version='1.0'?><methodCall><methodName>setPolicy</methodName><params><param>"
              b"<value><string>(Host.Control \"ksm_run\" 0)</string></value></param></params></methodCall>")


@pytest.mark.parametrize("headers, status", [
    # What a web page's fetch() or form may send to 127.0.0.1 without a CORS preflight.
    ("Host: 127.0.0.1\r\nContent-Type: text/plain\r\nOrigin: http://evil.example\r\n", b"403"),
    ("Host: 127.0.0.1\r\nContent-Type: text/plain\r\n", b"415"),
    # DNS rebinding: a page's own name resolving to 127.0.0.1.
    ("Host: evil.example:8888\r\nContent-Type: text/xml\r\n", b"403"),
])
def test_tcp_refuses_what_a_browser_could_send(tcp_momd: tuple[Momd, int], headers: str, status: bytes) -> None:
    _m, port = tcp_momd
    before = tcp_client(port).getPolicy()
    request = (f"POST /RPC2 HTTP/1.1\r\n{headers}Content-Length: {len(SET_POLICY)}\r\n\r\n").encode() + SET_POLICY
    answer = raw_request(("127.0.0.1", port), request)
    assert answer.startswith(b"HTTP/1.0 " + status), answer[:200]
    assert tcp_client(port).getPolicy() == before  # nothing changed


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def test_running_out_of_file_descriptors_does_not_spin(tmp_path: Path, sockdir: Path) -> None:
    sock = str(sockdir / "fd.sock")
    m = Momd(write_config(tmp_path, rpc=sock, speed=1, interval=5, policy_interval=10),
             command=["prlimit", "--nofile=64:64", *MOMD])
    clients: list[socket.socket] = []
    try:
        m.wait_listening(unix_client(sock))
        for _ in range(100):  # more than momd has descriptors for: accept fails with EMFILE
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            c.connect(sock)
            clients.append(c)
        time.sleep(0.5)
        before = _cpu_ticks(m.pid)
        time.sleep(3)
        used = _cpu_ticks(m.pid) - before
        assert used < 100, f"{used} CPU ticks in 3 s: accept is spinning"
        for c in clients:
            c.close()
        clients.clear()
        time.sleep(1)  # the idle ones are cut; the listener is watched again
        assert unix_client(sock).ping() is True
        assert "cannot accept: Too many open files" in m.log()
    finally:
        for c in clients:
            c.close()
        m.close()
