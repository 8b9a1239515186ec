"""What MOM reads from a libvirt domain's XML description (no libvirt import here).

- balloon_min: ``<memtune><min_guarantee>`` in KiB (0 when absent).
- vcpus: ``<vcpu current=...>N</vcpu>`` (the current count, else N).
- vcpu_user_limit: oVirt's tune metadata (namespace :data:`OVIRT_TUNE_NS`),
  element ``vcpuLimit``, percent; 100 when absent.
- disks: target dev and source path of each ``<disk device='disk'>``.
- io_policy: per disk, the ``guaranteed`` and ``maximum`` limit maps of the
  oVirt tune metadata's ``ioTune/device`` entries (matched by path, else name).
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


@dataclass
class DomainXml:
    balloon_min: int = 0
    vcpus: int | None = None
    vcpu_user_limit: int = 100
    disks: list[Disk] = field(default_factory=list)
    # the oVirt tune metadata's devices: (name, path, {"guaranteed": {...}, "maximum": {...}})
    io_policy: list[tuple[str | None, str | None, dict[str, dict[str, int]]]] = field(default_factory=list)

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
