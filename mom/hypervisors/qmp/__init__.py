"""The QMP hypervisor interface: QEMU guests managed straight over their QMP sockets
(no libvirt), with qemu.qmp. See :mod:`.interface`."""

from mom.hypervisors.qmp.interface import QmpHypervisor

__all__ = ["QmpHypervisor"]
