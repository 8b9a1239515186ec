"""Helpers for the libvirt tests: test-driver node files with many domains."""

from __future__ import annotations

import uuid as uuidlib
from pathlib import Path

NS = uuidlib.UUID("0d6c2b7e-9f1a-4c55-8e1f-6d6f6d2d6c76")


def domain_uuid(i: int) -> str:
    return str(uuidlib.uuid5(NS, f"vm{i}"))


def virtio_mem_xml(size: str, block: str, requested: str) -> str:
    """A virtio-mem device on NUMA node 0; each size with its unit, e.g. "2 GiB"."""
    def sized(tag: str, value: str) -> str:
        number, unit = value.split()
        return f"<{tag} unit='{unit}'>{number}</{tag}>"
    return (f"<memory model='virtio-mem'><target>{sized('size', size)}<node>0</node>{sized('block', block)}"
            f"{sized('requested', requested)}</target></memory>")


def domain_xml(i: int, *, memory_kib: int = 1048576, current_kib: int | None = None, min_kib: int | None = None,
               vcpu_limit: int | None = None, vcpus: int = 2, running: bool = True,
               free_page_reporting: bool | None = None, virtio_mem_kib: int = 0, virtio_mem: str = "") -> str:
    """virtio_mem: a device's XML (virtio_mem_xml), with virtio_mem_kib its region size;
    the domain then has a NUMA cell of memory_kib and room for the device."""
    memtune = f"<memtune><min_guarantee unit='KiB'>{min_kib}</min_guarantee></memtune>" if min_kib else ""
    fpr = "" if free_page_reporting is None else f" freePageReporting='{'on' if free_page_reporting else 'off'}'"
    numa = max_memory = ""
    if virtio_mem:
        numa = f"<cpu><numa><cell id='0' cpus='0-{vcpus - 1}' memory='{memory_kib}' unit='KiB'/></numa></cpu>"
        max_memory = f"<maxMemory slots='2' unit='KiB'>{memory_kib + virtio_mem_kib}</maxMemory>"
    metadata = ""
    if vcpu_limit is not None:
        metadata = ("<metadata><ovirt-tune:qos xmlns:ovirt-tune='http://ovirt.org/vm/tune/1.0'>"
                    f"<ovirt-tune:vcpuLimit>{vcpu_limit}</ovirt-tune:vcpuLimit></ovirt-tune:qos></metadata>")
    state = "" if running else "<state>shutoff</state>"  # unused by the test driver's parser
    return f"""<domain type='test'>
  <name>vm{i}</name>
  <uuid>{domain_uuid(i)}</uuid>
  {metadata}
  {max_memory}
  <memory unit='KiB'>{memory_kib + (virtio_mem_kib if virtio_mem else 0)}</memory>
  <currentMemory unit='KiB'>{current_kib or memory_kib}</currentMemory>
  {memtune}
  <vcpu>{vcpus}</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
  {numa}
  <devices>
    <disk type='file' device='disk'>
      <source file='/guest/vm{i}.img'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <memballoon model='virtio'{fpr}><stats period='2'/></memballoon>
    {virtio_mem}
  </devices>
  {state}
</domain>"""


def node_file(path: Path, count: int, *, each: dict[int, dict[str, object]] | None = None, **kwargs: object) -> str:
    """Write a test-driver node description with ``count`` running domains vm0..; return its URI.
    kwargs go to every domain_xml, each[i] to vm{i}'s only."""
    each = each or {}
    domains = "\n".join(domain_xml(i, **{**kwargs, **each.get(i, {})}) for i in range(count))  # type: ignore[arg-type]
    path.write_text(f"""<node>
  <cpu><nodes>1</nodes><sockets>1</sockets><cores>4</cores><threads>1</threads><active>4</active><mhz>2000</mhz></cpu>
  <memory>67108864</memory>
{domains}
</node>
""")
    return f"test://{path.resolve()}"


# --- fault injection -----------------------------------------------------------------------------

def lv_error(code: int, message: str = "injected", domain: int | None = None):  # type: ignore[no-untyped-def]
    """A libvirtError with the given code (and error domain)."""
    import libvirt

    class InjectedError(libvirt.libvirtError):
        def __init__(self) -> None:
            Exception.__init__(self, message)
            self.err = (code, domain if domain is not None else libvirt.VIR_FROM_NONE, message, 2,
                        None, None, None, 0, 0)
    return InjectedError()


class FaultyDomain:
    """A virDomain whose methods named in ``faults`` raise and whose methods named in
    ``overrides`` are replaced (both on its FaultyConnection)."""

    def __init__(self, dom, owner) -> None:  # type: ignore[no-untyped-def]
        self._dom, self._owner = dom, owner

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        attr = getattr(self._dom, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):  # type: ignore[no-untyped-def]
            uuid = self._dom.UUIDString()
            self._owner.check(name, uuid)
            return self._owner.overrides.get((name, uuid), attr)(*args, **kwargs)
        return call


class FaultyConnection:
    """A libvirt connection that can be told to fail.

    - ``dead = True``: every call raises a system error and isAlive() is False
      (libvirtd went away).
    - ``faults[(method, uuid or None)] = error``: that domain method (or
      connection method, uuid None) raises ``error``.
    - ``no_bulk = True``: getAllDomainStats is not supported.
    - ``overrides[(method, uuid)] = fn``: that domain method is fn (what a driver
      other than the test driver would do, e.g. QEMU's scheduler parameters).
    """

    def __init__(self, conn) -> None:  # type: ignore[no-untyped-def]
        self._conn = conn
        self.dead = False
        self.no_bulk = False
        self.faults: dict = {}
        self.overrides: dict = {}
        self.calls: list[str] = []

    def check(self, name: str, uuid: str | None) -> None:
        import libvirt

        self.calls.append(name)
        if self.dead and name not in ("close", "isAlive", "UUIDString", "name", "ID"):
            raise lv_error(libvirt.VIR_ERR_SYSTEM_ERROR, "Cannot write data: Broken pipe", libvirt.VIR_FROM_RPC)
        if name == "getAllDomainStats" and self.no_bulk:
            raise lv_error(libvirt.VIR_ERR_NO_SUPPORT, "this function is not supported")
        err = self.faults.get((name, uuid))
        if err is not None:
            raise err

    def isAlive(self) -> int:
        return 0 if self.dead else 1

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        import libvirt

        attr = getattr(self._conn, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):  # type: ignore[no-untyped-def]
            self.check(name, None)
            value = attr(*args, **kwargs)
            if isinstance(value, libvirt.virDomain):
                return FaultyDomain(value, self)
            if isinstance(value, list) and value and isinstance(value[0], libvirt.virDomain):
                return [FaultyDomain(d, self) for d in value]
            if isinstance(value, list) and value and isinstance(value[0], tuple):
                return [(FaultyDomain(d, self), s) for d, s in value]
            return value
        return call


class FaultyOpener:
    """An opener (LibvirtHypervisor's ``opener``) of FaultyConnections; ``conn`` is the latest."""

    def __init__(self) -> None:
        self.opened: list[FaultyConnection] = []

    def __call__(self, uri):  # type: ignore[no-untyped-def]
        import libvirt

        self.opened.append(FaultyConnection(libvirt.open(uri)))
        return self.opened[-1]

    @property
    def conn(self) -> FaultyConnection:
        return self.opened[-1]


def new_domain_xml(name: str, uuid: str, memory_kib: int = 524288) -> str:
    return f"""<domain type='test'><name>{name}</name><uuid>{uuid}</uuid>
  <memory unit='KiB'>{memory_kib}</memory><currentMemory unit='KiB'>{memory_kib}</currentMemory>
  <vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os>
  <devices><memballoon model='virtio'/></devices></domain>"""
