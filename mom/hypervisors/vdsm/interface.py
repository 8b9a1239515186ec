"""VdsmInterface: MOM on oVirt hosts, through vdsm's JSON-RPC API (STOMP on TLS).

Configuration: ``hypervisor-interface: vdsm`` (vdsm's own mom.conf says
``vdsmjsonrpcbulk``; ``vdsmjsonrpc`` and ``vdsmjsonrpcclient`` are accepted too)
and the ``[vdsm]`` section: host, port, pki-dir with key-file, cert-file and
ca-cert-file, request-timeout.

What is asked of vdsm:

- ``Host.getAllVmStats``: every VM at once. Only guests whose status is "Up"
  are managed. The answer is cached briefly (at most 5 s, and at most half the
  shortest monitor interval), so one collection round costs one call whatever
  the number of guests: discovery, the host's KSM collector and the guest
  collection share it. A successful set call makes the next read fresh.
- ``Host.getAllVmIoTunePolicies``: the IO limits and their policy bounds, cached
  for 300 s (fetched again sooner when a new guest is missing from it).
- ``VM.setBalloonTarget``, ``VM.setCpuTuneQuota``, ``VM.setCpuTunePeriod``,
  ``VM.setIoTune`` (params named ``vmID``) and ``Host.setKsmTune``.

Field mapping (vdsm sends many numbers as strings): memoryStats mem_total,
mem_unused, mem_free, majflt, pageflt - majflt, swap_in, swap_out, swap_total,
swap_usage become mem_available, mem_unused, mem_free, major_fault,
minor_fault, swap_in, swap_out, swap_total, swap_usage; memUsage 0 means the
guest agent is not active (no memory section). balloonInfo keeps balloon_cur,
balloon_max, balloon_min as integers; vcpuQuota, vcpuPeriod, vcpuUserLimit,
vcpuCount become vcpu_quota, vcpu_period, vcpu_user_limit, vcpu_count.

Errors: a JSON-RPC ``error`` answer is raised as HypervisorError (GuestGone
for vdsm's "no such VM" on a VM.* call), not logged here: the engine logs each
distinct fault once and says when it clears; the engine and controllers carry
on with the rest of the tick.

The mapping of vdsm's answers is in :mod:`.mapping`; connection handling is in
:mod:`.client`, which logs each
outage once and reconnects in the background. Without a connection every call
raises HypervisorUnavailable with one message for the whole outage ("no
connection to vdsm at HOST:PORT (reconnecting in the background)"), at once:
only the very first call waits for the first connection, briefly (2 s at most,
and at most a quarter of hypervisor-call-timeout, so well within the engine's
call deadline). A call that vdsm does not answer within request-timeout also
raises HypervisorUnavailable: the client drops that connection and reopens it.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from mom.core.disks import entry_ident, find_disk
from mom.core.host_paths import SYS_ROOT
from mom.hypervisors.base import (
    KSM_TUNABLES,
    Capability,
    GuestData,
    GuestGone,
    GuestInfo,
    HypervisorError,
    HypervisorInterface,
    HypervisorUnavailable,
    checked_io_tunes,
)
from mom.hypervisors.settings import VDSM_STATS_MAX_AGE, VdsmSettings
from mom.hypervisors.vdsm.client import VdsmClient
from mom.hypervisors.vdsm.errors import VdsmCallError, VdsmError, VdsmUnavailable
from mom.hypervisors.vdsm.mapping import balloon_section, cpu_tune_section, io_tune_section, memory_section

STATS_MAX_AGE = VDSM_STATS_MAX_AGE
IO_TUNE_MAX_AGE = 300.0
IO_TUNE_RETRY = 30.0  # after a failed fetch, or to pick up a guest the cache lacks
NO_VM_CODE = 1  # vdsm's "Virtual machine does not exist"

class VdsmInterface(HypervisorInterface):
    """The hypervisor interface over vdsm's JSON-RPC API."""

    capabilities = frozenset({Capability.BULK_STATS})  # getAllVmStats is one call for all guests
    settings_type = VdsmSettings

    def __init__(self, client: VdsmClient, *, stats_max_age: float = STATS_MAX_AGE,
                 io_tune_max_age: float = IO_TUNE_MAX_AGE, sys_root: str = SYS_ROOT,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        super().__init__(sys_root=sys_root)
        self.client = client
        self._now = monotonic  # the cache ages (replaceable in tests)
        self.stats_max_age = stats_max_age
        self.io_tune_max_age = io_tune_max_age
        self._stats_lock = threading.Lock()
        self._stats: dict[str, dict[str, Any]] = {}
        self._stats_time: float | None = None
        self._epoch = 0  # connections so far; caches from an earlier one are stale
        self._stats_epoch = -1
        self._changes = 0  # successful set calls; a cache read before one is stale
        self._stats_changes = -1
        self._io_lock = threading.Lock()
        self._io: dict[str, Any] = {}
        self._io_time: float | None = None
        self._io_tried: float | None = None
        self._io_epoch = -1
        self._io_error: HypervisorError | None = None  # why the last policy fetch failed
        client.on_connect = self._connected  # on each (re)connection: the caches are stale

    @classmethod
    def from_settings(cls, settings: VdsmSettings, clock: Any = None) -> VdsmInterface:
        """The daemon's interface. The connection starts with the first call (once
        momd's logging is set up) and is kept up in the background: vdsm may come up
        later. Raises VdsmConfigError (a MomError; its message is the operator's one
        line) when the key, certificate or CA files cannot be used."""
        client = VdsmClient(settings.host, settings.port, settings.key_path, settings.cert_path,
                            settings.ca_cert_path, timeout=settings.request_timeout, first_wait=settings.first_wait)
        return cls(client, stats_max_age=settings.stats_max_age, sys_root=settings.sys_root)

    # -- calls ---------------------------------------------------------------------
    def _call(self, method: str, params: dict[str, Any]) -> Any:
        try:
            return self.client.call(method, params)
        except VdsmUnavailable:
            # The client logged the outage; one message for all of it.
            raise HypervisorUnavailable(self.client.down_message) from None
        except VdsmCallError as e:
            if e.code == NO_VM_CODE and method.startswith("VM."):
                raise GuestGone(f"vdsm: {e.message} ({params.get('vmID')})") from None
            raise HypervisorError(f"vdsm {method}: {e.message} (code {e.code})") from None
        except VdsmError as e:
            raise HypervisorError(str(e)) from None

    def _connected(self) -> None:
        """On each (re)connection, before calls go out on it: vdsm may have
        restarted, so the caches are stale. Takes no lock (a caller may hold one
        while it waits for this connection)."""
        self._epoch += 1

    # -- bulk statistics -----------------------------------------------------------------
    def all_vm_stats(self, max_age: float | None = None) -> dict[str, dict[str, Any]]:
        """{vmId: stats} of every VM vdsm knows, from a cache at most max_age old."""
        max_age = self.stats_max_age if max_age is None else max_age
        with self._stats_lock:
            now = self._now()
            if self._stats_time is not None and now - self._stats_time <= max_age \
                    and self._stats_epoch == self._epoch and self._stats_changes == self._changes:
                return self._stats
            changes = self._changes
            result = self._call("Host.getAllVmStats", {})
            epoch = self._epoch  # after the call: the first call is what opens the connection
            if not isinstance(result, list):
                raise HypervisorError(f"vdsm Host.getAllVmStats: expected a list, got {type(result).__name__}")
            self._stats = {str(vm["vmId"]): vm for vm in result if isinstance(vm, dict) and vm.get("vmId")}
            self._stats_time = self._now()
            self._stats_epoch = epoch
            self._stats_changes = changes
            return self._stats

    def _io_policies(self, wanted: Iterable[str]) -> dict[str, Any]:
        with self._io_lock:
            now = self._now()
            if self._io_epoch != self._epoch:  # a new connection: vdsm may have restarted
                self._io_time = self._io_tried = None
            fresh = self._io_time is not None and now - self._io_time <= self.io_tune_max_age
            missing = any(uuid not in self._io for uuid in wanted)
            may_retry = self._io_tried is None or now - self._io_tried >= IO_TUNE_RETRY
            if (not fresh or missing) and may_retry:
                self._io_tried = now
                try:
                    result = self._call("Host.getAllVmIoTunePolicies", {})
                    if not isinstance(result, dict):
                        raise HypervisorError("vdsm Host.getAllVmIoTunePolicies: expected a map, "
                                              f"got {type(result).__name__}")
                except HypervisorError as e:
                    self._io_error = e
                    raise
                finally:
                    # After the call, which may have opened the connection (a new
                    # epoch); a failure counts for this connection too.
                    self._io_epoch = self._epoch
                self._io = result
                self._io_time = now
                self._io_error = None
            elif not fresh and self._io_time is None:
                # Until the retry, the same error as the failure: one fault, not two.
                error = self._io_error
                if error is None:
                    raise HypervisorError("vdsm Host.getAllVmIoTunePolicies failed; retrying later")
                raise type(error)(str(error))
            return self._io

    # -- HypervisorInterface ------------------------------------------------------------
    def list_guests(self) -> list[GuestInfo]:
        out = []
        for uuid, vm in self.all_vm_stats().items():
            if vm.get("status") != "Up":
                continue
            try:
                pid: int | None = int(vm["pid"]) or None
            except (KeyError, TypeError, ValueError):
                pid = None
            out.append(GuestInfo(uuid=uuid, name=str(vm.get("vmName") or uuid), pid=pid))
        return out

    def refresh(self) -> None:
        """Start a collection round: fetch the bulk statistics unless the cache is fresh."""
        self.all_vm_stats()

    def collect_all(self, guests: Iterable[GuestInfo], sections: Iterable[str]) -> dict[str, GuestData]:
        guests = list(guests)
        wanted = set(sections)
        stats = self.all_vm_stats()
        up = [g for g in guests if stats.get(g.uuid, {}).get("status") == "Up"]
        io: dict[str, Any] | None = None
        io_error: str | None = None
        if "io_tune" in wanted and up:
            try:
                io = self._io_policies(g.uuid for g in up)
            except HypervisorError as e:
                io_error = str(e)
        result: dict[str, GuestData] = {}
        for g in up:
            vm = stats[g.uuid]
            data = GuestData()
            for section, build in (("memory", memory_section), ("balloon", balloon_section),
                                   ("cpu_tune", cpu_tune_section)):
                if section in wanted:
                    try:
                        setattr(data, section, build(vm))
                    except ValueError as e:
                        data.errors[section] = str(e)
            if "io_tune" in wanted:
                if io_error is not None:
                    data.errors["io_tune"] = io_error
                elif io is not None:
                    try:
                        data.io_tune = io_tune_section(io.get(g.uuid))
                    except (AttributeError, TypeError) as e:
                        data.errors["io_tune"] = f"malformed IO tune policy: {e}"
            result[g.uuid] = data
        return result

    # -- control -----------------------------------------------------------------------
    def _changed(self) -> None:
        """A set call succeeded: the next statistics must be read afresh."""
        self._changes += 1

    def set_balloon_target(self, guest: GuestInfo, target_kib: int) -> None:
        self._call("VM.setBalloonTarget", {"vmID": guest.uuid, "target": int(target_kib)})
        self._changed()

    def set_cpu_tune(self, guest: GuestInfo, quota: int | None = None, period: int | None = None) -> None:
        if quota is not None:
            self._call("VM.setCpuTuneQuota", {"vmID": guest.uuid, "quota": int(quota)})
            self._changed()
        if period is not None:
            self._call("VM.setCpuTunePeriod", {"vmID": guest.uuid, "period": int(period)})
            self._changed()

    def set_io_tune(self, guest: GuestInfo, tunes: list[dict[str, Any]]) -> None:
        """Send the disks' new limits as vdsm's tunables [{name, path, ioTune}].

        Each limit is a whole number >= 0 (0: no limit) or None (left out): the
        one rule of mom.core.disks; anything else raises HypervisorError before
        vdsm is asked."""
        tunables = [{"name": t.name, "path": t.path, "ioTune": dict(t.limits)}
                    for t in checked_io_tunes(guest, tunes)]
        self._call("VM.setIoTune", {"vmID": guest.uuid, "tunables": tunables})
        self._note_io_tune(guest.uuid, tunables)

    def _note_io_tune(self, uuid: str, tunables: list[dict[str, Any]]) -> None:
        """Keep the cached current limits in step with what vdsm accepted, so the
        next tick does not send the same limits again."""
        with self._io_lock:
            entry = self._io.get(uuid)
            if not isinstance(entry, dict):
                return
            entry = copy.deepcopy(entry)
            states = [s for s in entry.get("current_values") or [] if isinstance(s, dict)]
            for tune in tunables:
                state = find_disk(states, tune["name"], tune["path"], entry_ident)
                if state is not None:
                    state.setdefault("ioTune", {}).update(tune["ioTune"])
            self._io = {**self._io, uuid: entry}

    def set_ksm_tune(self, params: Mapping[str, int]) -> None:
        """KSM goes through vdsm (Host.setKsmTune), which writes sysfs as root."""
        for key in params:
            if key not in KSM_TUNABLES:
                raise HypervisorError(f"unknown KSM tunable {key}")
        self._call("Host.setKsmTune", {"tuningParams": {k: int(v) for k, v in params.items()}})

    def close(self) -> None:
        self.client.close()
