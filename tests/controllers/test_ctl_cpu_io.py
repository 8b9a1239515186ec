from mom.controllers.cpu_tune import CpuTune
from mom.controllers.io_tune import IoTune


def test_cpu_tune_sends_only_changes(sim):
    ctl = CpuTune(sim.ctx)
    actions = ctl.apply(sim.tick({"web1": {"vcpu_quota": 50000, "vcpu_period": 100000},
                                  "web2": {"vcpu_quota": -1, "vcpu_period": 100000}}))
    assert [(a.target, a.control, a.old, a.new, a.applied) for a in actions] == [
        ("web1", "vcpu_quota", -1, 50000, True)]
    tune = sim.hv.guest_cpu_tune(sim.guest("web1"))
    assert (tune["vcpu_quota"], tune["vcpu_period"]) == (50000, 100000)
    assert ctl.apply(sim.tick({"web1": {"vcpu_quota": 50000, "vcpu_period": 100000}})) == []
    actions = ctl.apply(sim.tick({"web1": {"vcpu_quota": 25000, "vcpu_period": 50000}}))
    assert {a.control: a.new for a in actions} == {"vcpu_quota": 25000, "vcpu_period": 50000}
    tune = sim.hv.guest_cpu_tune(sim.guest("web1"))
    assert (tune["vcpu_quota"], tune["vcpu_period"]) == (25000, 50000)


def test_cpu_tune_errors_stay_per_guest(sim):
    ctl = CpuTune(sim.ctx)
    tick = sim.tick({"web1": {"vcpu_quota": 10}, "web2": {"vcpu_quota": 40000}, "db": {"vcpu_quota": 30000}})
    sim.hv.vanish("db")
    by = {a.target: a for a in ctl.apply(tick)}
    assert not by["web1"].applied and "out of range" in by["web1"].reason
    assert by["web2"].applied
    assert not by["db"].applied
    assert sim.hv.guest_cpu_tune(sim.guest("web2"))["vcpu_quota"] == 40000
    assert sim.hv.guest_cpu_tune(sim.guest("web1"))["vcpu_quota"] == -1


def io_control(disk, **limits):
    return [{"name": disk["name"], "path": disk["path"], "guaranteed": disk["guaranteed"],
             "maximum": disk["maximum"], "current": {**disk["current"], **limits}}]


def test_io_tune_reaches_guest_only_when_changed(sim):
    ctl = IoTune(sim.ctx)
    [disk] = sim.hv.guest_io_tune(sim.guest("web1"))
    actions = ctl.apply(sim.tick({"web1": {"io_tune": io_control(disk, total_bytes_sec=10_000_000)},
                                  "web2": {"io_tune": io_control(sim.hv.guest_io_tune(sim.guest("web2"))[0])}}))
    assert [(a.target, a.applied) for a in actions] == [("web1", True)]
    assert actions[0].new[0]["current"]["total_bytes_sec"] == 10_000_000
    assert sim.hv.guest_io_tune(sim.guest("web1"))[0]["current"]["total_bytes_sec"] == 10_000_000
    assert sim.hv.guest_io_tune(sim.guest("web2"))[0]["current"]["total_bytes_sec"] == 0
    [disk] = sim.hv.guest_io_tune(sim.guest("web1"))
    assert ctl.apply(sim.tick({"web1": {"io_tune": io_control(disk)}})) == []


def test_io_tune_errors_are_refused_per_guest(sim):
    ctl = IoTune(sim.ctx)
    [d1] = sim.hv.guest_io_tune(sim.guest("web1"))
    [d2] = sim.hv.guest_io_tune(sim.guest("web2"))
    bogus = [{"name": "vdq", "path": "/dev/none", "current": {"read_iops_sec": 5}}]
    tick = sim.tick({"web1": {"io_tune": bogus}, "web2": {"io_tune": io_control(d2, write_iops_sec=300)}})
    tick.guests.append(type(tick.guests[0])(info=tick.guests[0].info, stats={}, controls={"io_tune": io_control(d1)}))
    actions = ctl.apply(tick)
    by = [(a.target, a.applied) for a in actions]
    assert by == [("web1", False), ("web2", True), ("web1", False)]
    assert "no disk" in actions[0].reason
    assert "unknown" in actions[2].reason
    assert sim.hv.guest_io_tune(sim.guest("web2"))[0]["current"]["write_iops_sec"] == 300


def test_cpu_tune_plans_one_call_per_guest(sim):
    plan = CpuTune(sim.ctx).plan(sim.tick({"web1": {"vcpu_quota": 50000, "vcpu_period": 50000},
                                           "web2": {"vcpu_quota": "half"}}))
    [call] = plan.calls
    assert (call.target, call.name) == ("web1", "cpu_tune")
    assert [(c.control, c.new) for c in call.changes] == [("vcpu_quota", 50000), ("vcpu_period", 50000)]
    assert [(a.target, a.control, a.applied) for a in plan.refused] == [("web2", "vcpu_quota", False)]
    assert sim.hv.guest_cpu_tune(sim.guest("web1"))["vcpu_quota"] == -1  # planning sends nothing
