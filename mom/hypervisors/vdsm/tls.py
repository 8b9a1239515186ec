"""vdsm's PKI files, and one line on why a connection attempt failed.

:class:`TlsFiles` loads MOM's key, certificate and vdsm's CA once, at start-up.
:func:`attempt_cause` picks the cause among the errors stomp.py's transport saw
in one attempt: when vdsm refuses MOM's certificate, stomp.py may first fail on
the socket it already dropped ("'NoneType' object has no attribute 'recv'")
or on a reset, and only the TLS alert says why.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass

from mom.hypervisors.vdsm import stomp_compat
from mom.hypervisors.vdsm.errors import VdsmConfigError


@dataclass(frozen=True)
class TlsFiles:
    """MOM's key and certificate, and the CA that signed vdsm's certificate."""

    key_path: str
    cert_path: str
    ca_path: str

    def check(self) -> None:
        """Load key, certificate and CA once, so a wrong path or a key that does not
        match its certificate is a start-up error (VdsmConfigError), not an endless retry."""
        for what, path in (("ca-cert-file", self.ca_path), ("cert-file", self.cert_path),
                           ("key-file", self.key_path)):
            try:
                with open(path, "rb"):
                    pass
            except OSError as e:
                raise VdsmConfigError(f"[vdsm] {what} {path}: {e.strerror or e}") from None
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        try:
            ctx.load_verify_locations(self.ca_path)
        except (ssl.SSLError, OSError) as e:
            raise VdsmConfigError(f"[vdsm] ca-cert-file {self.ca_path}: "
                                  f"{getattr(e, 'reason', None) or e}") from None
        try:
            ctx.load_cert_chain(self.cert_path, self.key_path)
        except (ssl.SSLError, OSError) as e:
            raise VdsmConfigError(f"[vdsm] cert-file/key-file {self.cert_path}, {self.key_path}: "
                                  f"{getattr(e, 'reason', None) or e}") from None


def describe_error(error: BaseException | None, files: TlsFiles) -> str:
    """One line on why a connection attempt failed."""
    if error is None:
        return "connection failed"
    if isinstance(error, ssl.SSLCertVerificationError):
        return (f"TLS: vdsm's certificate refused (certificate verify failed: "
                f"{error.verify_message or error.reason}; checked against ca-cert-file {files.ca_path})")
    if isinstance(error, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
        # With TLS 1.3 vdsm checks MOM's certificate after the client's side of the
        # handshake; its alert may be lost when it closes the connection.
        return (f"TLS: vdsm closed the connection during the handshake; does vdsm trust MOM's "
                f"certificate (cert-file {files.cert_path})?")
    if isinstance(error, ssl.SSLError):
        reason = getattr(error, "reason", None) or str(error)
        if _names_certificate(error):
            return f"TLS: vdsm refused MOM's certificate ({reason}; cert-file {files.cert_path})"
        return f"TLS handshake failed: {reason}"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, socket.timeout):
        return "connection timed out"
    if isinstance(error, OSError):
        return error.strerror or str(error) or type(error).__name__
    return str(error) or type(error).__name__


def _names_certificate(error: ssl.SSLError) -> bool:
    reason = str(getattr(error, "reason", None) or error).upper()
    return "CERTIFICATE" in reason or "UNKNOWN_CA" in reason


def _tls_rank(error: BaseException) -> int | None:
    """How telling a TLS error is (lower is better); None for anything else."""
    if not isinstance(error, ssl.SSLError) or isinstance(error, (ssl.SSLWantReadError, ssl.SSLWantWriteError)):
        return None
    if isinstance(error, ssl.SSLCertVerificationError):
        return 0
    if isinstance(error, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
        return 3
    return 1 if _names_certificate(error) else 2


def _is_aftermath(error: BaseException) -> bool:
    """An error that follows the peer closing rather than saying why: a reset, a
    broken pipe, stomp.py reading the socket it dropped already (AttributeError)."""
    return isinstance(error, (ConnectionResetError, BrokenPipeError, AttributeError))


def attempt_cause(errors: Sequence[BaseException], files: TlsFiles, since: float) -> str:
    """The cause among the errors one attempt met after its TCP and TLS connect
    (in any order): the most telling TLS error, else the first error that is not
    an aftermath of the close, else "vdsm closed the connection"."""
    ranked = [(rank, i) for i, e in enumerate(errors) if (rank := _tls_rank(e)) is not None]
    if ranked:
        return describe_error(errors[min(ranked)[1]], files)
    causes = [e for e in errors if not _is_aftermath(e)]
    if causes:
        return describe_error(causes[0], files)
    return closed_reason(files, since)


def closed_reason(files: TlsFiles, since: float) -> str:
    """vdsm closed the connection after the TLS handshake, before STOMP's: why, most likely."""
    problem = stomp_compat.STOMP_FILTER.last_problem
    detail = f" ({problem[1]})" if problem is not None and problem[0] >= since else ""
    # Right after the TLS handshake, the usual reason is vdsm refusing our certificate.
    return (f"vdsm closed the connection before the STOMP handshake completed{detail}; "
            f"does vdsm trust MOM's certificate (cert-file {files.cert_path})?")
