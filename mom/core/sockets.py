"""What is at a unix socket path: one check for momd's preflight and its RPC server."""

from __future__ import annotations

import os
import socket
import stat


def existing_socket_problem(path: str) -> str | None:
    """Why momd cannot put its socket at path, given what is there now, or None:
    nothing there, or a stale socket nobody listens on (it is replaced)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        return e.strerror or str(e)
    if not stat.S_ISSOCK(st.st_mode):
        return "exists and is not a socket; not replacing it"
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except OSError:
        return None  # stale: nobody listens there
    finally:
        probe.close()
    return "another process is listening on this socket"
