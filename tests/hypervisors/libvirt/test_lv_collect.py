"""Collection with libvirt's test driver: the bulk call, the per-domain fallback,
the field names, balloon_min, CPU and IO tune, and the number of libvirt calls."""

from __future__ import annotations

import uuid as uuidlib
from pathlib import Path

import pytest

from .conftest import NO_BINDING

libvirt = pytest.importorskip("libvirt", reason=NO_BINDING)

from mom.hypervisors.libvirt.count import BalloonStatsFiller, CountingConnection  # noqa: E402
from mom.hypervisors.libvirt.domain_xml import parse_domain_xml  # noqa: E402
from tests.support.wait import wait_until  # noqa: E402

from .lvtest import FaultyConnection, FaultyOpener, domain_uuid, lv_error, new_domain_xml, node_file  # noqa: E402

MEMORY_KEYS = {"mem_available", "mem_unused", "mem_free", "mem_usable", "disk_caches",
               "major_fault", "minor_fault", "swap_in", "swap_out", "hugetlb_pgalloc", "hugetlb_pgfail"}


def counting(fill: bool = False):  # type: ignore[no-untyped-def]
    holder: dict = {}

    def opener(uri):  # type: ignore[no-untyped-def]
        conn = libvirt.open(uri)
        if fill:
            conn = BalloonStatsFiller(conn)
        holder["conn"] = CountingConnection(conn)
        return holder["conn"]
    return opener, holder


def test_fallback_when_bulk_balloon_stats_are_empty(iface_factory, tmp_path: Path) -> None:
    """The test driver's getAllDomainStats has no balloon.*: memoryStats and info per domain."""
    opener, holder = counting()
    h = iface_factory(node_file(tmp_path / "n.xml", 100, min_kib=131072), opener=opener)
    guests = h.list_guests()
    h.collect_all(guests, ["memory", "balloon"])  # fills the XML cache (balloon_min)
    holder["conn"].counter.reset()
    data = h.collect_all(guests, ["memory", "balloon"])
    assert len(data) == 100
    calls = holder["conn"].counter.calls
    assert calls == {"getAllDomainStats": 1, "memoryStats": 100, "info": 100}
    d = data[domain_uuid(7)]
    assert set(d.memory) == MEMORY_KEYS and not d.errors
    assert d.memory["mem_available"] == 1048576 // 1 and d.memory["mem_free"] == \
        d.memory["mem_unused"] + d.memory["disk_caches"]
    assert d.balloon == {"balloon_cur": 1048576, "balloon_max": 1048576, "balloon_min": 131072,
                         "balloon_free_page_reporting": 0}


def test_bulk_path_is_one_call(iface_factory, tmp_path: Path) -> None:
    """With balloon.* filled (as the QEMU driver does), one tick is one libvirt call."""
    opener, holder = counting(fill=True)
    h = iface_factory(node_file(tmp_path / "n.xml", 500), opener=opener)
    guests = h.list_guests()
    h.collect_all(guests, ["memory", "balloon"])
    holder["conn"].counter.reset()
    h.refresh()
    data = h.collect_all(guests, ["memory", "balloon"])
    assert dict(holder["conn"].counter.calls) == {"getAllDomainStats": 1}
    assert len(data) == 500
    d = data[domain_uuid(3)]
    assert set(d.memory) == MEMORY_KEYS
    assert d.balloon["balloon_cur"] == 1048576 and d.balloon["balloon_min"] == 0


def test_bulk_not_supported_falls_back(iface_factory, tmp_path: Path) -> None:
    holder: dict = {}

    def opener(uri):  # type: ignore[no-untyped-def]
        holder["conn"] = FaultyConnection(libvirt.open(uri))
        holder["conn"].no_bulk = True
        return holder["conn"]
    h = iface_factory(node_file(tmp_path / "n.xml", 5), opener=opener)
    guests = h.list_guests()
    data = h.collect_all(guests, ["memory", "balloon"])
    assert len(data) == 5 and all(d.memory and d.balloon for d in data.values())


def test_stats_period_is_set_in_refresh_once_per_domain(iface_factory, tmp_path: Path) -> None:
    """refresh() (once per collection round) sets the period on each known domain that
    lacks it on this connection; guest_added sets nothing."""
    opener, holder = counting()
    h = iface_factory(node_file(tmp_path / "n.xml", 3), opener=opener, stats_period=2.4)
    guests = h.list_guests()
    counter = holder["conn"].counter
    counter.reset()
    for g in guests:
        h.guest_added(g, 2.4)
    assert counter.total == 0
    h.refresh()
    assert dict(counter.calls) == {"setMemoryStatsPeriod": 3}
    counter.reset()
    h.refresh()
    assert counter.total == 0  # not again on every round
    h.conn.createXML(new_domain_xml("newcomer", str(uuidlib.uuid4())), 0)
    h.list_guests()
    counter.reset()
    h.refresh()
    assert dict(counter.calls) == {"setMemoryStatsPeriod": 1}  # only the new guest


def test_stats_period_error_is_logged_once_and_spoils_nothing(iface_factory, tmp_path: Path, caplog) -> None:
    holder: dict = {}

    def opener(uri):  # type: ignore[no-untyped-def]
        holder["conn"] = FaultyConnection(libvirt.open(uri))
        holder["conn"].faults[("setMemoryStatsPeriod", domain_uuid(1))] = lv_error(
            libvirt.VIR_ERR_OPERATION_INVALID, "no memory balloon device")
        return holder["conn"]
    h = iface_factory(node_file(tmp_path / "n.xml", 3), opener=opener, stats_period=5)
    guests = h.list_guests()
    h.refresh()
    h.refresh()
    assert holder["conn"].calls.count("setMemoryStatsPeriod") == 3  # tried once per domain
    assert sum("no memory balloon device" in r.getMessage() for r in caplog.records) == 1
    assert len(h.collect_all(guests, ["memory", "balloon"])) == 3


def test_from_config_takes_the_guest_monitor_interval(tmp_path: Path) -> None:
    """The period is set live (the test driver shows it in the live XML), not in the definition."""
    from mom.daemon.config import load_config
    from mom.hypervisors.libvirt import LibvirtHypervisor

    cfg = load_config(None, {"main.libvirt-hypervisor-uri": node_file(tmp_path / "n.xml", 1),
                             "main.guest-monitor-interval": "3"})
    h = LibvirtHypervisor.from_config(cfg)
    try:
        assert h.conn is None  # connects lazily
        h.list_guests()
        dom = h.conn.lookupByName("vm0")
        assert "<stats period='2'/>" in dom.XMLDesc(0)  # as node_file defines it
        h.refresh()
        assert "<stats period='3'/>" in dom.XMLDesc(0)
        assert "<stats period='2'/>" in dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    finally:
        h.close()


def test_cpu_tune_not_supported_by_the_test_driver_spoils_nothing(iface_factory, tmp_path: Path) -> None:
    h = iface_factory(node_file(tmp_path / "n.xml", 3, vcpu_limit=40))
    guests = h.list_guests()
    data = h.collect_all(guests, ["memory", "balloon", "cpu_tune"])
    for d in data.values():
        assert d.memory and d.balloon and d.cpu_tune is None
        assert "vcpu_quota" in d.errors["cpu_tune"]


def test_cpu_tune_fields_from_scheduler_parameters_and_metadata(iface_factory, tmp_path: Path) -> None:
    """vcpu_quota/vcpu_period from the scheduler parameters (replaced: the test driver has
    none), vcpu_user_limit from oVirt's tune metadata, vcpu_count from the XML."""
    opener = FaultyOpener()
    h = iface_factory(node_file(tmp_path / "n.xml", 1, vcpu_limit=40, vcpus=3), opener=opener)
    g = h.list_guests()[0]
    opener.conn.overrides[("schedulerParameters", g.uuid)] = \
        lambda: {"cpu_shares": 1024, "vcpu_period": 100000, "vcpu_quota": None}
    assert h.guest_cpu_tune(g) == {"vcpu_quota": 0, "vcpu_period": 100000, "vcpu_user_limit": 40, "vcpu_count": 3}
    data = h.collect_all([g], ["cpu_tune"])[g.uuid]
    assert data.cpu_tune == h.guest_cpu_tune(g) and not data.errors


def test_io_tune_section(iface_factory, tmp_path: Path) -> None:
    h = iface_factory(node_file(tmp_path / "n.xml", 2))
    guests = h.list_guests()
    data = h.collect_all(guests, ["io_tune"])
    entry = data[domain_uuid(1)].io_tune[0]
    assert entry["name"] == "vda" and entry["path"] == "/guest/vm1.img"
    assert entry["current"]["total_bytes_sec"] == 0 and entry["guaranteed"] == {} and entry["maximum"] == {}


def test_domain_xml_parsing() -> None:
    xml = """<domain type='kvm'><name>a</name>
      <metadata>
        <ovirt-tune:qos xmlns:ovirt-tune="http://ovirt.org/vm/tune/1.0">
          <ovirt-tune:vcpuLimit>25</ovirt-tune:vcpuLimit>
          <ovirt-tune:ioTune>
            <ovirt-tune:device name="vda" path="/img/a">
              <ovirt-tune:maximum><ovirt-tune:total_bytes_sec>900</ovirt-tune:total_bytes_sec></ovirt-tune:maximum>
              <ovirt-tune:guaranteed><ovirt-tune:total_bytes_sec>100</ovirt-tune:total_bytes_sec></ovirt-tune:guaranteed>
            </ovirt-tune:device>
          </ovirt-tune:ioTune>
        </ovirt-tune:qos>
      </metadata>
      <memtune><min_guarantee unit='MiB'>256</min_guarantee></memtune>
      <vcpu current='2'>4</vcpu>
      <devices>
        <disk type='file' device='disk'><source file='/img/a'/><target dev='vda'/></disk>
        <disk type='file' device='cdrom'><source file='/img/cd.iso'/><target dev='sda'/></disk>
        <disk type='block' device='disk'><source dev='/dev/sdz'/><target dev='vdb'/></disk>
      </devices></domain>"""
    d = parse_domain_xml(xml)
    assert d.balloon_min == 262144 and d.vcpus == 2 and d.vcpu_user_limit == 25
    assert [(x.dev, x.path) for x in d.disks] == [("vda", "/img/a"), ("vdb", "/dev/sdz")]
    assert d.io_limits(d.disks[0]) == {"guaranteed": {"total_bytes_sec": 100}, "maximum": {"total_bytes_sec": 900}}
    assert d.io_limits(d.disks[1]) == {"guaranteed": {}, "maximum": {}}
    plain = parse_domain_xml("<domain><vcpu>1</vcpu></domain>")
    assert plain.balloon_min == 0 and plain.vcpu_user_limit == 100 and plain.vcpus == 1
    with pytest.raises(ValueError):
        parse_domain_xml("<domain")


def test_metadata_change_refreshes_the_cached_xml(iface_factory, tmp_path: Path) -> None:

    h = iface_factory(node_file(tmp_path / "n.xml", 1))
    g = h.list_guests()[0]
    assert h.domain_xml(g).vcpu_user_limit == 100
    h.conn.lookupByUUIDString(g.uuid).setMetadata(
        libvirt.VIR_DOMAIN_METADATA_ELEMENT, "<qos><vcpuLimit>30</vcpuLimit></qos>", "ovirt-tune",
        "http://ovirt.org/vm/tune/1.0", libvirt.VIR_DOMAIN_AFFECT_LIVE)
    wait_until(lambda: h.domain_xml(g).vcpu_user_limit == 30, 5,
               what="the metadata change reaching the cache")
