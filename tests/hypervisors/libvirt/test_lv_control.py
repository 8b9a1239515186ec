"""Control with libvirt's test driver: balloon targets, IO tune, CPU tune, KSM, the agent."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import NO_BINDING

libvirt = pytest.importorskip("libvirt", reason=NO_BINDING)

from mom.hypervisors.base import GuestGone, GuestInfo, HypervisorError, NotSupported  # noqa: E402

from .lvtest import FaultyOpener, domain_uuid, node_file  # noqa: E402


def test_balloon_target_reaches_info(iface_factory, tmp_path: Path) -> None:
    h = iface_factory(node_file(tmp_path / "n.xml", 500))
    guests = h.list_guests()
    targets = {g.uuid: 262144 + 1024 * i for i, g in enumerate(guests)}
    for g in guests:
        h.set_balloon_target(g, targets[g.uuid])
    for g in guests:
        assert h.conn.lookupByUUIDString(g.uuid).info()[2] == targets[g.uuid]
    data = h.collect_all(guests, ["balloon"])
    assert {u: d.balloon["balloon_cur"] for u, d in data.items()} == targets


def test_balloon_target_of_a_gone_guest(iface_factory, tmp_path: Path) -> None:
    h = iface_factory(node_file(tmp_path / "n.xml", 1))
    with pytest.raises(GuestGone):
        h.set_balloon_target(GuestInfo(uuid="00000000-0000-0000-0000-000000000001", name="ghost"), 1024)


def test_io_tune_is_applied(iface_factory, tmp_path: Path) -> None:
    h = iface_factory(node_file(tmp_path / "n.xml", 1))
    g = h.list_guests()[0]
    h.set_io_tune(g, [{"name": "vda", "path": "/guest/vm0.img",
                       "current": {"total_bytes_sec": 1000000, "read_iops_sec": 50}}])
    tune = h.conn.lookupByUUIDString(g.uuid).blockIoTune("vda", 0)
    assert tune["total_bytes_sec"] == 1000000 and tune["read_iops_sec"] == 50
    assert h.guest_io_tune(g)[0]["current"]["total_bytes_sec"] == 1000000
    with pytest.raises(HypervisorError, match="no disk"):
        h.set_io_tune(g, [{"name": "vdz", "path": "/nowhere", "current": {"total_bytes_sec": 1}}])
    with pytest.raises(HypervisorError, match="unknown IO limit"):
        h.set_io_tune(g, [{"name": "vda", "path": None, "current": {"bogus": 1}}])


def test_cpu_tune_unsupported_by_the_test_driver(iface_factory, tmp_path: Path) -> None:
    h = iface_factory(node_file(tmp_path / "n.xml", 1))
    g = h.list_guests()[0]
    with pytest.raises(HypervisorError):
        h.set_cpu_tune(g, quota=50000, period=100000)
    h.set_cpu_tune(g)  # nothing to change: no call


def test_cpu_tune_sends_scheduler_parameters(iface_factory, tmp_path: Path) -> None:
    """What reaches libvirt (the test driver has no vcpu_quota: the domain's call is
    replaced, as QEMU's driver would take it)."""
    opener = FaultyOpener()
    h = iface_factory(node_file(tmp_path / "n.xml", 1), opener=opener)
    g = h.list_guests()[0]
    sent = []
    opener.conn.overrides[("setSchedulerParametersFlags", g.uuid)] = lambda params, flags: sent.append((params, flags))
    h.set_cpu_tune(g, quota=-1, period=None)
    h.set_cpu_tune(g, quota=25000, period=100000)
    assert sent == [({"vcpu_quota": -1}, libvirt.VIR_DOMAIN_AFFECT_LIVE),
                    ({"vcpu_quota": 25000, "vcpu_period": 100000}, libvirt.VIR_DOMAIN_AFFECT_LIVE)]


def test_domain_is_the_guests_libvirt_domain(iface_factory, tmp_path: Path) -> None:
    h = iface_factory(node_file(tmp_path / "n.xml", 2))
    guests = h.list_guests()
    assert [h.domain(g).UUIDString() for g in guests] == [g.uuid for g in guests]
    with pytest.raises(GuestGone):
        h.domain(GuestInfo(uuid="00000000-0000-0000-0000-000000000001", name="ghost"))


def test_ksm_through_sysfs_fixture(iface_factory, tmp_path: Path) -> None:
    ksm = tmp_path / "sys" / "kernel" / "mm" / "ksm"
    ksm.mkdir(parents=True)
    for name in ("run", "pages_to_scan", "sleep_millisecs"):
        (ksm / name).write_text("0\n")
    h = iface_factory("test:///default", sys_root=str(tmp_path / "sys"))
    h.set_ksm_tune({"run": 1, "pages_to_scan": 300})
    assert (ksm / "run").read_text() == "1\n" and (ksm / "pages_to_scan").read_text() == "300\n"
    with pytest.raises(NotSupported):
        h.set_ksm_tune({"bogus": 1})


def test_agent_command_not_supported_by_the_test_driver(iface_factory) -> None:
    h = iface_factory("test:///default")
    g = h.list_guests()[0]
    with pytest.raises(NotSupported):
        h.qemu_agent_command(g, {"execute": "guest-ping"})


def test_from_config(tmp_path: Path) -> None:
    from mom.core.clock import Clock
    from mom.daemon.config import load_config
    from mom.daemon.daemon import make_hypervisor
    from mom.hypervisors.libvirt import LibvirtHypervisor

    uri = node_file(tmp_path / "n.xml", 2)
    conf = tmp_path / "mom.conf"
    conf.write_text(f"[main]\nhypervisor-interface: libvirt\nlibvirt-hypervisor-uri: {uri}\n"
                    f"sys-root: {tmp_path}\n")
    h = make_hypervisor(load_config(str(conf)), Clock())
    try:
        assert isinstance(h, LibvirtHypervisor) and h.sys_root == str(tmp_path)
        assert {g.uuid for g in h.list_guests()} == {domain_uuid(0), domain_uuid(1)}
    finally:
        h.close()
