"""Guest workloads: how much memory a simulated guest's programs want over time.

A workload is stateful (noise and bursts draw from its own ``random.Random``),
so a guest's demand depends only on the seed and on the sequence of step times.
All sizes are KiB; ``t`` is seconds since the scenario started.

Types (scenario ``type``) and their parameters (sizes in MiB in scenarios):

- idle: ``level`` (default 5% of max).
- steady: ``level``.
- ramp: triangle wave from ``low`` up to ``high`` and back over ``period``
  seconds, starting ``phase`` (0..1) into the cycle.
- burst: ``base`` most of the time; spikes to ``peak`` start at random with
  ``rate`` spikes per second on average and last ``duration`` seconds.
- daily: sinusoid ``mean`` +- ``amplitude`` with ``period`` seconds (a
  compressed day); its minimum is at t=0 shifted by ``phase`` (0..1).
- steps: ``steps`` = [[time, MiB], ...]: the level of the last step whose time
  has come (0 before the first).
- trace: ``file`` = a CSV of ``time,MiB`` rows (a header line is allowed),
  relative to the scenario file; linear between rows, ``scale`` multiplies the
  MiB, ``speed`` compresses time (2 = twice as fast), ``loop`` repeats it.
  The scenario loader reads the file into ``points``.

Every type adds ``noise`` (MiB): a slow random walk around the curve.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MIB = 1024  # KiB per MiB


class Workload:
    """Base: demand(t) = shape(t) + noise, clipped to [0, limit]."""

    def __init__(self, rng: random.Random, limit_kib: float, noise_mib: float = 0.0) -> None:
        self.rng = rng
        self.limit = limit_kib
        self.noise_kib = noise_mib * MIB
        self._walk = 0.0

    def shape(self, t: float, dt: float) -> float:
        raise NotImplementedError

    def demand(self, t: float, dt: float) -> float:
        """Used memory (KiB) the guest wants at time t; call once per model step."""
        if self.noise_kib > 0:
            # Mean-reverting walk: wanders about +-noise without drifting away.
            self._walk = 0.9 * self._walk + self.rng.gauss(0.0, self.noise_kib * 0.45)
        return min(self.limit, max(0.0, self.shape(t, dt) + self._walk))


class Steady(Workload):
    def __init__(self, rng: random.Random, limit_kib: float, level: float, noise_mib: float = 0.0) -> None:
        super().__init__(rng, limit_kib, noise_mib)
        self.level = level * MIB

    def shape(self, t: float, dt: float) -> float:
        return self.level


class Ramp(Workload):
    def __init__(self, rng: random.Random, limit_kib: float, low: float, high: float,
                 period: float, phase: float = 0.0, noise_mib: float = 0.0) -> None:
        super().__init__(rng, limit_kib, noise_mib)
        self.low, self.high = low * MIB, high * MIB
        self.period, self.phase = period, phase

    def shape(self, t: float, dt: float) -> float:
        x = (t / self.period + self.phase) % 1.0
        up = 2 * x if x < 0.5 else 2 * (1 - x)
        return self.low + (self.high - self.low) * up


class Burst(Workload):
    def __init__(self, rng: random.Random, limit_kib: float, base: float, peak: float,
                 rate: float, duration: float, noise_mib: float = 0.0) -> None:
        super().__init__(rng, limit_kib, noise_mib)
        self.base, self.peak = base * MIB, peak * MIB
        self.rate, self.duration = rate, duration
        self._until = -math.inf

    def shape(self, t: float, dt: float) -> float:
        if t >= self._until and self.rng.random() < self.rate * dt:
            self._until = t + self.duration
        return self.peak if t < self._until else self.base


class Daily(Workload):
    def __init__(self, rng: random.Random, limit_kib: float, mean: float, amplitude: float,
                 period: float, phase: float = 0.0, noise_mib: float = 0.0) -> None:
        super().__init__(rng, limit_kib, noise_mib)
        self.mean, self.amplitude = mean * MIB, amplitude * MIB
        self.period, self.phase = period, phase

    def shape(self, t: float, dt: float) -> float:
        return self.mean - self.amplitude * math.cos(2 * math.pi * (t / self.period + self.phase))


class Steps(Workload):
    def __init__(self, rng: random.Random, limit_kib: float, steps: list[list[float]],
                 noise_mib: float = 0.0) -> None:
        super().__init__(rng, limit_kib, noise_mib)
        self.times = [float(t) for t, _ in steps]
        self.levels = [float(v) * MIB for _, v in steps]

    def shape(self, t: float, dt: float) -> float:
        i = bisect.bisect_right(self.times, t)
        return self.levels[i - 1] if i else 0.0


class Trace(Workload):
    """A replayed series of (time, MiB) points, interpolated linearly."""

    def __init__(self, rng: random.Random, limit_kib: float, points: tuple[tuple[float, float], ...],
                 file: str = "", scale: float = 1.0, speed: float = 1.0, loop: bool = False,
                 noise_mib: float = 0.0) -> None:
        super().__init__(rng, limit_kib, noise_mib)
        self.times = [p[0] for p in points]
        self.levels = [p[1] * scale * MIB for p in points]
        self.speed, self.loop = speed, loop

    def shape(self, t: float, dt: float) -> float:
        x = t * self.speed + self.times[0]
        end = self.times[-1]
        if self.loop and end > self.times[0]:
            x = self.times[0] + (x - self.times[0]) % (end - self.times[0])
        i = bisect.bisect_right(self.times, x)
        if i == 0:
            return self.levels[0]
        if i >= len(self.times):
            return self.levels[-1]
        t0, t1 = self.times[i - 1], self.times[i]
        v0, v1 = self.levels[i - 1], self.levels[i]
        return v0 + (v1 - v0) * (x - t0) / (t1 - t0)


def read_trace(path: str) -> tuple[tuple[float, float], ...]:
    """Read a time,MiB CSV (times rising); raises ValueError naming the line, OSError."""
    points: list[tuple[float, float]] = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            cells = [c.strip() for c in line.split(",")]
            try:
                t, mib = float(cells[0]), float(cells[1])
            except (ValueError, IndexError):
                if not points and n == 1:
                    continue  # a header
                raise ValueError(f"{path}:{n}: expected time,MiB") from None
            if mib < 0 or (points and t <= points[-1][0]):
                raise ValueError(f"{path}:{n}: MiB must be >= 0 and times must rise")
            points.append((t, mib))
    if not points:
        raise ValueError(f"{path}: no time,MiB rows")
    return tuple(points)


@dataclass(frozen=True)
class WorkloadSpec:
    """A workload as a scenario describes it: type plus parameters (MiB, s)."""

    type: str
    params: dict[str, Any]


# type -> (factory, required parameters, optional parameters with defaults)
_TYPES: dict[str, tuple[Callable[..., Workload], tuple[str, ...], dict[str, float | str | bool]]] = {
    "idle": (Steady, (), {"level": -1.0, "noise": 0.0}),
    "steady": (Steady, ("level",), {"noise": 0.0}),
    "ramp": (Ramp, ("low", "high", "period"), {"phase": 0.0, "noise": 0.0}),
    "burst": (Burst, ("base", "peak", "rate", "duration"), {"noise": 0.0}),
    "daily": (Daily, ("mean", "amplitude", "period"), {"phase": 0.0, "noise": 0.0}),
    "steps": (Steps, ("steps",), {"noise": 0.0}),
    "trace": (Trace, ("points",), {"file": "", "scale": 1.0, "speed": 1.0, "loop": False, "noise": 0.0}),
}
# Parameters that are not plain numbers, checked by type.
_SPECIAL = {"steps", "points", "file", "loop"}

WORKLOAD_TYPES = tuple(_TYPES)


def check_workload(spec: WorkloadSpec) -> None:
    """Validate a spec; raises ValueError naming the problem."""
    if spec.type not in _TYPES:
        raise ValueError(f"unknown workload type {spec.type!r} (known: {', '.join(WORKLOAD_TYPES)})")
    _, required, optional = _TYPES[spec.type]
    missing = [k for k in required if k not in spec.params]
    if missing:
        raise ValueError(f"workload {spec.type} needs {', '.join(missing)}")
    unknown = sorted(set(spec.params) - set(required) - set(optional))
    if unknown:
        raise ValueError(f"workload {spec.type}: unknown parameter(s) {', '.join(unknown)}")
    _check_special(spec)
    for key, value in spec.params.items():
        if key in _SPECIAL:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"workload {spec.type}: {key} must be a number")
        if value < 0 and key != "level":
            raise ValueError(f"workload {spec.type}: {key} must not be negative")
    if spec.params.get("period", 1) == 0 or spec.params.get("speed", 1) == 0:
        raise ValueError(f"workload {spec.type}: period and speed must be positive")


def _check_special(spec: WorkloadSpec) -> None:
    p = spec.params
    if "steps" in p:
        steps = p["steps"]
        ok = isinstance(steps, (list, tuple)) and len(steps) > 0 and all(
            isinstance(s, (list, tuple)) and len(s) == 2
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) and x >= 0 for x in s) for s in steps)
        if not ok:
            raise ValueError("workload steps: steps must be a list of [time, MiB] pairs (numbers >= 0)")
        times = [s[0] for s in steps]
        if times != sorted(times):
            raise ValueError("workload steps: step times must rise")
    if "file" in p and not isinstance(p["file"], str):
        raise ValueError("workload trace: file must be a path")
    if "loop" in p and not isinstance(p["loop"], bool):
        raise ValueError("workload trace: loop must be true or false")
    if "points" in p and not (isinstance(p["points"], tuple) and p["points"]):
        raise ValueError("workload trace: no points (give file = \"trace.csv\")")


def build_workload(spec: WorkloadSpec, rng: random.Random, max_kib: float) -> Workload:
    """Instantiate a workload for a guest of ``max_kib``; raises ValueError on a bad spec."""
    check_workload(spec)
    factory, _, optional = _TYPES[spec.type]
    params = {**optional, **spec.params}
    noise = params.pop("noise")
    if spec.type == "idle" and params["level"] < 0:
        params["level"] = 0.05 * max_kib / MIB
    return factory(rng, max_kib, noise_mib=noise, **params)
