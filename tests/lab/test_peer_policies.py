"""The peers' algorithms as MOM policies (bench/policies): Proxmox VE's
auto-balloon and Xen squeezed's equal share, evaluated on hand-made statistics."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.conftest import REPO
from mom.policy.policy import PolicySet
from mom.policy.snapshot import EntityData, Snapshot

MIB = 1024
RAM = 8192 * MIB


def load(name: str) -> PolicySet:
    policies = PolicySet()
    policies.set(name, Path(REPO, "bench/policies", f"{name}.policy").read_text())
    return policies


def host(available_mib: float) -> EntityData:
    free = int(available_mib * MIB)
    return EntityData({}, [{"mem_available": RAM, "mem_free": free, "mem_available_kernel": free,
                            "mem_unused": free}])


def guest(name: str, balloon: int, min_mib: int, max_mib: int, unused: int = 512, rss: int | None = None,
          variables: dict | None = None) -> EntityData:
    row = {"balloon_cur": balloon * MIB, "balloon_min": min_mib * MIB, "balloon_max": max_mib * MIB,
           "mem_unused": unused * MIB, "rss": (balloon if rss is None else rss) * MIB // 4}
    return EntityData({"name": name, "uuid": name}, [row], dict(variables or {}))


def targets(policies: PolicySet, snap: Snapshot) -> dict[str, float]:
    d = policies.run(snap)
    assert d.ok, d.error
    return {name: c["balloon_target"] / MIB for name, c in d.guest_controls.items()}


# -- Proxmox --------------------------------------------------------------------------

def test_proxmox_shrinks_by_at_most_100_mib_per_guest_and_skips_guests_without_a_minimum():
    used_90 = 0.1 * RAM / MIB  # host 90% used, target 80%: shrink by ~819 MiB
    snap = Snapshot(host(used_90), [guest("a", 2048, 512, 2048), guest("b", 2048, 512, 2048),
                                    guest("nomin", 2048, 0, 2048)])
    assert targets(load("proxmox"), snap) == {"a": 1948, "b": 1948}


def test_proxmox_leaves_a_goal_within_10_mib_alone():
    near = 0.2 * RAM / MIB - 5  # 5 MiB over the target
    snap = Snapshot(host(near), [guest("a", 1024, 512, 2048), guest("b", 2048, 512, 2048)])
    assert targets(load("proxmox"), snap) == {}
    snap = Snapshot(host(near - 20), [guest("a", 1024, 512, 2048), guest("b", 2048, 512, 2048)])
    assert targets(load("proxmox"), snap) != {}


def test_proxmox_grows_guests_under_pressure_first():
    snap = Snapshot(host(0.5 * RAM / MIB), [guest("pressed", 1024, 512, 2048, unused=50),
                                           guest("comfy", 1024, 512, 2048, unused=600)])
    assert targets(load("proxmox"), snap) == {"pressed": 1124}


def test_proxmox_shrinks_comfortable_guests_first():
    snap = Snapshot(host(0.1 * RAM / MIB), [guest("pressed", 1024, 512, 2048, unused=50),
                                           guest("comfy", 2048, 512, 2048, unused=600)])
    assert targets(load("proxmox"), snap) == {"comfy": 1948}


# -- squeezed ---------------------------------------------------------------------------

def fraction(t: float, lo: int, hi: int) -> float:
    return (t - lo) / (hi - lo)


def test_squeezed_gives_every_guest_the_same_share_of_its_range_within_the_budget():
    snap = Snapshot(host(1024), [guest("small", 2048, 512, 2048), guest("big", 4096, 1024, 4096, rss=3072)])
    t = targets(load("squeezed"), snap)
    assert fraction(t["small"], 512, 2048) == pytest.approx(fraction(t["big"], 1024, 4096))
    reserve = 0.03 * RAM / MIB
    assert t["small"] + t["big"] == pytest.approx(1024 - reserve + 2048 + 3072)


def test_squeezed_frees_before_it_allocates():
    # "low" would grow, "high" must shrink: only the shrink is set this run
    snap = Snapshot(host(256), [guest("low", 1024, 512, 2048), guest("high", 4096, 1024, 4096)])
    t = targets(load("squeezed"), snap)
    assert list(t) == ["high"] and t["high"] < 4096


def test_squeezed_leaves_an_uncooperative_guest_and_shares_out_the_rest():
    policies = load("squeezed")
    variables: dict[str, dict] = {"a": {}, "stuck": {}}
    seen = []
    for _ in range(4):  # "stuck" never moves towards its target
        snap = Snapshot(host(256), [guest("a", 1024, 512, 4096, variables=variables["a"]),
                                    guest("stuck", 4096, 512, 4096, variables=variables["stuck"])])
        d = policies.run(snap)
        assert d.ok, d.error
        variables = {n: d.guest_variables.get(n, {}) for n in variables}
        seen.append({n: c["balloon_target"] / MIB for n, c in d.guest_controls.items()})
    assert "stuck" in seen[0]           # asked to shrink at first
    assert "stuck" not in seen[-1]      # then left where it is
    # the others share what is left without it: here all of it goes to "a"
    assert seen[-1]["a"] == pytest.approx(256 - 0.03 * RAM / MIB + 1024)
