"""The vdsm hypervisor interface (``hypervisor-interface: vdsm``; vdsm's own
mom.conf says ``vdsmjsonrpcbulk``), one small package.

- :mod:`.client`: :class:`VdsmClient`, JSON-RPC over STOMP on TLS with the
  connection kept up in the background, in the shared :class:`RunState`
  (:mod:`mom.hypervisors.runstate`), put together from
  :mod:`.tls` (the PKI files, a failure's cause), :mod:`.link` (one STOMP
  connection), :mod:`.calls` (requests and their answers) and
  :mod:`.connector` (the connector thread and its back-off);
- :mod:`.errors`: VdsmError and its kinds, all HypervisorErrors, so MomErrors;
- :mod:`.stomp_compat`: stomp.py's compatibility patches, installed when a
  client first starts, not at import;
- :mod:`.mapping`: vdsm's answers mapped to MOM's GuestData sections;
- :mod:`.interface`: :class:`VdsmInterface`, the caches and calls.
"""

from mom.hypervisors.runstate import RunState
from mom.hypervisors.vdsm.client import VdsmClient
from mom.hypervisors.vdsm.errors import VdsmCallError, VdsmConfigError, VdsmError, VdsmTimeout, VdsmUnavailable
from mom.hypervisors.vdsm.interface import VdsmInterface
from mom.hypervisors.vdsm.mapping import balloon_section, cpu_tune_section, io_tune_section, memory_section

__all__ = ["RunState", "VdsmCallError", "VdsmClient", "VdsmConfigError", "VdsmError", "VdsmInterface",
           "VdsmTimeout", "VdsmUnavailable", "balloon_section", "cpu_tune_section", "io_tune_section",
           "memory_section"]
