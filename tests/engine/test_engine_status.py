"""The engine's public seam: after each step it publishes one immutable status
value, and RPC and metrics work from that value alone (and the daemon's
commands), with no engine behind them."""

from __future__ import annotations

import dataclasses
import threading
import xmlrpc.client
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from mom.core.actions import Action
from mom.core.clock import ManualClock
from mom.core.faults import FaultCounts
from mom.daemon.config import load_config
from mom.engine.engine import Engine, EngineSettings
from mom.engine.status import EngineStatus, GuestStatus
from mom.hypervisors.sim import SimHypervisor
from mom.policy.policy import DEFAULT_POLICY_NAME, PolicySet
from mom.rpc.api import MomApi
from mom.rpc.metrics import Metrics
from mom.sim.scenario import loads_scenario

from .test_engine_hang import SCENARIO, tick  # six idle 1 GiB guests on an 8 GiB host


def make_engine(tmp_path: Path) -> tuple[Engine, SimHypervisor, ManualClock]:
    clock = ManualClock()
    hv = SimHypervisor(loads_scenario(SCENARIO, "s.toml"), clock=clock, tree_dir=str(tmp_path / "tree"))
    settings = EngineSettings.from_config(
        load_config(None), call_timeout=5, host_collectors=("HostMemory",),
        guest_collectors=("GuestMemory", "GuestBalloon"), controllers=("Balloon",),
        proc_root=hv.proc_root, sys_root=hv.sys_root)
    policies = PolicySet()
    policies.set("shrink", '(with Guests g (g.Control "balloon_target" (- g.balloon_cur 10240)))')
    return Engine(settings, hv, policies, clock), hv, clock


def test_each_step_publishes_a_new_value_and_old_ones_stay_as_they_were(tmp_path: Path) -> None:
    threads = set(threading.enumerate())
    engine, hv, clock = make_engine(tmp_path)
    try:
        assert set(threading.enumerate()) - threads == set()  # building an engine starts no thread
        empty = engine.status()
        assert empty.guests == () and empty.last_tick is None and empty.tick_count == 0
        tick(engine, clock)
        first = engine.status()
        assert first is not empty and empty.guests == ()  # the old value did not change
        assert sorted(g.name for g in first.guests) == [f"vm{i}" for i in range(6)]
        assert all(g.ready and g.row is not None for g in first.guests)
        assert first.last_tick is not None and first.tick_count == 1 and first.time == clock.now
        assert len(first.recent_actions) == 6 and first.last_run["policy"] == clock.now
        tick(engine, clock)
        second = engine.status()
        assert second.tick_count == 2 and first.tick_count == 1 and len(first.recent_actions) == 6
        with pytest.raises(dataclasses.FrozenInstanceError):
            second.tick_count = 0  # type: ignore[misc]
        with pytest.raises(TypeError):
            second.host["mem_free"] = 0  # type: ignore[index]
    finally:
        engine.close()
        hv.close()


class FakeControl:
    """The daemon's side of the RPC's commands, recording what it was asked."""

    def __init__(self) -> None:
        self.texts: dict[str, str] = {}
        self.levels: list[int] = []

    def policy_text(self) -> str:
        return "".join(self.texts.values()) or "0"

    def policy_texts(self) -> dict[str, str]:
        return dict(self.texts)

    def policy_names(self) -> list[str]:
        return sorted(self.texts)

    def compiled_policy(self) -> Any:
        return None

    def replace_policies(self, texts: dict[str, str]) -> None:
        self.texts = dict(texts)

    def set_policy(self, name: str, text: str | None) -> None:
        self.texts[name] = text or ""

    def reset_policies(self) -> None:
        pass

    def set_verbosity(self, level: int) -> None:
        self.levels.append(level)


def hand_made_status() -> EngineStatus:
    row = MappingProxyType({"mem_free": 2048, "mem_available": 8192})
    guests = (GuestStatus("web", "u1", 10, True, MappingProxyType({"balloon_cur": 1024})),
              GuestStatus("db", "u2", 11, False, None))
    faults = FaultCounts(MappingProxyType({"controller": 3}), MappingProxyType({"controller": (90.0, "x: y")}),
                         MappingProxyType({"controller": MappingProxyType({"guest db controller Balloon": "y"})}))
    actions = (Action("Balloon", "web", "balloon_target", 1024, 1000, time=80.0),)
    return EngineStatus(time=95.0, host=row, guests=guests, tick_count=4, recent_actions=actions, faults=faults,
                        last_run=MappingProxyType({"discovery": 90.0, "host": 91.0, "guests": 92.0}))


def answer(value: Any) -> Any:
    """A method's value as a client gets it (cached methods return it marshalled)."""
    response = getattr(value, "response", None)
    return value if response is None else xmlrpc.client.loads(response)[0][0]


def test_rpc_and_metrics_read_only_the_status() -> None:
    status = hand_made_status()
    control = FakeControl()
    api = MomApi(lambda: status, control, lambda: 100.0)
    assert answer(api.getStatistics()) == {"host": {"mem_free": 2048, "mem_available": 8192},
                                   "guests": {"web": {"balloon_cur": 1024}}}
    assert answer(api.getActiveGuests()) == ["db", "web"]
    assert api.getRecentActions(5) == [{"time": 80.0, "guest": "web", "controller": "Balloon",
                                        "control": "balloon_target", "old": 1024, "new": 1000}]
    health = api.getHealth()
    assert health["ok"] is False and health["time"] == 100.0 and health["ticks"] == 4
    assert health["components"]["controller"]["active"] == {"guest db controller Balloon": "y"}
    assert health["components"]["collector"]["last_run"] == 92.0
    body = Metrics(lambda: status).exposition().decode()
    assert "mom_guests 2.0" in body and 'mom_errors_total{component="controller"} 3.0' in body
    assert 'mom_guest_balloon_current_bytes{guest="web"} 1.048576e+06' in body


def test_rpc_changes_go_through_the_daemons_commands() -> None:
    control = FakeControl()
    api = MomApi(hand_made_status, control, lambda: 0.0)
    assert api.setVerbosity("debug") is True and control.levels == [10]
    with pytest.raises(xmlrpc.client.Fault, match="verbosity: expected"):
        api.setVerbosity("loud")
    assert control.levels == [10]  # a bad level changes nothing
    assert api.setPolicy("(+ 1 1)") is True and control.policy_texts() == {DEFAULT_POLICY_NAME: "(+ 1 1)"}
