"""Hypervisor interfaces, built through one registry.

Each interface is registered once: its name, the original MOM's configuration
names that mean it (vdsm's own mom.conf says ``vdsmjsonrpcbulk``), its typed
settings (:mod:`mom.hypervisors.settings`) and where its class is. The class is
imported only when asked for, so a missing library (libvirt-python) is one
line for the operator, and only for the interface that needs it.

- :func:`canonical_name`: the registered name for a configuration name;
- :func:`interface_class`: the class for a name;
- :func:`build_interface`: the configured interface, from its typed settings.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mom.hypervisors.base import Capability, HypervisorInterface, InterfaceUnavailable
from mom.hypervisors.settings import LibvirtSettings, QmpSettings, SimSettings, VdsmSettings

__all__ = ["Capability", "REGISTRY", "Registration", "build_interface", "canonical_name", "interface_class",
           "known_names", "settings_for"]


@dataclass(frozen=True)
class Registration:
    """One interface in the registry."""

    name: str                      # the name MOM uses (status, logs, config after normalising)
    aliases: tuple[str, ...]       # the original MOM's other configuration names for it
    target: str                    # "module:Class", imported on first use
    settings: Callable[[Any], Any]  # config -> the interface's typed settings
    needs: str = ""                # the library the module imports
    install: str = ""              # how to get it (after a colon in the message)

    def load(self) -> type[HypervisorInterface]:
        """The interface class. Raises InterfaceUnavailable when its library is missing."""
        module, _, attr = self.target.partition(":")
        try:
            cls: type[HypervisorInterface] = getattr(importlib.import_module(module), attr)
        except ImportError as e:
            raise InterfaceUnavailable(f"hypervisor-interface {self.name} needs {self.needs or 'a library'} "
                                       f"({e}){': ' + self.install if self.install else ''}") from None
        return cls


_LIBVIRT_INSTALL = (
    "apt-get install python3-libvirt, or install MOM with the libvirt extra, "
    "pip install 'mom-kvm[libvirt]' (it builds against libvirt-dev with pkg-config and a C compiler; "
    "./setup.sh installs them as root on Debian)")

REGISTRY: dict[str, Registration] = {r.name: r for r in (
    Registration("libvirt", (), "mom.hypervisors.libvirt:LibvirtHypervisor", LibvirtSettings.from_config,
                 "libvirt-python", _LIBVIRT_INSTALL),
    Registration("qmp", (), "mom.hypervisors.qmp:QmpHypervisor", QmpSettings.from_config, "qemu.qmp",
                 "pip install 'mom-kvm[qmp]' (./setup.sh installs it)"),
    Registration("sim", (), "mom.hypervisors.sim:SimHypervisor", SimSettings.from_config),
    Registration("vdsm", ("vdsmjsonrpcbulk", "vdsmjsonrpc", "vdsmjsonrpcclient"),
                 "mom.hypervisors.vdsm:VdsmInterface", VdsmSettings.from_config, "stomp.py"),
)}
_BY_CONFIG_NAME = {alias: r for r in REGISTRY.values() for alias in (r.name, *r.aliases)}


def known_names() -> tuple[str, ...]:
    """Every configuration name, registered names first, then the aliases."""
    return (*REGISTRY, *(a for r in REGISTRY.values() for a in r.aliases))


def canonical_name(name: str) -> str:
    """The registered name for a configuration name (any case). Raises InterfaceUnavailable."""
    found = _BY_CONFIG_NAME.get(name.lower())
    if found is None:
        raise InterfaceUnavailable(f"unknown hypervisor-interface {name!r} (known: {', '.join(known_names())})")
    return found.name


def interface_class(name: str) -> type[HypervisorInterface]:
    """The class for an interface name or alias. Raises InterfaceUnavailable."""
    return REGISTRY[canonical_name(name)].load()


def settings_for(config: Any) -> Any:
    """The configured interface's typed settings. Raises InterfaceUnavailable."""
    return REGISTRY[canonical_name(config.main.hypervisor_interface)].settings(config)


def build_interface(config: Any, clock: Any = None) -> HypervisorInterface:
    """The configured interface, built from its typed settings; nothing is dialled yet
    (interfaces connect on their first call). clock: the daemon's (the simulator runs on it).

    Raises, each with the operator's one line: InterfaceUnavailable (unknown name,
    missing library), VdsmConfigError (key, certificate or CA files), a
    HypervisorError when the simulator's tree cannot be written (all MomErrors),
    and mom.sim's ScenarioError for a bad scenario file."""
    registration = REGISTRY[canonical_name(config.main.hypervisor_interface)]
    return registration.load().from_settings(registration.settings(config), clock)
