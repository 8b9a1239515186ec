"""virtio-mem, free page reporting and the newer balloon statistics with libvirt's test
driver: the sections from the domain XML and memoryStats, and the requested size set
through updateDeviceFlags (which the test driver does not implement: what reaches
libvirt is recorded through the opener; the end-to-end test sends it to QEMU)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from .conftest import NO_BINDING

libvirt = pytest.importorskip("libvirt", reason=NO_BINDING)

from mom.hypervisors.base import GuestInfo, HypervisorError, NotSupported  # noqa: E402
from mom.hypervisors.libvirt.count import BalloonStatsFiller  # noqa: E402
from mom.hypervisors.libvirt.domain_xml import parse_domain_xml  # noqa: E402

from .lvtest import FaultyConnection, FaultyOpener, domain_uuid, node_file, virtio_mem_xml  # noqa: E402

GIB = 1048576  # KiB
# vm0 and vm2: a 2 GiB virtio-mem region in 2 MiB blocks asking for 512 MiB; vm1: none.
WITH_DEVICE = {"virtio_mem": virtio_mem_xml("2 GiB", "2 MiB", "512 MiB"), "virtio_mem_kib": 2 * GIB}


def node(tmp_path: Path, **kwargs: object) -> str:
    return node_file(tmp_path / "n.xml", 3, each={0: WITH_DEVICE, 2: WITH_DEVICE}, **kwargs)


def by_name(guests: list[GuestInfo]) -> dict[str, GuestInfo]:
    return {g.name: g for g in guests}


def test_virtio_mem_section_from_the_domain_xml(iface_factory, tmp_path: Path) -> None:
    h = iface_factory(node(tmp_path))
    guests = h.list_guests()
    data = h.collect_all(guests, ["memory", "balloon", "virtio_mem"])
    assert data[domain_uuid(0)].virtio_mem == {"virtio_mem_size": 0, "virtio_mem_requested": 524288,
                                               "virtio_mem_block": 2048, "virtio_mem_max": 2 * GIB}
    without = data[domain_uuid(1)]
    assert without.virtio_mem is None and without.errors == {"virtio_mem": "guest vm1: no virtio-mem device"}
    assert without.memory and without.balloon  # the other sections are there
    assert h.guest_virtio_mem(by_name(guests)["vm2"])["virtio_mem_max"] == 2 * GIB
    with pytest.raises(NotSupported, match="vm1: no virtio-mem device"):
        h.guest_virtio_mem(by_name(guests)["vm1"])


def test_virtio_mem_units_and_the_plugged_size() -> None:
    """Sizes are KiB unless a unit attribute says otherwise; <current> is the plugged size."""
    text = """<domain><devices>
      <memory model='dimm'><target><size unit='GiB'>1</size><node>0</node></target></memory>
      <memory model='virtio-mem'><target><size unit='G'>4</size><node>1</node><block unit='bytes'>2097152</block>
        <requested unit='MiB'>1536</requested><current>1048576</current></target>
        <alias name='virtiomem0'/></memory>
    </devices></domain>"""
    device = parse_domain_xml(text).virtio_mem
    assert device is not None
    assert (device.size, device.block, device.requested, device.current, device.node) == \
        (4 * GIB, 2048, 1572864, GIB, 1)  # the dimm before it is not a virtio-mem device
    sent = ET.fromstring(device.with_requested(2 * GIB))
    assert sent.get("model") == "virtio-mem" and sent.find("./alias").get("name") == "virtiomem0"
    target = sent.find("./target")
    assert target.find("./current") is None  # libvirt's output, not a setting
    assert (target.find("./requested").text, target.find("./requested").get("unit")) == (str(2 * GIB), "KiB")
    assert (target.find("./size").text, target.find("./size").get("unit")) == ("4", "G")  # the rest as it was
    assert parse_domain_xml("<domain><devices/></domain>").virtio_mem is None


@pytest.mark.parametrize("reporting, expected", [(True, 1), (False, 0), (None, 0)])
def test_free_page_reporting_in_the_balloon_section(iface_factory, tmp_path: Path, reporting: bool | None,
                                                   expected: int) -> None:
    h = iface_factory(node_file(tmp_path / "n.xml", 1, free_page_reporting=reporting))
    data = h.collect_all(h.list_guests(), ["balloon"])[domain_uuid(0)]
    assert data.balloon["balloon_free_page_reporting"] == expected and not data.errors


def test_no_free_page_reporting_key_without_a_virtio_balloon() -> None:
    xml = parse_domain_xml("<domain><devices><memballoon model='none'/></devices></domain>")
    assert xml.free_page_reporting is None
    from mom.hypervisors.libvirt.stats import balloon_section
    assert "balloon_free_page_reporting" not in balloon_section(1, 2, xml)


@pytest.mark.parametrize("bulk", [False, True], ids=["memoryStats", "getAllDomainStats"])
def test_hugetlb_statistics_and_no_oom_kills(iface_factory, tmp_path: Path, bulk: bool) -> None:
    """hugetlb_pgalloc/pgfail come through both paths; libvirt 9.0 has no OOM-kill or
    allocation-stall statistic, so those keys are never there."""
    def opener(uri):  # type: ignore[no-untyped-def]
        conn = libvirt.open(uri)
        return BalloonStatsFiller(conn) if bulk else conn
    h = iface_factory(node_file(tmp_path / "n.xml", 2), opener=opener)
    memory = h.collect_all(h.list_guests(), ["memory"])[domain_uuid(1)].memory
    assert memory["hugetlb_pgalloc"] == 0 and memory["hugetlb_pgfail"] == 0
    assert "oom_kills" not in memory and "alloc_stalls" not in memory


def test_requested_size_is_sent_as_the_devices_xml(iface_factory, tmp_path: Path) -> None:
    opener = FaultyOpener()
    h = iface_factory(node(tmp_path), opener=opener)
    vm0 = by_name(h.list_guests())["vm0"]
    sent: list[tuple[str, int]] = []
    opener.conn.overrides[("updateDeviceFlags", vm0.uuid)] = lambda xml, flags: sent.append((xml, flags))
    h.set_virtio_mem_requested(vm0, GIB)
    [(text, flags)] = sent
    assert flags == libvirt.VIR_DOMAIN_AFFECT_LIVE  # never the persistent definition
    device = ET.fromstring(text)
    assert device.tag == "memory" and device.get("model") == "virtio-mem"
    target = device.find("./target")
    assert {child.tag: (child.text, child.get("unit")) for child in target} == {  # the live XML's, in KiB
        "size": (str(2 * GIB), "KiB"), "node": ("0", None), "block": ("2048", "KiB"), "requested": (str(GIB), "KiB")}


@pytest.mark.parametrize("size, why", [(GIB + 1024, "is not a multiple of its 2048 KiB block"),
                                       (-2048, "is outside the device's region \\[0, 2097152\\] KiB"),
                                       (2 * GIB + 2048, "is outside the device's region \\[0, 2097152\\] KiB")])
def test_a_size_the_device_cannot_take_is_refused_in_one_line(iface_factory, tmp_path: Path, size: int,
                                                              why: str) -> None:
    opener = FaultyOpener()
    h = iface_factory(node(tmp_path), opener=opener)
    vm0 = by_name(h.list_guests())["vm0"]
    with pytest.raises(HypervisorError, match=f"guest vm0: virtio-mem requested size {size} KiB {why}") as e:
        h.set_virtio_mem_requested(vm0, size)
    assert "\n" not in str(e.value) and not isinstance(e.value, NotSupported)
    assert "updateDeviceFlags" not in opener.conn.calls  # nothing reached libvirt
    assert h.guest_virtio_mem(vm0)["virtio_mem_requested"] == 524288


def test_no_device_or_no_driver_support_is_not_supported(iface_factory, tmp_path: Path) -> None:
    h = iface_factory(node(tmp_path))
    guests = by_name(h.list_guests())
    with pytest.raises(NotSupported, match="guest vm1: no virtio-mem device"):
        h.set_virtio_mem_requested(guests["vm1"], 0)
    # The test driver has no updateDeviceFlags: libvirt's "not supported", named.
    with pytest.raises(NotSupported, match=r"guest vm0: virtio-mem requested size 0 KiB: .*not supported"):
        h.set_virtio_mem_requested(guests["vm0"], 0)


def test_the_plugged_size_is_read_fresh_without_events(iface_factory, tmp_path: Path) -> None:
    """Without events nothing tells the interface that the guest plugged memory: a guest
    with a device has its XML read every time (here the driver's XML is replaced as a
    QEMU guest's would change)."""
    opener = FaultyOpener()
    h = iface_factory(node(tmp_path), opener=opener, events=False)
    guests = h.list_guests()
    vm0 = by_name(guests)["vm0"]
    live = h.domain(vm0).XMLDesc(0)
    plugged = {"kib": 0}

    def xml_desc(flags: int) -> str:
        return live.replace("<current unit='KiB'>0</current>", f"<current unit='KiB'>{plugged['kib']}</current>")
    opener.conn.overrides[("XMLDesc", vm0.uuid)] = xml_desc
    assert h.collect_all(guests, ["virtio_mem"])[vm0.uuid].virtio_mem["virtio_mem_size"] == 0
    plugged["kib"] = 262144
    assert h.collect_all(guests, ["virtio_mem"])[vm0.uuid].virtio_mem["virtio_mem_size"] == 262144
    # The balloon section needs the plugged size too (libvirt counts it in its balloon
    # figures): one fresh XML per tick for both sections, and only for the guests with
    # a device (vm0, vm2); vm1 and the other sections keep the cached XML.
    before = opener.conn.calls.count("XMLDesc")
    h.collect_all(guests, ["memory", "balloon", "cpu_tune", "virtio_mem"])
    assert opener.conn.calls.count("XMLDesc") == before + 2
    plugged["kib"] = 0
    assert h.collect_all(guests, ["balloon", "virtio_mem"])[vm0.uuid].virtio_mem["virtio_mem_size"] == 0
    assert opener.conn.calls.count("XMLDesc") == before + 4


# libvirt's QEMU driver counts virtio-mem memory in its balloon figures (measured with
# libvirt 9.0 in test_lv_e2e_virtio_mem.py): current = the balloon + every device's
# plugged size, maximum = boot memory + every device's region. The test driver's
# info() gives <currentMemory> and boot + regions: vm0 boots with 1 GiB, its balloon
# holds 128 MiB back, and two devices (512 MiB and 1 GiB regions) have 256 MiB and
# 128 MiB plugged, so libvirt says 1310720 of 2621440 KiB.
BOOT_KIB, BALLOONED_KIB = GIB, 131072
PLUGGED_KIB = (262144, 131072)
TWO_DEVICES = {"virtio_mem": virtio_mem_xml("512 MiB", "2 MiB", "256 MiB")
               + virtio_mem_xml("1 GiB", "2 MiB", "128 MiB"),
               "virtio_mem_kib": 3 * GIB // 2, "memory_kib": BOOT_KIB,
               "current_kib": BOOT_KIB - BALLOONED_KIB + sum(PLUGGED_KIB)}


def plugged_xml(live: str) -> str:
    """The live XML as QEMU's libvirt gives it: each device's plugged size in <current>
    (the test driver leaves it at 0)."""
    for kib in PLUGGED_KIB:
        live = live.replace("<current unit='KiB'>0</current>", f"<current unit='KiB'>{kib}</current>", 1)
    return live


@pytest.mark.parametrize("bulk", [False, True], ids=["info", "getAllDomainStats"])
def test_the_balloon_section_is_the_boot_memorys_balloon(iface_factory, tmp_path: Path, bulk: bool) -> None:
    """balloon_cur <= balloon_max = boot memory, as over QMP and in the simulator: every
    device's plugged size and region taken off libvirt's figures, in both paths."""
    def opener(uri):  # type: ignore[no-untyped-def]
        conn = libvirt.open(uri)
        made.append(FaultyConnection(BalloonStatsFiller(conn) if bulk else conn))
        return made[-1]
    made: list = []
    h = iface_factory(node_file(tmp_path / "n.xml", 2, each={0: TWO_DEVICES}), opener=opener)
    guests = by_name(h.list_guests())
    vm0 = guests["vm0"]
    live = h.domain(vm0).XMLDesc(0)
    assert h.domain(vm0).info()[1:3] == [2621440, 1310720]  # libvirt's own figures
    made[-1].overrides[("XMLDesc", vm0.uuid)] = lambda flags: plugged_xml(live)
    data = h.collect_all(list(guests.values()), ["balloon", "virtio_mem"])
    assert (bulk and "getAllDomainStats" in made[-1].calls) or "info" in made[-1].calls
    balloon = data[vm0.uuid].balloon
    assert (balloon["balloon_cur"], balloon["balloon_max"]) == (BOOT_KIB - BALLOONED_KIB, BOOT_KIB)
    assert data[vm0.uuid].virtio_mem["virtio_mem_size"] == PLUGGED_KIB[0]  # the device MOM manages: the first
    assert h.guest_balloon_info(vm0)["balloon_max"] == BOOT_KIB  # the per-guest getter too
    plain = data[guests["vm1"].uuid].balloon  # no device: libvirt's figures as they are
    assert (plain["balloon_cur"], plain["balloon_max"]) == (GIB, GIB)


def test_the_balloon_stays_within_its_bounds_when_the_xml_is_a_step_behind() -> None:
    """libvirt's figures are read before the XML: mid-plug they may disagree by a step."""
    from mom.hypervisors.libvirt.stats import balloon_section
    xml = parse_domain_xml("<domain><devices><memory model='virtio-mem'><target><size>524288</size>"
                           "<block>2048</block><current>262144</current></target></memory></devices></domain>")
    assert xml.virtio_mem_plugged == 262144 and xml.virtio_mem_regions == 524288
    section = balloon_section(524288 + 131072, 1048576, xml)  # the XML already has more plugged
    assert (section["balloon_cur"], section["balloon_max"]) == (393216, 524288)
    section = balloon_section(524288 + 393216, 1048576, xml)  # the XML still has less plugged
    assert (section["balloon_cur"], section["balloon_max"]) == (524288, 524288)
