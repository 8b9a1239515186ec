"""What MOM reads from a libvirt domain's XML description (no libvirt import here).

- balloon_min: ``<memtune><min_guarantee>`` in KiB (0 when absent).
- vcpus: ``<vcpu current=...>N</vcpu>`` (the current count, else N).
- vcpu_user_limit: oVirt's tune metadata (namespace :data:`OVIRT_TUNE_NS`),
  element ``vcpuLimit``, percent; 100 when absent.
- disks: target dev and source path of each ``<disk device='disk'>``.
- io_policy: per disk, the ``guaranteed`` and ``maximum`` limit maps of the
  oVirt tune metadata's ``ioTune/device`` entries (matched by path, else name).
- free_page_reporting: ``<memballoon model='virtio...' freePageReporting='on'>``
  (True/False; None without a virtio balloon).
- virtio_mem_devices: every ``<devices><memory model='virtio-mem'>``: its
  ``<target>``'s size (the region), node, block, requested and current (the
  plugged size; libvirt updates it in the live XML as the guest plugs), in KiB
  (a ``unit`` attribute says otherwise), and the element itself, which an
  update sends back with another ``<requested>``. virtio_mem is the first: MOM
  manages one device per guest (QEMU guests rarely have more), but libvirt's
  balloon figures count them all (virtio_mem_plugged, virtio_mem_regions).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from mom.core.disks import IO_KEYS, find_disk

OVIRT_TUNE_NS = "http://ovirt.org/vm/tune/1.0"

_UNITS = {  # libvirt memory units -> KiB factor
    "b": 1 / 1024, "bytes": 1 / 1024, "k": 1, "kib": 1, "kb": 1000 / 1024,
    "m": 1024, "mib": 1024, "mb": 1000 ** 2 / 1024, "g": 1024 ** 2, "gib": 1024 ** 2,
    "gb": 1000 ** 3 / 1024, "t": 1024 ** 3, "tib": 1024 ** 3, "tb": 1000 ** 4 / 1024,
}


@dataclass
class Disk:
    dev: str
    path: str | None


@dataclass(frozen=True)
class VirtioMem:
    """A virtio-mem device (sizes in KiB)."""

    size: int        # the region: the most it can plug
    block: int
    requested: int
    current: int     # plugged now
    node: int | None
    element: str     # the <memory> element as libvirt gave it

    def with_requested(self, size_kib: int) -> str:
        """The device's XML asking for ``size_kib`` (KiB): what updateDeviceFlags takes.
        ``<current>`` is left out: it is libvirt's output, not a setting."""
        elem = ET.fromstring(self.element)
        target = elem.find("./target")
        if target is None:  # parse_domain_xml keeps only devices with a target
            raise ValueError("virtio-mem device without <target>")
        current = target.find("./current")
        if current is not None:
            target.remove(current)
        requested = target.find("./requested")
        if requested is None:
            requested = ET.SubElement(target, "requested")
        requested.attrib.clear()
        requested.set("unit", "KiB")
        requested.text = str(int(size_kib))
        return ET.tostring(elem, encoding="unicode")


@dataclass
class DomainXml:
    balloon_min: int = 0
    vcpus: int | None = None
    vcpu_user_limit: int = 100
    disks: list[Disk] = field(default_factory=list)
    # the oVirt tune metadata's devices: (name, path, {"guaranteed": {...}, "maximum": {...}})
    io_policy: list[tuple[str | None, str | None, dict[str, dict[str, int]]]] = field(default_factory=list)
    free_page_reporting: bool | None = None
    virtio_mem_devices: list[VirtioMem] = field(default_factory=list)

    @property
    def virtio_mem(self) -> VirtioMem | None:
        """The device MOM manages: the first."""
        return self.virtio_mem_devices[0] if self.virtio_mem_devices else None

    @property
    def virtio_mem_plugged(self) -> int:
        """KiB plugged in all virtio-mem devices (their ``<current>``)."""
        return sum(device.current for device in self.virtio_mem_devices)

    @property
    def virtio_mem_regions(self) -> int:
        """KiB of all virtio-mem devices' regions (their ``<size>``)."""
        return sum(device.size for device in self.virtio_mem_devices)

    def io_limits(self, disk: Disk) -> dict[str, dict[str, int]]:
        """The policy bounds of a disk: its metadata entry found by the one disk rule."""
        found = find_disk(self.io_policy, disk.dev, disk.path, lambda entry: (entry[0], entry[1]))
        return found[2] if found is not None else {"guaranteed": {}, "maximum": {}}


def _kib(elem: ET.Element | None) -> int:
    if elem is None:
        return 0
    text = (elem.text or "").strip()
    if not text:
        return 0
    factor = _UNITS.get((elem.get("unit") or "KiB").lower(), 1)
    return int(int(text) * factor)


def _int(text: str | None) -> int | None:
    try:
        return int((text or "").strip())
    except ValueError:
        return None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def parse_domain_xml(text: str) -> DomainXml:
    """Parse a domain XML description. Raises ValueError when it is not XML."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as e:
        raise ValueError(f"bad domain XML: {e}") from None
    out = DomainXml()
    out.balloon_min = _kib(root.find("./memtune/min_guarantee"))
    vcpu = root.find("./vcpu")
    if vcpu is not None:
        out.vcpus = _int(vcpu.get("current")) or _int(vcpu.text)
    for disk in root.findall("./devices/disk"):
        if disk.get("device", "disk") != "disk":
            continue
        target = disk.find("./target")
        if target is None or not target.get("dev"):
            continue
        source = disk.find("./source")
        path = None
        if source is not None:
            path = source.get("file") or source.get("dev") or source.get("name") or source.get("volume")
        out.disks.append(Disk(target.get("dev", ""), path))
    balloon = root.find("./devices/memballoon")
    if balloon is not None and (balloon.get("model") or "").startswith("virtio"):
        out.free_page_reporting = balloon.get("freePageReporting") == "on"
    out.virtio_mem_devices = _virtio_mems(root)
    metadata = root.find("./metadata")
    if metadata is not None:
        ns = "{" + OVIRT_TUNE_NS + "}"
        limit = metadata.find(f".//{ns}vcpuLimit")
        if limit is not None and _int(limit.text) is not None:
            out.vcpu_user_limit = _int(limit.text)  # type: ignore[assignment]
        for device in metadata.iter(f"{ns}device"):
            entry: dict[str, dict[str, int]] = {"guaranteed": {}, "maximum": {}}
            for kind in ("guaranteed", "maximum"):
                elem = device.find(f"{ns}{kind}")
                if elem is None:
                    continue
                for child in elem:
                    value = _int(child.text)
                    if _local(child.tag) in IO_KEYS and value is not None:
                        entry[kind][_local(child.tag)] = value
            out.io_policy.append((device.get("name") or None, device.get("path") or None, entry))
    return out


def _virtio_mems(root: ET.Element) -> list[VirtioMem]:
    devices = []
    for elem in root.findall("./devices/memory"):
        target = elem.find("./target")
        if elem.get("model") != "virtio-mem" or target is None:
            continue
        node = target.find("./node")
        devices.append(VirtioMem(size=_kib(target.find("./size")), block=_kib(target.find("./block")),
                                 requested=_kib(target.find("./requested")),
                                 current=_kib(target.find("./current")),
                                 node=_int(node.text) if node is not None else None,
                                 element=ET.tostring(elem, encoding="unicode").strip()))  # without its tail
    return devices
