"""A simulated KVM host: guests with workloads, balloons, swap and KSM, plus
the /proc and /sys tree MOM's host collectors read. See doc/sim-scenarios.md."""

from mom.sim.model import SimGuest, SimModel
from mom.sim.proctree import ProcTree
from mom.sim.scenario import Scenario, ScenarioError, default_scenario, load_scenario, loads_scenario

__all__ = [
    "ProcTree", "Scenario", "ScenarioError", "SimGuest", "SimModel",
    "default_scenario", "load_scenario", "loads_scenario",
]
