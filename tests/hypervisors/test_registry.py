"""The one registry: names and the original MOM's aliases, typed settings from the
configuration, interfaces built from them, and capabilities asked, not probed."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from mom.core.clock import ManualClock
from mom.daemon.config import load_config
from mom.hypervisors import REGISTRY, build_interface, canonical_name, interface_class, known_names, settings_for
from mom.hypervisors.base import Capability, GuestInfo, HypervisorError, InterfaceUnavailable, NotSupported
from mom.hypervisors.settings import LibvirtSettings, QmpSettings, SimSettings, VdsmSettings
from mom.hypervisors.sim import SimHypervisor


def test_names_and_the_originals_aliases() -> None:
    assert set(REGISTRY) == {"libvirt", "qmp", "sim", "vdsm"}
    for alias in ("vdsm", "vdsmjsonrpcbulk", "vdsmjsonrpc", "vdsmjsonrpcclient", "VdsmJsonRpcBulk"):
        assert canonical_name(alias) == "vdsm"
    assert canonical_name("LIBVIRT") == "libvirt"
    assert known_names() == ("libvirt", "qmp", "sim", "vdsm",
                             "vdsmjsonrpcbulk", "vdsmjsonrpc", "vdsmjsonrpcclient")
    with pytest.raises(InterfaceUnavailable,
                       match=r"unknown hypervisor-interface 'xen' \(known: libvirt, qmp, sim, vdsm"):
        interface_class("xen")
    assert interface_class("sim") is SimHypervisor


def test_typed_settings_from_the_configuration(tmp_path: Path) -> None:
    cfg = load_config(None, {"main.libvirt-hypervisor-uri": "qemu:///system", "main.guest-monitor-interval": "7",
                             "main.sys-root": str(tmp_path / "sys")})
    assert settings_for(cfg) == LibvirtSettings(uri="qemu:///system", sys_root=str(tmp_path / "sys"),
                                               proc_root="/proc", stats_period=7.0)
    cfg = load_config(None, {"main.hypervisor-interface": "vdsmjsonrpcbulk", "vdsm.port": "1234",
                             "main.hypervisor-call-timeout": "4", "main.host-monitor-interval": "3"})
    vdsm = settings_for(cfg)
    assert isinstance(vdsm, VdsmSettings) and vdsm.port == 1234
    assert vdsm.first_wait == 1.0 and vdsm.stats_max_age == 1.5  # a quarter of the call deadline; half of 3 s
    assert vdsm.ca_cert_path == cfg.vdsm.ca_cert_path
    cfg = load_config(None, {"main.hypervisor-interface": "qmp", "main.qmp-socket-glob": "/run/q/*.sock",
                             "main.hypervisor-call-timeout": "6", "main.guest-monitor-interval": "2"})
    # One QMP call's deadline: a third of the engine's, so discovery and collection end within it.
    assert settings_for(cfg) == QmpSettings(socket_glob="/run/q/*.sock", timeout=2.0, stats_period=2.0)
    cfg = load_config(None, {"main.hypervisor-interface": "sim", "sim.seed": "5"})
    assert settings_for(cfg) == SimSettings(scenario=None, seed=5, tree_dir=None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings_for(cfg).seed = 6  # type: ignore[misc]


def test_build_the_simulator_on_the_daemons_clock(tmp_path: Path) -> None:
    cfg = load_config(None, {"main.hypervisor-interface": "sim", "sim.tree-dir": str(tmp_path / "tree")})
    clock = ManualClock()
    hv = build_interface(cfg, clock)
    try:
        assert isinstance(hv, SimHypervisor) and hv.clock is clock and hv.root == str(tmp_path / "tree")
        assert hv.list_guests()
    finally:
        hv.close()


def test_an_unwritable_simulator_tree_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    cfg = load_config(None, {"main.hypervisor-interface": "sim", "sim.tree-dir": str(blocker / "tree")})
    with pytest.raises(HypervisorError, match=r"^simulator tree: Not a directory$"):
        build_interface(cfg, ManualClock())


def test_vdsm_key_files_are_one_line(tmp_path: Path) -> None:
    from mom.hypervisors.vdsm import VdsmConfigError

    cfg = load_config(None, {"main.hypervisor-interface": "vdsm", "vdsm.pki-dir": str(tmp_path / "nowhere")})
    with pytest.raises(VdsmConfigError, match=r"^\[vdsm\] ca-cert-file .*nowhere/certs/cacert.pem: No such file"):
        build_interface(cfg)


class Plain(SimHypervisor):
    """An interface that declares nothing beyond the base."""


def test_capabilities_are_declared_not_probed(tmp_path: Path) -> None:
    hv = SimHypervisor(tree_dir=str(tmp_path / "t"))
    try:
        assert not any(hv.supports(c) for c in Capability) and not hv.bulk
        assert hv.set_change_listener(lambda: None) is False  # no events: discovery polls
        with pytest.raises(NotSupported, match="guest agent"):
            hv.qemu_agent_command(GuestInfo("u", "g"), {"execute": "guest-ping"})
    finally:
        hv.close()
    from mom.hypervisors.vdsm import VdsmInterface

    assert VdsmInterface.capabilities == {Capability.BULK_STATS} and VdsmInterface.bulk


def test_bulk_declares_the_capability() -> None:
    class Bulk(SimHypervisor):
        bulk = True

    assert Capability.BULK_STATS in Bulk.capabilities and Bulk.bulk
    assert not Plain.bulk and Capability.BULK_STATS not in Plain.capabilities


def test_libvirt_declares_events_agent_and_bulk() -> None:
    pytest.importorskip("libvirt", reason="libvirt-python is not installed")
    cls: Any = interface_class("libvirt")
    assert cls.capabilities == {Capability.BULK_STATS, Capability.EVENTS, Capability.GUEST_AGENT} and cls.bulk


def test_build_libvirt_connects_on_the_first_call() -> None:
    pytest.importorskip("libvirt", reason="libvirt-python is not installed")
    from mom.hypervisors.libvirt import RunState

    hv: Any = build_interface(load_config(None, {"main.libvirt-hypervisor-uri": "test:///default"}))
    try:
        assert hv.run_state is RunState.IDLE and hv.uri == "test:///default"  # momd -d forks after this
        assert hv.list_guests() and hv.run_state is RunState.CONNECTED
    finally:
        hv.close()
