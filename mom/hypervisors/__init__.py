"""Hypervisor interfaces, chosen by their configuration name."""

from __future__ import annotations

from mom.hypervisors.base import HypervisorInterface, InterfaceUnavailable

def interface_class(name: str) -> type[HypervisorInterface]:
    """The class for a (normalised) interface name. Raises InterfaceUnavailable."""
    if name == "sim":
        from mom.hypervisors.sim import SimHypervisor
        return SimHypervisor
    if name == "vdsm":  # config normalises vdsmjsonrpcbulk, vdsmjsonrpc, vdsmjsonrpcclient to "vdsm"
        from mom.hypervisors.vdsm import VdsmInterface
        return VdsmInterface
    if name == "libvirt":
        try:
            from mom.hypervisors.libvirt import LibvirtHypervisor
        except ImportError as e:
            raise InterfaceUnavailable(
                f"hypervisor-interface libvirt needs libvirt-python ({e}): apt-get install python3-libvirt, "
                f"or install MOM with the libvirt extra, pip install 'mom-kvm[libvirt]' "
                f"(it builds against libvirt-dev with pkg-config and a C compiler; "
                f"./setup.sh installs them as root on Debian)") from None
        return LibvirtHypervisor
    raise InterfaceUnavailable(f"unknown hypervisor-interface {name!r}")
