"""Controls over libvirt: what the policy's decisions change in a guest.

``setMemory`` (KiB) for balloon targets; a virtio-mem device's requested size
through ``updateDeviceFlags`` with its XML; the scheduler parameters
``vcpu_quota``/``vcpu_period``; ``setBlockIoTune`` per disk (the disk found
and the limits checked by the one rule of :mod:`mom.core.disks`); the QEMU
guest agent through ``qemuAgentCommand`` (used by GuestQemuAgent). KSM is the
base class's (sysfs). Every call is live only (``VIR_DOMAIN_AFFECT_LIVE``):
MOM never changes a domain's persistent definition.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import libvirt

from mom.hypervisors.base import (
    GuestInfo,
    HypervisorError,
    NotSupported,
    check_virtio_mem_size,
    checked_io_tunes,
    disk_for,
)
from mom.hypervisors.libvirt.connection import LibvirtConnection
from mom.hypervisors.libvirt.domains import Domains, XmlCache


def _disk_ident(disk: Any) -> tuple[str, str | None]:
    return disk.dev, disk.path


class Controls:
    """The libvirt interface's set_* calls and the agent command."""

    def __init__(self, connection: LibvirtConnection, domains: Domains, xml: XmlCache) -> None:
        self.connection = connection
        self.domains = domains
        self.xml = xml

    def set_balloon_target(self, guest: GuestInfo, target_kib: int) -> None:
        """The boot memory's balloon target (MOM's balloon_target), passed as it is:
        libvirt 9.0's setMemory (QEMU driver, QEMU 7.2; measured with 256 MiB plugged
        in a 512 MiB virtio-mem region over 512 MiB boot memory) sends the value to
        QEMU's balloon unchanged (query-balloon then says it), although info() reports
        it with the plugged size added, and refuses a value above the boot memory
        ("cannot set memory higher than max memory"): no conversion is needed."""
        conn = self.connection.ensure()
        self.domains.call(conn, guest, f"setMemory({int(target_kib)})", lambda d: d.setMemory(int(target_kib)))

    def set_cpu_tune(self, guest: GuestInfo, quota: int | None = None, period: int | None = None) -> None:
        params = {}
        if quota is not None:
            params["vcpu_quota"] = int(quota)
        if period is not None:
            params["vcpu_period"] = int(period)
        if not params:
            return
        conn = self.connection.ensure()
        self.domains.call(conn, guest, f"setSchedulerParameters({params})",
                          lambda d: d.setSchedulerParametersFlags(params, libvirt.VIR_DOMAIN_AFFECT_LIVE))

    def set_io_tune(self, guest: GuestInfo, tunes: list[dict[str, Any]]) -> None:
        """Apply each tune's ``current`` (or ``ioTune``) limits to the disk with that
        path, else that target name. Raises HypervisorError for an unknown disk or
        a bad value (checked for all tunes before any is applied)."""
        conn = self.connection.ensure()
        xml = self.xml.get(conn, guest)
        checked = checked_io_tunes(guest, tunes)
        plan = [(disk_for(guest, tune, xml.disks, _disk_ident), tune.limits) for tune in checked]
        for disk, values in plan:
            if not values:
                continue  # every limit left as it is (None): libvirt refuses an empty call
            def apply(d: Any, disk: Any = disk, values: Mapping[str, int] = values) -> None:
                _set_block_io_tune(d, disk.dev, {k: int(v) for k, v in values.items()})
            self.domains.call(conn, guest, f"setBlockIoTune {disk.dev}", apply)

    def set_virtio_mem_requested(self, guest: GuestInfo, size_kib: int) -> None:
        """Ask the guest's virtio-mem device for ``size_kib`` plugged: its live XML sent
        back with that ``<requested>`` (updateDeviceFlags, libvirt >= 7.9). A size that
        is not a multiple of the block or lies outside [0, the region] is refused
        with one line, as QEMU would (the VirtioMem controller rounds and clamps).
        NotSupported without a device, or when the driver cannot update one."""
        conn = self.connection.ensure()
        device = self.xml.get(conn, guest, fresh=True).virtio_mem  # the element as it is now
        if device is None:
            raise NotSupported(f"guest {guest.name}: no virtio-mem device")
        size = int(size_kib)
        check_virtio_mem_size(guest.name, size, device.block, device.size)
        update = device.with_requested(size)
        try:
            self.domains.call(conn, guest, f"virtio-mem requested size {size} KiB",
                              lambda d: d.updateDeviceFlags(update, libvirt.VIR_DOMAIN_AFFECT_LIVE))
        finally:
            with self.connection.lock:
                self.xml.drop(guest.uuid)  # the live XML's <requested> changed (or may have)

    def qemu_agent_command(self, guest: GuestInfo, command: str | dict[str, Any], timeout: int = 10) -> Any:
        """Run a QEMU guest agent command through libvirt and return its decoded
        ``return`` value. Raises HypervisorError (NotSupported when the driver
        has no agent command), with the agent's error class and description."""
        import libvirt_qemu

        text = command if isinstance(command, str) else json.dumps(command)
        conn = self.connection.ensure()
        reply = self.domains.call(conn, guest, "qemuAgentCommand",
                                  lambda d: libvirt_qemu.qemuAgentCommand(d, text, int(timeout), 0))
        try:
            obj = json.loads(reply)
        except (TypeError, ValueError):
            raise HypervisorError(f"guest {guest.name}: agent reply is not JSON: {str(reply)[:80]!r}") from None
        if "error" in obj:
            err = obj["error"]
            raise HypervisorError(f"guest {guest.name}: agent error {err.get('class', '?')}: {err.get('desc', '')}")
        return obj.get("return")


def _set_block_io_tune(dom: Any, dev: str, params: dict[str, int]) -> None:
    try:
        dom.setBlockIoTune(dev, params, libvirt.VIR_DOMAIN_AFFECT_LIVE)
    except libvirt.libvirtError as e:
        # Some drivers (libvirt's test driver) take an unset burst maximum (0) as a
        # limit of 0 and refuse any rate above it: raise those maxima to the rate.
        if e.get_error_code() != libvirt.VIR_ERR_INVALID_ARG or "_max" not in str(e):
            raise
        present = dom.blockIoTune(dev, 0)
        for key, value in list(params.items()):
            if value and present.get(f"{key}_max", 0) < value:
                params[f"{key}_max"] = value
        dom.setBlockIoTune(dev, params, libvirt.VIR_DOMAIN_AFFECT_LIVE)
