"""Each modelling rule of the simulator (doc/sim-model.md) on a small case."""

from __future__ import annotations

import itertools

import pytest

from mom.hypervisors.base import GuestInfo, HypervisorError
from mom.hypervisors.sim import SimHypervisor
from mom.sim.model import SimModel
from mom.sim.scenario import ScenarioError, loads_scenario

MIB = 1024


def scenario(guests: str, host: str = "memory = 8192\nswap = 2048", extra: str = "") -> str:
    return f"name = \"rules\"\nseed = 5\n[host]\n{host}\nbase_used = 256\ncache = 64\n{extra}\n{guests}"


def guest(name: str, workload: str, **keys: object) -> str:
    lines = [f'[[guest]]\nname = "{name}"', f"workload = {workload}"]
    keys.setdefault("max", 2048)
    for k, v in keys.items():
        lines.append(f"{k} = " + (f'"{v}"' if isinstance(v, str) else str(v).lower()))
    return "\n".join(lines) + "\n"


def model(text: str, **kw: object) -> SimModel:
    return SimModel(loads_scenario(text), **kw)


# -- guest memory and the host footprint ---------------------------------------------------------
STEP_DOWN = '{ type = "steps", steps = [[0, 1500], [30, 300]] }'


@pytest.mark.parametrize("reporting", [False, True])
def test_freed_memory_stays_with_the_host_unless_free_page_reporting_is_on(reporting):
    m = model(scenario(guest("g", STEP_DOWN, cache_fraction=0.0, free_page_reporting=reporting)))
    g = m.guest("g")
    m.advance_to(29)
    peak = g.touched
    assert peak > 1500 * MIB
    m.advance_to(35)
    assert g.demand == 300 * MIB
    m.advance_to(300)
    if reporting:
        # Reported after a short delay, in passes: the footprint falls to what is used.
        assert g.touched < 300 * MIB + g.reserve + 50 * MIB
        assert m.observe().guests[0].resident_kib < 450 * MIB
    else:
        assert g.touched == pytest.approx(peak)  # the guest keeps what it touched
        assert g.memory_stats()["mem_unused"] > 1500 * MIB  # though it has it free


def test_reporting_waits_for_the_delay():
    m = model(scenario(guest("g", STEP_DOWN, cache_fraction=0.0, free_page_reporting=True)))
    g = m.guest("g")
    m.advance_to(30)
    before = g.touched
    m.advance_to(31)  # freed one step ago: barely reported yet
    assert before - g.touched < 0.1 * 1200 * MIB


def test_balloon_takes_free_then_cache_then_swaps():
    m = model(scenario(guest("g", '{ type = "steady", level = 1000 }', cache_fraction=0.5, working_set=0.5)))
    g = m.guest("g")
    m.advance_to(200)
    assert g.cache > 400 * MIB and g.swap_used == 0
    free = g.untouched + g.free_touched
    g.set_balloon_target(g.balloon_cur - free + 1)  # free memory only
    m.advance(2)
    assert g.cache > 400 * MIB and g.swap_used == 0
    g.set_balloon_target(g.balloon_cur - g.cache + 10 * MIB)  # then the page cache
    m.advance(2)
    assert g.cache < 20 * MIB and g.swap_used == 0
    g.set_balloon_target(g.balloon_cur - 300 * MIB)  # then cold anon to swap
    m.advance(5)
    assert g.cold_swap > 250 * MIB and g.hot_swap == 0


def test_balloon_below_the_working_set_thrashes_and_stalls_the_guest():
    text = scenario(guest("g", '{ type = "steady", level = 1200 }', working_set=0.8, cache_fraction=0.1))
    calm, squeezed = model(text), model(text)
    for m in (calm, squeezed):
        m.advance_to(60)
    squeezed.guest("g").set_balloon_target(700 * MIB)  # far below its 960 MiB working set
    for m in (calm, squeezed):
        m.advance_to(180)
    g, c = squeezed.guest("g"), calm.guest("g")
    assert g.balloon_cur == 700 * MIB
    assert g.hot_swap > 200 * MIB
    assert c.stall_seconds == 0
    assert g.stall_seconds > 30  # over two minutes, stalled much of the time
    stats = g.memory_stats()
    assert stats["major_fault"] > 100 * c.memory_stats()["major_fault"]
    assert stats["swap_in"] > 0 and stats["swap_out"] > 0
    # More missing working set, more faults per second.
    rates = []
    for target in (850, 750):
        m = model(text)
        m.advance_to(60)
        m.guest("g").set_balloon_target(target * MIB)
        m.advance_to(120)
        before = m.guest("g").major_fault
        m.advance_to(150)
        rates.append(m.guest("g").major_fault - before)
    assert rates[1] > 1.3 * rates[0] > 0


def test_balloon_stalls_above_target_while_only_swap_speed_holds_it():
    m = model(scenario(guest("g", '{ type = "steady", level = 1500 }', swap=2048, cache_fraction=0.0)))
    g = m.guest("g")
    m.advance_to(30)
    g.set_balloon_target(600 * MIB)
    m.advance(1)
    assert g.balloon_stalled and g.balloon_cur > 600 * MIB  # swapping 128 MiB/s at most
    assert g.stall_seconds > 0  # the guest waits on those writes
    m.advance(15)
    assert g.balloon_cur == 600 * MIB and g.oom_kills == 0


def test_balloon_past_what_the_guest_can_give_starves_it_into_oom():
    """The driver itself backs off at the wall, but it leaves the guest no free
    memory and nothing to reclaim: the programs' next allocation fails and the
    guest's OOM killer fires; the balloon then takes what the killed program
    held (the calibration guest did the same, doc/sim-model.md)."""
    m = model(scenario(guest("g", '{ type = "steady", level = 1000 }', swap=0, cache_fraction=0.1)))
    g = m.guest("g")
    m.advance_to(60)
    g.set_balloon_target(300 * MIB)
    m.advance(3)
    assert g.oom_kills >= 1
    assert any(e["kind"] == "oom" and e["name"] == "g" for e in m.events)
    assert g.balloon_cur < g.reserve + 1000 * MIB  # past the old wall: into the killed program's memory
    assert g.balloon_cur >= 300 * MIB


def test_deflate_is_bounded_and_gives_untouched_memory():
    m = model(scenario(guest("g", '{ type = "steady", level = 300 }', max=8192, balloon=1024, cache_fraction=0.0),
                       host="memory = 16384"))
    g = m.guest("g")
    m.advance_to(20)
    touched = g.touched
    g.set_balloon_target(8192 * MIB)
    m.advance(1)
    assert 512 * MIB < g.balloon_cur < 8192 * MIB
    m.advance(10)
    assert g.balloon_cur == 8192 * MIB
    assert g.touched == pytest.approx(touched)  # the host backs the new memory only once it is used


def test_slow_and_stuck_balloon_drivers():
    text = scenario(guest("slow", '{ type = "idle" }', balloon_speed=0.01)
                    + guest("stuck", '{ type = "idle" }', balloon_stuck_at=10)
                    + guest("none", '{ type = "idle" }', balloon_driver=False))
    m = model(text)
    m.advance_to(20)
    for name in ("slow", "stuck", "none"):
        m.guest(name).set_balloon_target(1024 * MIB)
    m.advance_to(30)
    slow = m.guest("slow").balloon_cur
    assert 1024 * MIB < slow < 2048 * MIB - 50 * MIB  # ~10 MiB/s
    assert m.guest("stuck").balloon_cur == 2048 * MIB
    assert m.guest("none").balloon_cur == 2048 * MIB
    assert m.guest("none").memory_stats() is None


def test_guest_oom_past_ram_plus_swap_is_an_event():
    m = model(scenario(guest("g", '{ type = "steps", steps = [[0, 500], [20, 1900]] }', max=1536, swap=256)))
    g = m.guest("g")
    m.advance_to(19)
    assert g.oom_kills == 0
    m.advance_to(40)
    assert g.oom_kills == 1
    assert {"time": pytest.approx(20, abs=2), "kind": "oom", "name": "g"} in m.events
    assert m.observe().guests[0].oom_kills_total == 1
    assert g.running  # the guest lives on; a program died


# -- the host ---------------------------------------------------------------------------------------
def test_host_swap_slows_the_guests_whose_pages_it_holds():
    """A host process grows: the host swaps guest memory, coldest first. The
    guest with a large cold part gives it without slowing; once the host must
    take working-set pages, those guests stall."""
    guests = (guest("hot", '{ type = "steady", level = 1800 }', working_set=1.0, cache_fraction=0.0)
              + guest("cold", '{ type = "steady", level = 1800 }', working_set=0.2, cache_fraction=0.0))
    hog = '[[process]]\nname = "backup"\nworkload = { type = "steps", steps = [[0, 0], [30, %d]] }\n'
    host = "memory = 4608\nswap = 4096"
    light, heavy = model(scenario(guests + hog % 1000, host=host)), model(scenario(guests + hog % 3000, host=host))
    for m in (light, heavy):
        m.advance_to(200)
    # 1000 MiB: only cold pages go, nobody waits much.
    assert light.guest("cold").host_swap > 400 * MIB
    assert light.guest("hot").host_swap < 10 * MIB
    assert light.guest("hot").host_stall_seconds < 1
    # 3000 MiB: working-set pages of both are on host swap; both stall, and the
    # host's PSI shows it.
    for name in ("hot", "cold"):
        g = heavy.guest(name)
        assert g.host_swap > 200 * MIB
        assert g.host_stall_seconds > 10
        assert g.stall_seconds >= g.host_stall_seconds
        seen = next(o for o in heavy.observe().guests if o.name == name)
        assert seen.host_stall_seconds_total == g.host_stall_seconds > 10
    assert heavy.psi_some.total_us > 10 * light.psi_some.total_us
    assert heavy.observe().host_processes_kib == 3000 * MIB


def test_host_oom_kills_the_largest_qemu():
    guests = (guest("small", '{ type = "steady", level = 600 }', max=1024)
              + guest("large", '{ type = "steps", steps = [[0, 500], [20, 2800]] }', max=3072))
    m = model(scenario(guests, host="memory = 3072\nswap = 512"))
    m.advance_to(100)
    obs = {g.name: g for g in m.observe().guests}
    assert obs["large"].killed_by_host and not obs["large"].running
    assert not obs["small"].killed_by_host and obs["small"].running
    assert m.observe().oom_kills_total == 1
    assert [e for e in m.events if e["kind"] == "host_oom"] == [
        {"time": pytest.approx(e["time"]), "kind": "host_oom", "name": "large"} for e in m.events
        if e["kind"] == "host_oom"]
    m.advance_to(200)
    assert not m.guest("large").running  # it stays dead


# -- KSM ----------------------------------------------------------------------------------------------
def ksm_host(n: int, image_of=lambda i: "rhel9") -> SimModel:
    guests = "".join(guest(f"vm{i}", '{ type = "steady", level = 500 }', shareable=1.0, cache_fraction=0.0,
                           image=image_of(i)) for i in range(n))
    return model(scenario(guests, extra="[ksm]\nrun = 1\npages_to_scan = 20000\nsleep_millisecs = 10"))


def test_two_identical_guests_save_one_copy():
    m = ksm_host(2)
    m.advance_to(600)
    copy = m.guest("vm0").resident
    stats = m.ksm.stats()
    assert m.ksm.saved_kib == pytest.approx(copy, rel=0.01)  # not both copies
    # One kept page and one extra mapping for each merged content.
    assert stats["pages_shared"] == pytest.approx(stats["pages_sharing"], abs=1)
    assert m.observe().ksm_saved_kib == pytest.approx(copy, rel=0.01)


def test_n_identical_guests_save_n_minus_one_and_images_do_not_mix():
    m = ksm_host(4)
    m.advance_to(600)
    copy = m.guest("vm0").resident
    stats = m.ksm.stats()
    assert m.ksm.saved_kib == pytest.approx(3 * copy, rel=0.01)
    assert stats["pages_sharing"] == pytest.approx(3 * stats["pages_shared"], rel=0.01)
    mixed = ksm_host(4, image_of=lambda i: f"os{i % 2}")  # two pairs
    mixed.advance_to(600)
    assert mixed.ksm.saved_kib == pytest.approx(2 * copy, rel=0.01)
    alone = ksm_host(2, image_of=str)
    alone.advance_to(600)
    assert alone.ksm.saved_kib == 0


def test_merging_speed_follows_pages_to_scan_and_costs_ksmd_cpu():
    slow, fast = ksm_host(2), ksm_host(2)
    slow.ksm.pages_to_scan = 100
    slow.ksm.sleep_millisecs = 20  # 5,000 pages/s
    slow.advance_to(30)
    fast.advance_to(30)  # 2,000,000 pages/s
    assert fast.ksm.saved_kib > 0.9 * fast.guest("vm0").resident
    assert 0 < slow.ksm.saved_kib < 0.5 * slow.guest("vm0").resident  # half a full scan
    assert fast.ksm.cpu_ticks > 10 * slow.ksm.cpu_ticks > 0


# -- statistics as the drivers report them ------------------------------------------------------------
def test_statistics_update_period_and_going_stale():
    text = scenario(guest("g", '{ type = "ramp", low = 200, high = 1800, period = 400 }',
                          stats_period=5, stats_stop=100))
    m = model(text)
    g = m.guest("g")
    seen = []
    for t in range(1, 60):
        m.advance_to(t)
        seen.append(g.memory_stats()["mem_unused"])
    changes = sum(1 for a, b in itertools.pairwise(seen) if a != b)
    assert 9 <= changes <= 12  # every 5 s, not every second
    m.advance_to(100)
    frozen = g.memory_stats()
    m.advance_to(200)
    assert g.memory_stats() == frozen  # stopped answering: stale
    assert g.live_stats() != frozen


def test_a_guest_that_never_reports_is_an_error_from_the_hypervisor(tmp_path):
    sc = loads_scenario(scenario(guest("quiet", '{ type = "idle" }', stats=False) + guest("ok", '{ type = "idle" }')))
    hv = SimHypervisor(sc, tree_dir=str(tmp_path))
    try:
        infos = {g.name: g for g in hv.list_guests()}
        assert hv.guest_memory_stats(infos["ok"])["mem_available"] == 2048 * MIB
        with pytest.raises(HypervisorError, match="reports no balloon statistics"):
            hv.guest_memory_stats(infos["quiet"])
        assert hv.guest_balloon_info(infos["quiet"])["balloon_cur"] == 2048 * MIB
    finally:
        hv.close()


# -- scenario features ---------------------------------------------------------------------------------
def test_trace_workload_replays_a_csv(tmp_path):
    (tmp_path / "trace.csv").write_text("time,mib\n0,100\n100,1100\n200,100\n")
    path = tmp_path / "s.toml"
    path.write_text(scenario(guest("t", '{ type = "trace", file = "trace.csv", loop = true }')))
    from mom.sim.scenario import load_scenario
    m = SimModel(load_scenario(path))
    m.advance_to(50)
    assert m.guest("t").demand == pytest.approx(600 * MIB)
    m.advance_to(250)  # looped: 50 s into the second round
    assert m.guest("t").demand == pytest.approx(600 * MIB)


@pytest.mark.parametrize("text, message", [
    ('{ type = "trace", file = "nowhere.csv" }', "cannot read trace"),
    ('{ type = "trace" }', "needs file"),
    ('{ type = "steps", steps = [[10, 5], [0, 1]] }', "times must rise"),
    ('{ type = "steps", steps = 3 }', "list of"),
])
def test_bad_workloads_are_one_clear_error(text, message):
    with pytest.raises(ScenarioError, match=message):
        loads_scenario(scenario(guest("g", text)), "/nonexistent/s.toml")


def test_bad_guest_flags_are_errors():
    with pytest.raises(ScenarioError, match="free_page_reporting: expected true or false"):
        loads_scenario(scenario(guest("g", '{ type = "idle" }', free_page_reporting=1)))


def test_start_and_stop_times_and_the_scenario_seed():
    text = scenario(guest("late", '{ type = "steady", level = 300, noise = 30 }', start=30, stop=60))
    m = model(text)
    m.advance_to(10)
    assert not m.guest("late").running
    m.advance_to(40)
    assert m.guest("late").running
    demand = m.guest("late").demand
    m.advance_to(70)
    assert not m.guest("late").running and m.observe().guests[0].resident_kib == 0
    assert [e["kind"] for e in m.events] == ["start", "stop"]
    same, other = model(text), model(text, seed=6)  # the file's seed (5) unless one is given
    for x in (same, other):
        x.advance_to(40)
    assert same.guest("late").demand == demand != other.guest("late").demand


def test_observation_has_every_guest_and_the_host():
    m = model(scenario(guest("a", '{ type = "idle" }', min=256) + guest("b", '{ type = "idle" }', start=100)))
    m.advance_to(10)
    obs = m.observe()
    assert obs.time == 10 and obs.ram_kib == 8192 * MIB
    a, b = obs.guests
    assert (a.name, a.running, a.min_kib, a.max_kib) == ("a", True, 256 * MIB, 2048 * MIB)
    assert a.shares == 1000 and a.stall_seconds_total == a.host_stall_seconds_total == 0
    assert (b.name, b.running, b.resident_kib) == ("b", False, 0)
    assert a.balloon_kib == a.target_kib == 2048 * MIB
    assert 0 < a.resident_kib < a.balloon_kib
    assert obs.free_kib < obs.available_kib <= obs.ram_kib


def test_guest_info_for_a_vanished_guest(tmp_path):
    sc = loads_scenario(scenario(guest("a", '{ type = "idle" }')))
    hv = SimHypervisor(sc, tree_dir=str(tmp_path))
    try:
        info = hv.list_guests()[0]
        hv.vanish("a")
        assert not hv.model.observe().guests[0].running
        with pytest.raises(HypervisorError):
            hv.guest_memory_stats(GuestInfo(uuid=info.uuid, name="a", pid=info.pid))
    finally:
        hv.close()


def test_momd_default_config_keeps_the_scenario_seed(tmp_path):
    from mom.daemon.config import load_config
    cfg = load_config(None)
    assert cfg.sim.seed is None
    sc = loads_scenario(scenario(guest("a", '{ type = "idle" }')))
    hv = SimHypervisor(sc, seed=cfg.sim.seed, tree_dir=str(tmp_path))
    try:
        assert hv.model.seed == sc.seed == 5
    finally:
        hv.close()
