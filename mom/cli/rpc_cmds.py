"""momctl commands that talk to a running momd over its XML-RPC API.

    momctl [--socket PATH | --port N] ping|stats [--json]|guests [--json]|verbosity LEVEL|actions [N]|health [--json]
    momctl [--socket PATH | --port N] policy get|set FILE|set-named NAME FILE|-|delete NAME|list|reset

Without --socket and --port, momctl uses DEFAULT_SOCKET, where the packaged
configuration (/etc/mom/mom.conf, rpc-port) has momd listen.

Exit status: 0 success, 1 the daemon answered with an error (a fault, a
refused policy, an HTTP error), 2 usage error, 3 cannot connect.
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import sys
import time
import xmlrpc.client
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mom.core.errors import MomError
from mom.rpc.server import MAX_BODY, MAX_BODY_HEADER

if TYPE_CHECKING:
    from _typeshed import SizedBuffer

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_CONNECT = 0, 1, 2, 3
DEFAULT_TIMEOUT = 10.0
DEFAULT_SOCKET = "/run/mom/mom.sock"  # rpc-port in the packaged mom.conf; the unit's RuntimeDirectory=mom


class UsageError(MomError):
    pass


# -- the client ----------------------------------------------------------------------------

class RequestTooLarge(MomError):
    """momd refused the request for its size (HTTP 413), or hung up while it was sent."""

    def __init__(self, size: int, limit: int | None) -> None:
        super().__init__(f"request too large ({_megabytes(size)}; momd accepts at most {_mebibytes(limit)})")


class NotRpcEndpoint(MomError):
    """Something answered HTTP, but not momd's XML-RPC (e.g. momd's metrics port)."""


class HungUp(MomError):
    """momd closed the connection before answering."""


def _megabytes(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def _mebibytes(n: int | None) -> str:
    if n is None:
        n = MAX_BODY  # an older momd does not say
    return f"{n >> 20} MiB" if n % (1 << 20) == 0 else f"{n} bytes"


def _header(headers: Any, name: str) -> str | None:
    for key, value in dict(headers or {}).items():
        if key.lower() == name.lower():
            return str(value)
    return None


def _not_rpc(e: xmlrpc.client.ProtocolError) -> str:
    if "GET" in (_header(e.headers, "Allow") or ""):
        hint = "it serves GET only, like momd's metrics endpoint; give momd's rpc-port instead"
    else:
        hint = "is this momd's rpc-port?"
    return f"not momd's RPC endpoint: it answered HTTP {e.errcode} {e.errmsg}; {hint}"


class _Transport(xmlrpc.client.Transport):
    """The stdlib's transport with a timeout, turning what momd's HTTP side says into
    momctl's errors: 413 is RequestTooLarge, 404/405 NotRpcEndpoint, a reset while
    sending HungUp (never a BrokenPipeError, which momctl keeps for its own stdout)."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self._timeout = timeout

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        conn = super().make_connection(host)
        conn.timeout = self._timeout
        return conn

    def single_request(self, host: Any, handler: str, request_body: SizedBuffer, verbose: bool = False) -> Any:
        try:
            return super().single_request(host, handler, request_body, verbose)
        except xmlrpc.client.ProtocolError as e:
            if e.errcode == 413:
                limit = _header(e.headers, MAX_BODY_HEADER)
                raise RequestTooLarge(len(request_body), int(limit) if limit and limit.isdigit() else None) from None
            if e.errcode in (404, 405):
                raise NotRpcEndpoint(_not_rpc(e)) from None
            raise
        except (BrokenPipeError, ConnectionResetError) as e:
            if len(request_body) > MAX_BODY:  # an older momd resets oversized requests
                raise RequestTooLarge(len(request_body), None) from None
            raise HungUp(e.strerror or str(e)) from None


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class _UnixTransport(_Transport):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__(timeout)
        self._path = path

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        return _UnixConnection(self._path, self._timeout)


def connect(socket_path: str | None, port: int | None, timeout: float = DEFAULT_TIMEOUT) -> xmlrpc.client.ServerProxy:
    """A client for momd's unix socket or its TCP port on 127.0.0.1."""
    if socket_path:
        return xmlrpc.client.ServerProxy("http://localhost/RPC2", transport=_UnixTransport(socket_path, timeout),
                                         allow_none=True)
    return xmlrpc.client.ServerProxy(f"http://127.0.0.1:{port}/RPC2", transport=_Transport(timeout),
                                     allow_none=True)


def _where(args: argparse.Namespace) -> str:
    return f"unix socket {args.socket}" if args.socket else f"127.0.0.1:{args.port}"


# -- output helpers ------------------------------------------------------------------------

def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _when(t: Any) -> str:
    """A (possibly simulated) clock time as a readable local time."""
    if not isinstance(t, (int, float)) or isinstance(t, bool):
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) + f".{int((t % 1) * 1000):03d}"


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [headers] + [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip() for r in cells]
    return "\n".join(lines)


GUEST_COLUMNS = ["balloon_cur", "balloon_max", "balloon_min", "mem_available", "mem_unused", "mem_free",
                 "swap_usage", "swap_in", "swap_out", "major_fault", "vcpu_count", "vcpu_quota"]


def _read_text(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise UsageError(f"{path}: not UTF-8 text: {e.reason}") from None


FAULT_POLICY = 5  # mom.rpc.api: a rejected policy change, with the rendered error


def _change(what: str, call: Callable[[], Any]) -> int | None:
    """Run a policy change; None when done, else the exit status after saying why
    (the daemon's rendered error: file:line:col, source line, caret, call chain)."""
    try:
        ok = call()
    except xmlrpc.client.Fault as f:
        if f.faultCode != FAULT_POLICY:
            raise
        print(f"momctl: {what} rejected; the previous policy stays in force:\n{f.faultString}", file=sys.stderr)
        return EXIT_ERROR
    if ok is not True:
        print(f"momctl: {what} rejected (see momd's log); the previous policy stays in force", file=sys.stderr)
        return EXIT_ERROR
    return None


# -- commands ------------------------------------------------------------------------------

def cmd_ping(mom: Any, args: argparse.Namespace) -> int:
    if mom.ping() is True:
        print("momd is alive")
        return EXIT_OK
    print("momctl: momd answered ping with false", file=sys.stderr)
    return EXIT_ERROR


def cmd_stats(mom: Any, args: argparse.Namespace) -> int:
    stats = mom.getStatistics()
    if args.json:
        print(json.dumps(stats, indent=2, sort_keys=True))
        return EXIT_OK
    host = stats.get("host") or {}
    print("Host")
    if host:
        width = max(len(k) for k in host)
        for key in sorted(host):
            print(f"  {key.ljust(width)}  {_fmt(host[key])}")
    else:
        print("  (no statistics yet)")
    guests = stats.get("guests") or {}
    print()
    print(f"Guests ({len(guests)})")
    if guests:
        present = set().union(*(row.keys() for row in guests.values()))
        columns = [c for c in GUEST_COLUMNS if c in present] or sorted(present)
        rows = [[name] + [guests[name].get(c) for c in columns] for name in sorted(guests)]
        print(_table(["name"] + columns, rows))
    return EXIT_OK


def cmd_guests(mom: Any, args: argparse.Namespace) -> int:
    names = mom.getActiveGuests()
    if args.json:
        print(json.dumps(names))
        return EXIT_OK
    for name in names:
        print(name)
    return EXIT_OK


def cmd_verbosity(mom: Any, args: argparse.Namespace) -> int:
    mom.setVerbosity(args.level)
    print(f"verbosity set to {args.level}")
    return EXIT_OK


def cmd_actions(mom: Any, args: argparse.Namespace) -> int:
    if args.n < 0:
        raise UsageError("N must be >= 0")
    actions = mom.getRecentActions(args.n)
    if args.json:
        print(json.dumps(actions, indent=2, sort_keys=True))
        return EXIT_OK
    if not actions:
        print("(no actions)")
        return EXIT_OK
    rows = [[_when(a["time"]), a["guest"], a["controller"], a["control"], a["old"], a["new"]] for a in actions]
    print(_table(["time", "guest", "controller", "control", "old", "new"], rows))
    return EXIT_OK


def cmd_health(mom: Any, args: argparse.Namespace) -> int:
    """Exit status 0 healthy, 1 not healthy (for monitoring checks)."""
    health = mom.getHealth()
    status = EXIT_OK if health["ok"] else EXIT_ERROR
    if args.json:
        print(json.dumps(health, indent=2, sort_keys=True))
        return status
    print(f"momd is {'healthy' if health['ok'] else 'NOT healthy'}: {health['ticks']} policy ticks, "
          f"last at {_when(health['last_tick'])}")
    rows = []
    for name, c in sorted(health["components"].items()):
        last_error = (c["last_error"] or "").splitlines()[:1]  # a policy error renders over several lines
        rows.append([name, "ok" if c["ok"] else "FAULT", c["errors"], _when(c["last_run"]),
                     last_error[0] if last_error else None])
    print(_table(["component", "state", "errors", "last run", "last error"], rows))
    return status


def cmd_policy_get(mom: Any, args: argparse.Namespace) -> int:
    text = mom.getPolicy()
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return EXIT_OK


def cmd_policy_set(mom: Any, args: argparse.Namespace) -> int:
    text = _read_text(args.file)
    failed = _change("policy", lambda: mom.setPolicy(text, True))
    if failed is not None:
        return failed
    print("policy replaced")
    return EXIT_OK


def cmd_policy_set_named(mom: Any, args: argparse.Namespace) -> int:
    text = _read_text(args.file)
    failed = _change(f"policy {args.name}", lambda: mom.setNamedPolicy(args.name, text, True))
    if failed is not None:
        return failed
    print(f"policy {args.name} set")
    return EXIT_OK


def cmd_policy_delete(mom: Any, args: argparse.Namespace) -> int:
    if args.name not in mom.getNamedPolicies():
        print(f"momctl: no policy named {args.name}", file=sys.stderr)
        return EXIT_ERROR
    failed = _change(f"deleting policy {args.name}", lambda: mom.setNamedPolicy(args.name, None, True))
    if failed is not None:
        return failed
    print(f"policy {args.name} deleted")
    return EXIT_OK


def cmd_policy_list(mom: Any, args: argparse.Namespace) -> int:
    policies = mom.getNamedPolicies()
    if args.json:  # name -> text, as the RPC gives it
        print(json.dumps(policies, indent=2, sort_keys=True))
        return EXIT_OK
    for name, text in sorted(policies.items()):
        print(f"{name}\t{len(text.splitlines())} lines")
    return EXIT_OK


def cmd_policy_reset(mom: Any, args: argparse.Namespace) -> int:
    failed = _change("reloading the configured policy", lambda: mom.resetPolicies(True))
    if failed is not None:
        return failed
    print("policy reloaded from the configuration")
    return EXIT_OK


# -- wiring --------------------------------------------------------------------------------

def _connection_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    default = argparse.SUPPRESS if suppress else None
    group = parser.add_argument_group("connection")
    group.add_argument("--socket", metavar="PATH", default=default,
                       help=f"momd's unix socket (rpc-port: PATH; default {DEFAULT_SOCKET})")
    group.add_argument("--port", metavar="N", type=int, default=default, help="momd's TCP port on 127.0.0.1")
    group.add_argument("--timeout", metavar="SECONDS", type=float, default=argparse.SUPPRESS if suppress else
                       DEFAULT_TIMEOUT, help=f"give up after this long (default {DEFAULT_TIMEOUT:g})")


def add_global_options(parser: argparse.ArgumentParser) -> None:
    _connection_options(parser, suppress=False)


def _rpc(sub: Any, name: str, func: Callable[[Any, argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(name, help=help)
    _connection_options(p, suppress=True)
    p.set_defaults(func=run, rpc=func)
    return p


def add_parsers(sub: Any) -> None:
    """The top-level RPC commands."""
    _rpc(sub, "ping", cmd_ping, "check that momd answers")
    p = _rpc(sub, "stats", cmd_stats, "the newest host and guest statistics")
    p.add_argument("--json", action="store_true", help="print JSON")
    p = _rpc(sub, "guests", cmd_guests, "the guests momd manages")
    p.add_argument("--json", action="store_true", help="print JSON")
    p = _rpc(sub, "verbosity", cmd_verbosity, "set momd's log level")
    p.add_argument("level", metavar="LEVEL", help="debug, info, warn, error, critical or 5-1")
    p = _rpc(sub, "actions", cmd_actions, "the controls momd applied last")
    p.add_argument("n", metavar="N", type=int, nargs="?", default=20, help="how many (default 20)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p = _rpc(sub, "health", cmd_health, "per component: faults and last run")
    p.add_argument("--json", action="store_true", help="print JSON")


def add_policy_parsers(sub: Any) -> None:
    """The daemon's policy subcommands (beside check, eval, run)."""
    _rpc(sub, "get", cmd_policy_get, "print the daemon's policy (all named policies, in order)")
    p = _rpc(sub, "set", cmd_policy_set, "replace all of the daemon's policies with one")
    p.add_argument("file", metavar="FILE|-")
    p = _rpc(sub, "set-named", cmd_policy_set_named, "add or replace one named policy")
    p.add_argument("name", metavar="NAME")
    p.add_argument("file", metavar="FILE|-")
    p = _rpc(sub, "delete", cmd_policy_delete, "delete one named policy")
    p.add_argument("name", metavar="NAME")
    p = _rpc(sub, "list", cmd_policy_list, "list the named policies")
    p.add_argument("--json", action="store_true", help="print JSON: name -> text")
    _rpc(sub, "reset", cmd_policy_reset, "reload the configured policy file or directory")


def _err(message: str) -> None:
    print(f"momctl: {message}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    socket_path, port = getattr(args, "socket", None), getattr(args, "port", None)
    if socket_path is not None and port is not None:
        _err("give momd's address once: --socket PATH or --port N, not both")
        return EXIT_USAGE
    if socket_path is None and port is None:
        socket_path = args.socket = DEFAULT_SOCKET
    if port is not None and not 1 <= port <= 65535:
        _err(f"--port must be 1-65535, got {port}")
        return EXIT_USAGE
    mom = connect(socket_path, port, getattr(args, "timeout", DEFAULT_TIMEOUT))
    try:
        status: int = args.rpc(mom, args)
        return status
    except UsageError as e:
        _err(str(e))
        return EXIT_USAGE
    except xmlrpc.client.Fault as f:
        _err(f"momd: {f.faultString}")
        return EXIT_ERROR
    except RequestTooLarge as e:
        _err(str(e))
        return EXIT_ERROR
    except NotRpcEndpoint as e:
        _err(f"{_where(args)}: {e}")
        return EXIT_ERROR
    except HungUp as e:
        _err(f"momd at {_where(args)} closed the connection before answering: {e}")
        return EXIT_CONNECT
    except xmlrpc.client.ProtocolError as e:
        _err(f"momd answered HTTP {e.errcode} {e.errmsg}")
        return EXIT_ERROR
    except BrokenPipeError:
        raise  # our stdout went away (momctl ... | head): not the daemon's fault
    except TimeoutError:
        _err(f"no answer from momd at {_where(args)} within {getattr(args, 'timeout', DEFAULT_TIMEOUT):g} s")
        return EXIT_CONNECT
    except (ConnectionError, FileNotFoundError, OSError) as e:
        _err(f"cannot connect to momd at {_where(args)}: {e.strerror or e}")
        return EXIT_CONNECT
    except (http.client.HTTPException, xmlrpc.client.ResponseError) as e:
        _err(f"bad answer from momd at {_where(args)}: {type(e).__name__}: {e}")
        return EXIT_ERROR
