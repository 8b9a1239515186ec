"""The libvirt hypervisor interface (``hypervisor-interface: libvirt``), one small package.

- :mod:`.connection`: the connection to libvirtd, its run state (the shared
  :class:`~mom.hypervisors.runstate.RunState`), back-off and error classification;
- :mod:`.events`: libvirt's event loop thread and a connection's callbacks;
- :mod:`.domains`: discovery, the domain objects and pids, the domain XML cache;
- :mod:`.domain_xml`: what MOM reads from a domain's XML;
- :mod:`.collection`: collect_all and the per-guest getters;
- :mod:`.stats`: libvirt's statistics mapped to MOM's GuestData sections;
- :mod:`.period`: the balloon statistics period on every guest;
- :mod:`.controls`: balloon, CPU and IO controls, the guest agent;
- :mod:`.interface`: :class:`LibvirtHypervisor`, which composes them;
- :mod:`.count`: benchmark and test tooling (counts the calls reaching libvirt).

Importing this package imports libvirt-python; the registry
(:mod:`mom.hypervisors`) turns its absence into one line for the operator.
"""

from mom.hypervisors.libvirt.connection import ConnectionLost, default_pid_dir
from mom.hypervisors.libvirt.events import EventLoop
from mom.hypervisors.libvirt.interface import LibvirtHypervisor
from mom.hypervisors.runstate import RunState

__all__ = ["ConnectionLost", "EventLoop", "LibvirtHypervisor", "RunState", "default_pid_dir"]
