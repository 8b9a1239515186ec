"""Simulator scenarios: a TOML file describing a host, its guests and their workloads.

Format (sizes in MiB, times in simulated seconds from the start; every key but
the guests' ``name`` and ``max`` and the workload's own parameters is optional)::

    name = "small"          # for logs
    seed = 7                # default seed when the caller gives none
    step = 1.0              # model step (s)

    [host]
    memory = 8192           # RAM (MiB)
    swap = 2048             # swap (MiB)
    cpus = 8
    base_used = 512         # memory the host itself uses (kernel, daemons, qemu overhead)
    cache = 192             # host page cache when memory allows

    [ksm]                   # initial /sys/kernel/mm/ksm tunables
    run = 0
    pages_to_scan = 100
    sleep_millisecs = 20
    merge_across_nodes = 1

    [[guest]]
    name = "web1"
    max = 2048              # balloon_max (MiB)
    balloon = 2048          # initial balloon size; default max
    min = 512               # balloon_min, the minimum guarantee; default 0
    vcpus = 2
    swap = 1024             # the guest's own swap
    cache_fraction = 0.2    # share of the guest's free memory the page cache fills
    shareable = 0.3         # share of its touched memory KSM can merge
    start = 0               # when it appears; default 0
    stop = 900              # when it shuts down; default never
    uuid = "..."            # default derived from the name
    vcpu_quota = -1
    vcpu_period = 100000
    vcpu_user_limit = 100
    workload = { type = "daily", mean = 900, amplitude = 500, period = 600, noise = 20 }
    working_set = 0.7       # share of the workload's memory it touches all the time
    image = "rhel9"         # guests of one image hold identical pages (KSM); default "default"
    shares = 1000           # its weight for policies that share memory out
    free_page_reporting = false   # virtio-balloon free page reporting
    balloon_driver = true   # false: no driver (targets ignored, no statistics)
    balloon_speed = 1.0     # factor on the driver's rates (0.05: a slow guest)
    balloon_stuck_at = 600  # the driver stops following targets from then on
    stats = true            # false: the guest never reports statistics
    stats_period = 5        # seconds between statistics updates; 0 = every step
    stats_stop = 900        # the guest stops answering then: its statistics go stale
    io_guaranteed = { total_bytes_sec = 0, ... }   # the disk's policy limits
    io_maximum = { total_bytes_sec = 0, ... }

    [guest.virtio_mem]      # a virtio-mem device for the guest above (none by default)
    max = "4G"              # its region: the most it can plug (MiB, or a string "512M", "4G")
    block = "2M"            # block size, a power of two (default 2M)
    requested = "1G"        # requested size at boot, a multiple of block (default 0)

    [[process]]             # a host-side process (anonymous memory on the host)
    name = "backup"
    workload = { type = "steps", steps = [[0, 0], [600, 2048], [900, 0]] }
    start = 0
    stop = 1200

Workload types and parameters are listed in :mod:`mom.sim.workloads`.
"""

from __future__ import annotations

import math
import os
import tomllib
import uuid as uuidlib
from dataclasses import dataclass, field
from typing import Any

from mom.core.disks import IO_KEYS
from mom.core.errors import MomError
from mom.sim.workloads import WorkloadSpec, check_workload, read_trace

_UUID_NS = uuidlib.UUID("5c0e7a1e-3b1d-4d38-9a55-6d6f6d73696d")


class ScenarioError(MomError, ValueError):
    """A scenario file is unreadable or invalid (the message says where)."""


@dataclass(frozen=True)
class HostSpec:
    memory_mib: int = 8192
    swap_mib: int = 2048
    cpus: int = 8
    base_used_mib: int = 512
    cache_mib: int = 192


@dataclass(frozen=True)
class KsmSpec:
    run: int = 0
    pages_to_scan: int = 100
    sleep_millisecs: int = 20
    merge_across_nodes: int = 1


@dataclass(frozen=True)
class VirtioMemSpec:
    """A guest's virtio-mem device (KiB): its region, block size and the size
    requested at boot (the guest plugs that much while booting)."""

    max_kib: int
    block_kib: int = 2048
    requested_kib: int = 0


@dataclass(frozen=True)
class GuestSpec:
    name: str
    max_mib: int
    workload: WorkloadSpec
    balloon_mib: int | None = None
    min_mib: int = 0
    vcpus: int = 2
    swap_mib: int = 1024
    cache_fraction: float = 0.2
    shareable: float = 0.3
    start: float = 0.0
    stop: float | None = None
    uuid: str = ""
    vcpu_quota: int = -1
    vcpu_period: int = 100000
    vcpu_user_limit: int = 100
    io_guaranteed: dict[str, int] = field(default_factory=dict)
    io_maximum: dict[str, int] = field(default_factory=dict)
    working_set: float = 0.7
    image: str = "default"
    shares: int = 1000
    free_page_reporting: bool = False
    balloon_driver: bool = True
    balloon_speed: float = 1.0
    balloon_stuck_at: float | None = None
    stats: bool = True
    stats_period: float = 0.0
    stats_stop: float | None = None
    virtio_mem: VirtioMemSpec | None = None


@dataclass(frozen=True)
class ProcessSpec:
    """A host-side process: anonymous memory the host itself must hold."""

    name: str
    workload: WorkloadSpec
    start: float = 0.0
    stop: float | None = None


@dataclass(frozen=True)
class Scenario:
    name: str
    host: HostSpec
    ksm: KsmSpec
    guests: tuple[GuestSpec, ...]
    seed: int = 0
    step: float = 1.0
    processes: tuple[ProcessSpec, ...] = ()


def _num(where: str, value: Any, *, integer: bool = False, lo: float | None = 0, hi: float | None = None) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        raise ScenarioError(f"{where}: expected {'an integer' if integer else 'a number'}, got {value!r}")
    if lo is not None and value < lo:
        raise ScenarioError(f"{where}: must be >= {lo}, got {value}")
    if hi is not None and value > hi:
        raise ScenarioError(f"{where}: must be <= {hi}, got {value}")
    return value


def _check_keys(where: str, table: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ScenarioError(f"{where}: unknown key(s) {', '.join(unknown)}")


def _table(where: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ScenarioError(f"{where}: expected a table")
    return value


def _io(where: str, value: Any) -> dict[str, int]:
    table = _table(where, value)
    _check_keys(where, table, set(IO_KEYS))
    return {k: _num(f"{where}.{k}", v, integer=True) for k, v in table.items()}


_GUEST_BOOLS = ("free_page_reporting", "balloon_driver", "stats")
_GUEST_TIMES = ("start", "stop", "balloon_stuck_at", "stats_period", "stats_stop")


_SIZE_UNITS = {"K": 1, "M": 1024, "G": 1024**2, "T": 1024**3}


def _size_kib(where: str, value: Any) -> int:
    """A size in KiB: an integer is MiB (as elsewhere in a scenario), a string
    has a unit ("2M", "4G", "512K"; "MiB" and "MB" mean the same)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return int(_num(where, value, integer=True)) * 1024
    if isinstance(value, str):
        text = value.strip().upper().removesuffix("B").removesuffix("I")
        unit = _SIZE_UNITS.get(text[-1:]) if text else None
        number = text[:-1] if unit is not None else text
        try:
            amount = float(number) * (unit or 1024)  # no unit: MiB
        except ValueError:
            amount = math.nan
        if amount >= 0 and float(amount).is_integer():
            return int(amount)
    raise ScenarioError(f"{where}: expected a size (MiB, or a string such as \"2M\" or \"4G\"), got {value!r}")


def _virtio_mem(where: str, raw: Any) -> VirtioMemSpec:
    table = _table(where, raw)
    _check_keys(where, table, {"max", "block", "requested"})
    if "max" not in table:
        raise ScenarioError(f"{where}: missing max")
    maximum = _size_kib(f"{where}.max", table["max"])
    block = _size_kib(f"{where}.block", table.get("block", "2M"))
    requested = _size_kib(f"{where}.requested", table.get("requested", 0))
    if block < 4 or block & (block - 1):
        raise ScenarioError(f"{where}.block: must be a power of two of at least 4K, got {block} KiB")
    if maximum <= 0 or maximum % block:
        raise ScenarioError(f"{where}.max: must be a positive multiple of block ({block} KiB), got {maximum} KiB")
    if requested % block or requested > maximum:
        raise ScenarioError(f"{where}.requested: must be a multiple of block ({block} KiB) "
                            f"and at most max, got {requested} KiB")
    return VirtioMemSpec(max_kib=maximum, block_kib=block, requested_kib=requested)


def _workload(where: str, raw: Any, base_dir: str) -> WorkloadSpec:
    wl = dict(_table(where, raw))
    wtype = wl.pop("type", None)
    if not isinstance(wtype, str):
        raise ScenarioError(f"{where}: missing type")
    if "points" in wl:
        raise ScenarioError(f"{where}: unknown parameter(s) points")
    if wtype == "trace":
        if not isinstance(wl.get("file"), str):
            raise ScenarioError(f"{where}: workload trace needs file (a time,MiB CSV)")
        path = os.path.join(base_dir, wl["file"])
        try:
            wl["points"] = read_trace(path)
        except OSError as e:
            raise ScenarioError(f"{where}: cannot read trace {path}: {e.strerror}") from None
        except ValueError as e:
            raise ScenarioError(f"{where}: {e}") from None
    spec = WorkloadSpec(wtype, wl)
    try:
        check_workload(spec)
    except ValueError as e:
        raise ScenarioError(f"{where}: {e}") from None
    return spec


def _guest(where: str, raw: Any, default_seed_name: str, base_dir: str = ".") -> GuestSpec:
    g = _table(where, raw)
    ints = {"max": "max_mib", "balloon": "balloon_mib", "min": "min_mib", "vcpus": "vcpus",
            "swap": "swap_mib", "vcpu_period": "vcpu_period", "vcpu_user_limit": "vcpu_user_limit",
            "shares": "shares"}
    _check_keys(where, g, set(ints) | {"name", "workload", "cache_fraction", "shareable", "uuid", "vcpu_quota",
                                       "io_guaranteed", "io_maximum", "working_set", "image", "balloon_speed",
                                       "virtio_mem"}
                | set(_GUEST_BOOLS) | set(_GUEST_TIMES))
    for key in ("name", "max", "workload"):
        if key not in g:
            raise ScenarioError(f"{where}: missing {key}")
    name = g["name"]
    if not isinstance(name, str) or not name or "/" in name:
        raise ScenarioError(f"{where}.name: expected a non-empty name without '/'")
    kw: dict[str, Any] = {ints[k]: _num(f"{where}.{k}", g[k], integer=True) for k in ints if k in g}
    if kw["max_mib"] <= 0:
        raise ScenarioError(f"{where}.max: must be positive")
    for key in ("balloon_mib", "min_mib"):
        if kw.get(key, 0) > kw["max_mib"]:
            raise ScenarioError(f"{where}: {key[:-4]} exceeds max")
    for key in ("cache_fraction", "shareable", "working_set"):
        if key in g:
            kw[key] = float(_num(f"{where}.{key}", g[key], hi=1))
    if "balloon_speed" in g:
        kw["balloon_speed"] = float(_num(f"{where}.balloon_speed", g["balloon_speed"]))
    for key in _GUEST_TIMES:
        if key in g:
            kw[key] = float(_num(f"{where}.{key}", g[key]))
    for key in _GUEST_BOOLS:
        if key in g:
            if not isinstance(g[key], bool):
                raise ScenarioError(f"{where}.{key}: expected true or false, got {g[key]!r}")
            kw[key] = g[key]
    if "image" in g:
        if not isinstance(g["image"], str) or not g["image"]:
            raise ScenarioError(f"{where}.image: expected a non-empty name")
        kw["image"] = g["image"]
    if kw.get("stop") is not None and kw["stop"] <= kw.get("start", 0.0):
        raise ScenarioError(f"{where}: stop must come after start")
    if "vcpu_quota" in g:
        kw["vcpu_quota"] = _num(f"{where}.vcpu_quota", g["vcpu_quota"], integer=True, lo=-1)
    for key in ("io_guaranteed", "io_maximum"):
        if key in g:
            kw[key] = _io(f"{where}.{key}", g[key])
    if "virtio_mem" in g:
        kw["virtio_mem"] = _virtio_mem(f"{where}.virtio_mem", g["virtio_mem"])
    spec = _workload(f"{where}.workload", g["workload"], base_dir)
    if "uuid" in g:
        try:
            kw["uuid"] = str(uuidlib.UUID(str(g["uuid"])))
        except ValueError:
            raise ScenarioError(f"{where}.uuid: not a UUID: {g['uuid']!r}") from None
    else:
        kw["uuid"] = str(uuidlib.uuid5(_UUID_NS, f"{default_seed_name}/{name}"))
    return GuestSpec(name=name, workload=spec, **kw)


def _process(where: str, raw: Any, base_dir: str) -> ProcessSpec:
    p = _table(where, raw)
    _check_keys(where, p, {"name", "workload", "start", "stop"})
    for key in ("name", "workload"):
        if key not in p:
            raise ScenarioError(f"{where}: missing {key}")
    if not isinstance(p["name"], str) or not p["name"]:
        raise ScenarioError(f"{where}.name: expected a non-empty name")
    times = {k: float(_num(f"{where}.{k}", p[k])) for k in ("start", "stop") if k in p}
    if times.get("stop") is not None and times["stop"] <= times.get("start", 0.0):
        raise ScenarioError(f"{where}: stop must come after start")
    return ProcessSpec(name=p["name"], workload=_workload(f"{where}.workload", p["workload"], base_dir), **times)


def parse_scenario(data: dict[str, Any], source: str = "<scenario>") -> Scenario:
    """Build a Scenario from parsed TOML; raises ScenarioError naming the bad key.
    Trace files are found relative to source's directory."""
    _check_keys(source, data, {"name", "seed", "step", "host", "ksm", "guest", "process"})
    base_dir = os.path.dirname(source) or "."
    name = data.get("name", os.path.splitext(os.path.basename(source))[0])
    if not isinstance(name, str):
        raise ScenarioError(f"{source}: name must be a string")
    host_raw = _table(f"{source}: [host]", data.get("host", {}))
    host_keys = {"memory": "memory_mib", "swap": "swap_mib", "cpus": "cpus",
                 "base_used": "base_used_mib", "cache": "cache_mib"}
    _check_keys(f"{source}: [host]", host_raw, set(host_keys))
    host = HostSpec(**{host_keys[k]: _num(f"{source}: host.{k}", v, integer=True) for k, v in host_raw.items()})
    if host.memory_mib <= 0 or host.cpus <= 0:
        raise ScenarioError(f"{source}: host memory and cpus must be positive")
    ksm_raw = _table(f"{source}: [ksm]", data.get("ksm", {}))
    _check_keys(f"{source}: [ksm]", ksm_raw, {"run", "pages_to_scan", "sleep_millisecs", "merge_across_nodes"})
    ksm = KsmSpec(**{k: _num(f"{source}: ksm.{k}", v, integer=True) for k, v in ksm_raw.items()})
    if ksm.run not in (0, 1, 2) or ksm.merge_across_nodes not in (0, 1):
        raise ScenarioError(f"{source}: ksm.run must be 0, 1 or 2 and merge_across_nodes 0 or 1")
    raw_guests = data.get("guest", [])
    if not isinstance(raw_guests, list):
        raise ScenarioError(f"{source}: guests are [[guest]] tables")
    guests = tuple(_guest(f"{source}: guest[{i}]", g, name, base_dir) for i, g in enumerate(raw_guests))
    raw_procs = data.get("process", [])
    if not isinstance(raw_procs, list):
        raise ScenarioError(f"{source}: host processes are [[process]] tables")
    processes = tuple(_process(f"{source}: process[{i}]", p, base_dir) for i, p in enumerate(raw_procs))
    names = [g.name for g in guests]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ScenarioError(f"{source}: duplicate guest name(s) {', '.join(dup)}")
    seed = _num(f"{source}: seed", data.get("seed", 0), integer=True, lo=None)
    step = float(_num(f"{source}: step", data.get("step", 1.0)))
    if not 0 < step <= 60:
        raise ScenarioError(f"{source}: step must be in (0, 60] seconds")
    return Scenario(name=name, host=host, ksm=ksm, guests=guests, seed=seed, step=step, processes=processes)


def loads_scenario(text: str, source: str = "<scenario>") -> Scenario:
    """Parse scenario TOML text; raises ScenarioError."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"{source}: {e}") from None
    return parse_scenario(data, source)


def load_scenario(path: str | os.PathLike[str]) -> Scenario:
    """Read and parse a scenario file; raises ScenarioError (also when unreadable)."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ScenarioError(f"cannot read scenario {path}: {e.strerror}") from None
    return loads_scenario(raw.decode("utf-8", errors="replace"), os.fspath(path))


# An 8 GiB host with 12 GiB of guests. Demand peaks together around t=300 s of
# every 600 s "day" (host free memory well under 20% without ballooning or KSM)
# and falls back by t=600 s; the guests keep what they touched, so the host
# gets memory back only when a policy balloons their free memory away.
DEFAULT_SCENARIO_TOML = """\
name = "default"
seed = 1
step = 1.0

[host]
memory = 8192
swap = 2048
cpus = 8
base_used = 512
cache = 192

[ksm]
run = 0
pages_to_scan = 100
sleep_millisecs = 20
merge_across_nodes = 1

[[guest]]
name = "web1"
max = 2048
min = 512
vcpus = 2
cache_fraction = 0.15
workload = { type = "daily", mean = 850, amplitude = 550, period = 600, noise = 16 }

[[guest]]
name = "web2"
max = 2048
min = 512
vcpus = 2
cache_fraction = 0.15
workload = { type = "daily", mean = 800, amplitude = 500, period = 600, phase = 0.05, noise = 16 }

[[guest]]
name = "db"
max = 2048
min = 1024
vcpus = 4
cache_fraction = 0.3
workload = { type = "steady", level = 1100, noise = 8 }

[[guest]]
name = "batch"
max = 2048
min = 256
vcpus = 2
workload = { type = "ramp", low = 200, high = 1500, period = 600 }

[[guest]]
name = "dev"
max = 2048
min = 256
vcpus = 1
workload = { type = "burst", base = 300, peak = 1200, rate = 0.004, duration = 40, noise = 8 }

[[guest]]
name = "idle"
max = 2048
min = 256
vcpus = 1
cache_fraction = 0.1
workload = { type = "idle", level = 150 }
"""


def default_scenario() -> Scenario:
    """The built-in overcommitted scenario (8 GiB host, six 2 GiB guests)."""
    return loads_scenario(DEFAULT_SCENARIO_TOML, "<default>")
