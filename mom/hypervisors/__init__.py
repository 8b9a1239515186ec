"""Hypervisor interfaces, chosen by their configuration name."""

from __future__ import annotations

from mom.hypervisors.base import HypervisorInterface, InterfaceUnavailable

# The names the configuration accepts, and whether this version has them.
PLANNED = {
    "libvirt": "the libvirt interface",
    "vdsm": "the vdsm interface (also named vdsmjsonrpcbulk, vdsmjsonrpc, vdsmjsonrpcclient)",
}


def interface_class(name: str) -> type[HypervisorInterface]:
    """The class for a (normalised) interface name. Raises InterfaceUnavailable."""
    if name == "sim":
        from mom.hypervisors.sim import SimHypervisor
        return SimHypervisor
    if name in PLANNED:
        raise InterfaceUnavailable(
            f"hypervisor-interface {name}: {PLANNED[name]} is not built in this version of MOM yet; "
            f"use 'hypervisor-interface: sim' for the simulated host")
    raise InterfaceUnavailable(f"unknown hypervisor-interface {name!r}")
