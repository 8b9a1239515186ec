import pytest

from mom.daemon.clock import Clock
from mom.sim.scenario import loads_scenario


class ManualClock(Clock):
    """A clock the test moves by hand."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return ManualClock()


SMALL = """
name = "small"
seed = 3
[host]
memory = 4096
swap = 1024
cpus = 4
base_used = 256
cache = 128
[[guest]]
name = "a"
max = 2048
min = 512
workload = { type = "steady", level = 1500 }
[[guest]]
name = "b"
max = 1024
workload = { type = "idle" }
"""


@pytest.fixture
def small():
    return loads_scenario(SMALL, "small.toml")
