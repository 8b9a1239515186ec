"""The vdsm hypervisor interface (``hypervisor-interface: vdsm``; vdsm's own
mom.conf says ``vdsmjsonrpcbulk``), one small package.

- :mod:`.client`: JSON-RPC over STOMP on TLS, the connection kept up in the
  background, its :class:`RunState`, and the client's errors (VdsmError and
  its kinds, all HypervisorErrors, so MomErrors);
- :mod:`.stomp_compat`: stomp.py's compatibility patches, installed when a
  client first starts, not at import;
- :mod:`.mapping`: vdsm's answers mapped to MOM's GuestData sections;
- :mod:`.interface`: :class:`VdsmInterface`, the caches and calls.
"""

from mom.hypervisors.vdsm.client import (
    RunState,
    VdsmCallError,
    VdsmClient,
    VdsmConfigError,
    VdsmError,
    VdsmTimeout,
    VdsmUnavailable,
)
from mom.hypervisors.vdsm.interface import VdsmInterface
from mom.hypervisors.vdsm.mapping import balloon_section, cpu_tune_section, io_tune_section, memory_section

__all__ = ["RunState", "VdsmCallError", "VdsmClient", "VdsmConfigError", "VdsmError", "VdsmInterface",
           "VdsmTimeout", "VdsmUnavailable", "balloon_section", "cpu_tune_section", "io_tune_section",
           "memory_section"]
