"""Helpers for the libvirt tests: test-driver node files with many domains."""

from __future__ import annotations

import uuid as uuidlib
from pathlib import Path

NS = uuidlib.UUID("0d6c2b7e-9f1a-4c55-8e1f-6d6f6d2d6c76")


def domain_uuid(i: int) -> str:
    return str(uuidlib.uuid5(NS, f"vm{i}"))


def domain_xml(i: int, *, memory_kib: int = 1048576, current_kib: int | None = None, min_kib: int | None = None,
               vcpu_limit: int | None = None, vcpus: int = 2, running: bool = True) -> str:
    memtune = f"<memtune><min_guarantee unit='KiB'>{min_kib}</min_guarantee></memtune>" if min_kib else ""
    metadata = ""
    if vcpu_limit is not None:
        metadata = ("<metadata><ovirt-tune:qos xmlns:ovirt-tune='http://ovirt.org/vm/tune/1.0'>"
                    f"<ovirt-tune:vcpuLimit>{vcpu_limit}</ovirt-tune:vcpuLimit></ovirt-tune:qos></metadata>")
    state = "" if running else "<state>shutoff</state>"  # unused by the test driver's parser
    return f"""<domain type='test'>
  <name>vm{i}</name>
  <uuid>{domain_uuid(i)}</uuid>
  {metadata}
  <memory unit='KiB'>{memory_kib}</memory>
  <currentMemory unit='KiB'>{current_kib or memory_kib}</currentMemory>
  {memtune}
  <vcpu>{vcpus}</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
  <devices>
    <disk type='file' device='disk'>
      <source file='/guest/vm{i}.img'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <memballoon model='virtio'><stats period='2'/></memballoon>
  </devices>
  {state}
</domain>"""


def node_file(path: Path, count: int, **kwargs: object) -> str:
    """Write a test-driver node description with ``count`` running domains vm0..; return its URI."""
    domains = "\n".join(domain_xml(i, **kwargs) for i in range(count))  # type: ignore[arg-type]
    path.write_text(f"""<node>
  <cpu><nodes>1</nodes><sockets>1</sockets><cores>4</cores><threads>1</threads><active>4</active><mhz>2000</mhz></cpu>
  <memory>67108864</memory>
{domains}
</node>
""")
    return f"test://{path.resolve()}"
