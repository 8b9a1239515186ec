"""From vdsm's answers to MOM's GuestData sections (no calls here).

vdsm sends many numbers as strings. memoryStats mem_total, mem_unused,
mem_free, majflt, pageflt - majflt, swap_in, swap_out, swap_total, swap_usage
become mem_available, mem_unused, mem_free, major_fault, minor_fault, swap_in,
swap_out, swap_total, swap_usage; memUsage 0 means the guest agent is not
active (no memory section). balloonInfo keeps balloon_cur, balloon_max,
balloon_min as integers; vcpuQuota, vcpuPeriod, vcpuUserLimit, vcpuCount
become vcpu_quota, vcpu_period, vcpu_user_limit, vcpu_count. IO tune policies
meet their device's current limits by the one disk rule of mom.core.disks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mom.core.disks import entry_ident, find_disk

MEMORY_MAP = (
    ("mem_available", "mem_total"), ("mem_unused", "mem_unused"), ("mem_free", "mem_free"),
    ("major_fault", "majflt"), ("swap_in", "swap_in"), ("swap_out", "swap_out"),
)
BALLOON_KEYS = ("balloon_cur", "balloon_max", "balloon_min")


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{what} is not a number: {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError):
        try:
            return int(float(value))
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"{what} is not a number: {value!r}") from None


def memory_section(vm: Mapping[str, Any]) -> dict[str, Any]:
    """GuestData.memory from one getAllVmStats entry. Raises ValueError with the reason."""
    if _int(vm.get("memUsage", 0), "memUsage") == 0:
        raise ValueError("the guest agent is not active (memUsage 0)")
    stats = vm.get("memoryStats")
    if not stats or not isinstance(stats, Mapping):
        raise ValueError("vdsm has no detailed memory statistics for this guest")
    try:
        out = {ours: _int(stats[theirs], theirs) for ours, theirs in MEMORY_MAP}
        out["minor_fault"] = _int(stats["pageflt"], "pageflt") - out["major_fault"]
    except KeyError as e:
        raise ValueError(f"memoryStats lacks {e.args[0]}") from None
    out["swap_total"] = _int(stats.get("swap_total", 0), "swap_total")
    out["swap_usage"] = _int(stats.get("swap_usage", 0), "swap_usage")
    return out


def balloon_section(vm: Mapping[str, Any]) -> dict[str, Any] | None:
    """GuestData.balloon (KiB) or None when the guest has no balloon. Raises ValueError."""
    info = vm.get("balloonInfo")
    if not info or not isinstance(info, Mapping):
        return None
    return {k: _int(info[k], k) for k in BALLOON_KEYS if k in info} or None


def cpu_tune_section(vm: Mapping[str, Any]) -> dict[str, Any] | None:
    """GuestData.cpu_tune or None when vdsm does not report the vCPU count. Raises ValueError."""
    if vm.get("vcpuCount") is None:
        return None
    return {
        "vcpu_user_limit": _int(vm.get("vcpuUserLimit", 100), "vcpuUserLimit"),
        "vcpu_quota": _int(vm.get("vcpuQuota", 0), "vcpuQuota"),
        "vcpu_period": _int(vm.get("vcpuPeriod", 0), "vcpuPeriod"),
        "vcpu_count": _int(vm["vcpuCount"], "vcpuCount"),
    }


def io_tune_section(entry: Mapping[str, Any] | None) -> list[dict[str, Any]] | None:
    """GuestData.io_tune from one getAllVmIoTunePolicies entry: each policy
    matched with its device's current limits by the one disk rule
    (mom.core.disks.find_disk: path, else name); policies without a device's
    current limits are left out. None when the guest has no policy or no
    current limits."""
    if not entry or not isinstance(entry, Mapping):
        return None
    policies = entry.get("policy") or []
    states = entry.get("current_values") or []
    if not policies or not states:
        return None

    out = []
    for policy in policies:
        state = find_disk(states, policy.get("name"), policy.get("path"), entry_ident)
        if state is None:
            continue
        out.append({
            "name": state.get("name"), "path": state.get("path"),
            "guaranteed": dict(policy.get("guaranteed") or {}),
            "maximum": dict(policy.get("maximum") or {}),
            "current": dict(state.get("ioTune") or {}),
        })
    return out
