"""The vdsm client's errors: all HypervisorErrors, so MomErrors (the interface
turns them into the HypervisorError kinds the engine knows)."""

from __future__ import annotations

from typing import Any

from mom.hypervisors.base import HypervisorError


class VdsmError(HypervisorError):
    """A vdsm call failed (the client's own errors)."""


class VdsmUnavailable(VdsmError):
    """No connection to vdsm (down, unreachable, TLS refused, lost mid-call)."""


class VdsmTimeout(VdsmUnavailable):
    """vdsm did not answer in time; the connection is dropped and reopened."""


class VdsmCallError(VdsmError):
    """vdsm answered with a JSON-RPC error."""

    def __init__(self, method: str, code: Any, message: str) -> None:
        super().__init__(f"{method}: {message} (code {code})")
        self.method = method
        self.code = code
        self.message = message


class VdsmConfigError(VdsmError):
    """The key, certificate or CA files cannot be used: a start-up error. Its
    message is the operator's one line ("[vdsm] ca-cert-file PATH: ...")."""
