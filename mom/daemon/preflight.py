"""Preflight: find what would stop momd, before anything starts.

``momd --check`` and a real start run the same checks, so a setup that
``--check`` calls good does not fail a moment later: the log target, the RPC
socket's directory or TCP port, the metrics address, the flight recorder and
plot directory, the hypervisor interface (certificates, scenario file) and the
policy. Each check says what is wrong in one line. Nothing here creates a file
that stays behind.
"""

from __future__ import annotations

import errno
import os
import socket
from dataclasses import dataclass, field

from mom.daemon.config import Config, TcpPort, UnixSocket
from mom.daemon.daemon import DaemonError, make_outputs


@dataclass
class Findings:
    """What preflight found: errors stop momd (exit 2), warnings are printed."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _writable_file(path: str) -> str | None:
    """Why a file cannot be appended to (without creating it), or None."""
    if os.path.isdir(path):
        return f"{path} is a directory"
    if os.path.exists(path):
        return None if os.access(path, os.W_OK) else f"{path}: {os.strerror(errno.EACCES)}"
    return _writable_dir(os.path.dirname(os.path.abspath(path)))


def _writable_dir(path: str) -> str | None:
    """Why files cannot be created in a directory, or None."""
    if not os.path.exists(path):
        return f"{path}: directory does not exist"
    if not os.path.isdir(path):
        return f"{path} is not a directory"
    if not os.access(path, os.W_OK | os.X_OK):
        return f"{path}: {os.strerror(errno.EACCES)}"
    return None


def _tcp_bindable(host: str, port: int) -> str | None:
    """Why nobody could listen on host:port now, or None (port 0 always works)."""
    if port == 0:
        return None
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as e:
        return f"cannot listen on {host}:{port}: {e.strerror or e}"
    finally:
        sock.close()
    return None


def _unix_socket(path: str) -> str | None:
    """Why an RPC socket cannot be created at path, or None."""
    from mom.core.sockets import existing_socket_problem

    problem = _writable_dir(os.path.dirname(os.path.abspath(path)))
    if problem:
        return problem
    problem = existing_socket_problem(path)
    return f"{path}: {problem}" if problem else None


def check_outputs(config: Config, *, daemonize: bool = False, pid_file: str | None = None) -> Findings:
    """Logging, RPC, metrics, recorder and plots, and the pid file."""
    found = Findings()
    if pid_file:
        problem = _writable_file(pid_file)
        if problem:
            found.errors.append(f"--pid-file: cannot write {problem}")
    main, logcfg = config.main, config.logging
    if not logcfg.to_stdio:
        problem = _writable_file(logcfg.log)
        if problem:
            found.errors.append(f"[logging] log: cannot write {problem}")
    elif daemonize:
        found.warnings.append("-d with [logging] log: stdio: a detached momd has no terminal, so its log is "
                              "discarded; set [logging] log to a file")
    if isinstance(main.rpc, UnixSocket):
        problem = _unix_socket(main.rpc.path)
        if problem:
            found.errors.append(f"[main] rpc-port: cannot create the socket: {problem}")
    elif isinstance(main.rpc, TcpPort):
        problem = _tcp_bindable("127.0.0.1", main.rpc.port)
        if problem:
            found.errors.append(f"[main] rpc-port: {problem}")
    if main.metrics_address is not None:
        problem = _tcp_bindable(main.metrics_address.host, main.metrics_address.port)
        if problem:
            found.errors.append(f"[main] metrics-address: {problem}")
    try:
        make_outputs(config)  # the recorder and plot-dir checks a start runs
    except DaemonError as e:
        found.errors.append(str(e))
    if not main.policy and not main.policy_dir:
        found.warnings.append("no policy configured ([main] policy or policy-dir): momd will collect "
                              "statistics but control nothing")
    return found
