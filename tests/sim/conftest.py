import pytest

from mom.core.clock import ManualClock
from mom.sim.scenario import loads_scenario


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
