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

Every type adds ``noise`` (MiB): a slow random walk around the curve.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any, Callable

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


@dataclass(frozen=True)
class WorkloadSpec:
    """A workload as a scenario describes it: type plus parameters (MiB, s)."""

    type: str
    params: dict[str, Any]


# type -> (factory, required parameters, optional parameters with defaults)
_TYPES: dict[str, tuple[Callable[..., Workload], tuple[str, ...], dict[str, float]]] = {
    "idle": (Steady, (), {"level": -1.0, "noise": 0.0}),
    "steady": (Steady, ("level",), {"noise": 0.0}),
    "ramp": (Ramp, ("low", "high", "period"), {"phase": 0.0, "noise": 0.0}),
    "burst": (Burst, ("base", "peak", "rate", "duration"), {"noise": 0.0}),
    "daily": (Daily, ("mean", "amplitude", "period"), {"phase": 0.0, "noise": 0.0}),
}

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
    for key, value in spec.params.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"workload {spec.type}: {key} must be a number")
        if value < 0 and key != "level":
            raise ValueError(f"workload {spec.type}: {key} must not be negative")
    if spec.params.get("period", 1) == 0:
        raise ValueError(f"workload {spec.type}: period must be positive")


def build_workload(spec: WorkloadSpec, rng: random.Random, max_kib: float) -> Workload:
    """Instantiate a workload for a guest of ``max_kib``; raises ValueError on a bad spec."""
    check_workload(spec)
    factory, _, optional = _TYPES[spec.type]
    params = {**optional, **spec.params}
    noise = params.pop("noise")
    if spec.type == "idle" and params["level"] < 0:
        params["level"] = 0.05 * max_kib / MIB
    return factory(rng, max_kib, noise_mib=noise, **params)
