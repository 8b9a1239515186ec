"""The libvirt hypervisor interface (``hypervisor-interface: libvirt``), one small package.

- :mod:`.connection`: the connection to libvirtd, its :class:`RunState`, back-off
  and error classification;
- :mod:`.events`: libvirt's event loop thread and a connection's callbacks;
- :mod:`.stats`: libvirt's statistics mapped to MOM's GuestData sections;
- :mod:`.domain_xml`: what MOM reads from a domain's XML;
- :mod:`.interface`: :class:`LibvirtHypervisor`, the per-domain caches and calls;
- :mod:`.count`: benchmark and test tooling (counts the calls reaching libvirt).

Importing this package imports libvirt-python; the registry
(:mod:`mom.hypervisors`) turns its absence into one line for the operator.
"""

from mom.hypervisors.libvirt.connection import ConnectionLost, RunState, default_pid_dir
from mom.hypervisors.libvirt.events import EventLoop
from mom.hypervisors.libvirt.interface import LibvirtHypervisor

__all__ = ["ConnectionLost", "EventLoop", "LibvirtHypervisor", "RunState", "default_pid_dir"]
