"""Typed settings of each hypervisor interface, one frozen dataclass per interface,
built from the configuration by :meth:`from_config`.

An interface is built from its settings (``from_settings``), never from the
whole configuration, so what it depends on is listed here. ``config`` is a
:class:`mom.daemon.config.Config`; it is taken by its attributes because the
hypervisors sit below the daemon. This module imports neither libvirt nor
stomp.py, so the registry can build settings for an interface whose library
is missing and say so in one line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mom.core.host_paths import PROC_ROOT, SYS_ROOT

# vdsm: the first call waits at most this long for the first connection (s).
VDSM_FIRST_WAIT = 2.0
# vdsm: the bulk statistics are reused for at most this long (s).
VDSM_STATS_MAX_AGE = 5.0


@dataclass(frozen=True)
class LibvirtSettings:
    """``hypervisor-interface: libvirt``."""

    uri: str = ""  # '' = libvirt's default URI
    sys_root: str = SYS_ROOT
    proc_root: str = PROC_ROOT
    stats_period: float | None = None  # the balloon statistics period set on guests (s); None: left alone

    @classmethod
    def from_config(cls, config: Any) -> LibvirtSettings:
        main = config.main
        return cls(uri=main.libvirt_hypervisor_uri, sys_root=main.sys_root, proc_root=main.proc_root,
                   stats_period=main.guest_monitor_interval)


@dataclass(frozen=True)
class VdsmSettings:
    """``hypervisor-interface: vdsm`` and the ``[vdsm]`` section (whose defaults are the
    configuration schema's, so they are not repeated here)."""

    host: str
    port: int
    key_path: str
    cert_path: str
    ca_cert_path: str
    request_timeout: float
    first_wait: float = VDSM_FIRST_WAIT
    stats_max_age: float = VDSM_STATS_MAX_AGE
    sys_root: str = SYS_ROOT

    @classmethod
    def from_config(cls, config: Any) -> VdsmSettings:
        v, m = config.vdsm, config.main
        shortest = min(m.host_monitor_interval, m.guest_monitor_interval, m.guest_manager_interval)
        return cls(host=v.host, port=v.port, key_path=v.key_path, cert_path=v.cert_path,
                   ca_cert_path=v.ca_cert_path, request_timeout=v.request_timeout,
                   # The first call waits for the first connection: well within the engine's call deadline.
                   first_wait=min(VDSM_FIRST_WAIT, m.hypervisor_call_timeout / 4),
                   # One collection round (discovery, host KSM, guests) shares one getAllVmStats.
                   stats_max_age=min(VDSM_STATS_MAX_AGE, shortest / 2),
                   sys_root=m.sys_root)


@dataclass(frozen=True)
class SimSettings:
    """``hypervisor-interface: sim`` and the ``[sim]`` section (the speed is the daemon's clock)."""

    scenario: str | None = None  # a scenario file; None: the built-in default
    seed: int | None = None      # None: the scenario's own seed
    tree_dir: str | None = None  # None: a temporary tree, removed on close

    @classmethod
    def from_config(cls, config: Any) -> SimSettings:
        s = config.sim
        return cls(scenario=s.scenario or None, seed=s.seed, tree_dir=s.tree_dir or None)


# qmp: the deadline of one QMP call, connection attempt and guest collection (s), at most.
QMP_TIMEOUT = 5.0


@dataclass(frozen=True)
class QmpSettings:
    """``hypervisor-interface: qmp`` and ``qmp-socket-glob``."""

    socket_glob: str
    timeout: float = QMP_TIMEOUT
    stats_period: float | None = None  # the balloon statistics polling interval set on guests (s)
    sys_root: str = SYS_ROOT

    @classmethod
    def from_config(cls, config: Any) -> QmpSettings:
        m = config.main
        # Well within the engine's call deadline: discovery may wait for one connection attempt
        # and collection for one round of queries, both bounded by this.
        return cls(socket_glob=m.qmp_socket_glob, timeout=min(QMP_TIMEOUT, m.hypervisor_call_timeout / 3),
                   stats_period=m.guest_monitor_interval, sys_root=m.sys_root)
