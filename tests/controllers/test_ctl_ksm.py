import os

from mom.controllers.ksm import KSM
from mom.hypervisors.sim import SimHypervisor

OLD = 1_000_000_000  # an mtime far in the past


def age(sim, *names):
    for n in names:
        os.utime(sim.root / "sys/kernel/mm/ksm" / n, (OLD, OLD))


def untouched(sim, name):
    return os.stat(sim.root / "sys/kernel/mm/ksm" / name).st_mtime == OLD


def controls(run=1, pages=300, sleep=20, mxn=1):
    return {"ksm_run": run, "ksm_pages_to_scan": pages, "ksm_sleep_millisecs": sleep,
            "ksm_merge_across_nodes": mxn}


def test_writes_only_changed_values(sim):
    ctl = KSM(sim.ctx)
    age(sim, "run", "pages_to_scan", "sleep_millisecs", "merge_across_nodes")
    actions = ctl.apply(sim.tick(host_controls=controls()))
    assert {a.control: (a.old, a.new) for a in actions} == {"ksm_run": (0, 1), "ksm_pages_to_scan": (100, 300)}
    assert all(a.applied and a.target == "host" for a in actions)
    assert sim.host_stats()["ksm_run"] == 1 and sim.host_stats()["ksm_pages_to_scan"] == 300
    assert untouched(sim, "sleep_millisecs") and untouched(sim, "merge_across_nodes")
    assert not untouched(sim, "run")
    # Next tick: stats show the new values, nothing is written again.
    sim.advance(10)
    age(sim, "run", "pages_to_scan")
    assert ctl.apply(sim.tick(host_controls=controls())) == []
    assert untouched(sim, "run") and untouched(sim, "pages_to_scan")
    assert sim.host_stats()["ksm_pages_sharing"] > 0  # ksm really runs in the sim


def test_remembers_its_writes_without_host_stats(sim):
    ctl = KSM(sim.ctx)
    first = ctl.apply(sim.tick(host_controls={"ksm_run": 1, "ksm_pages_to_scan": 64.9}, host_stats={}))
    assert {a.control: a.new for a in first} == {"ksm_run": 1, "ksm_pages_to_scan": 64}
    assert (sim.root / "sys/kernel/mm/ksm/pages_to_scan").read_text() == "64\n"
    age(sim, "run", "pages_to_scan")
    assert ctl.apply(sim.tick(host_controls={"ksm_run": 1, "ksm_pages_to_scan": 64}, host_stats={})) == []
    assert untouched(sim, "run")


def test_rewrites_when_someone_else_changed_it(sim):
    ctl = KSM(sim.ctx)
    ctl.apply(sim.tick(host_controls={"ksm_run": 1}))
    (sim.root / "sys/kernel/mm/ksm/run").write_text("0\n")  # e.g. ksmtuned
    actions = ctl.apply(sim.tick(host_controls={"ksm_run": 1}))
    assert [(a.old, a.new) for a in actions] == [(0, 1)]
    assert sim.host_stats()["ksm_run"] == 1


class RecordingSim(SimHypervisor):
    """The real simulator, keeping the order of the KSM writes it got."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.ksm_calls = []

    def set_ksm_tune(self, params):
        self.ksm_calls.append(dict(params))
        super().set_ksm_tune(params)


def test_merge_across_nodes_unmerges_first(make_sim):
    sim = make_sim(RecordingSim)
    ctl = KSM(sim.ctx)
    ctl.apply(sim.tick(host_controls=controls(pages=1000)))
    sim.advance(60)
    assert sim.host_stats()["ksm_pages_shared"] > 0
    sim.hv.ksm_calls.clear()
    actions = ctl.apply(sim.tick(host_controls=controls(pages=1000, mxn=0)))
    assert [(a.control, a.new, a.applied) for a in actions] == [("ksm_merge_across_nodes", 0, True)]
    assert sim.hv.ksm_calls == [{"run": 2}, {"merge_across_nodes": 0, "run": 1}]
    assert list(sim.hv.ksm_calls[1]) == ["merge_across_nodes", "run"]  # run is restored last
    stats = sim.host_stats()
    assert stats["ksm_merge_across_nodes"] == 0 and stats["ksm_run"] == 1
    # Without merged pages there is nothing to unmerge: a plain write.
    sim.hv.ksm_calls.clear()
    ctl.apply(sim.tick(host_controls=controls(run=2, pages=1000, mxn=0)))
    sim.advance(2)
    ctl.apply(sim.tick(host_controls=controls(run=2, pages=1000, mxn=1)))
    assert sim.hv.ksm_calls == [{"run": 2}, {"merge_across_nodes": 1}]


def test_hypervisor_error_becomes_refused_actions(sim):
    ctl = KSM(sim.ctx)
    actions = ctl.apply(sim.tick(host_controls={"ksm_run": 7, "ksm_sleep_millisecs": "fast"}))
    by = {a.control: a for a in actions}
    assert not by["ksm_sleep_millisecs"].applied and "not a number" in by["ksm_sleep_millisecs"].reason
    assert not by["ksm_run"].applied and "invalid KSM value run=7" in by["ksm_run"].reason
    assert sim.host_stats()["ksm_run"] == 0
    # A refused value is not remembered as written: the next tick tries again.
    assert [a.control for a in ctl.apply(sim.tick(host_controls={"ksm_run": 7}, host_stats={}))] == ["ksm_run"]


def test_the_unmerge_sequence_is_one_planned_call(make_sim):
    """run=2, merge_across_nodes, then run: one call on the host, so the engine can
    never run its steps in parallel or out of order."""
    sim = make_sim(RecordingSim)
    ctl = KSM(sim.ctx)
    ctl.apply(sim.tick(host_controls=controls(pages=1000)))
    sim.advance(60)
    plan = ctl.plan(sim.tick(host_controls=controls(pages=1000, mxn=0, sleep=50)))
    [call] = plan.calls
    assert call.target == "host" and call.name == "ksm"
    assert [(c.control, c.new) for c in call.changes] == [("ksm_merge_across_nodes", 0), ("ksm_sleep_millisecs", 50)]
    sim.hv.ksm_calls.clear()
    call.run()
    assert sim.hv.ksm_calls == [{"run": 2}, {"merge_across_nodes": 0, "sleep_millisecs": 50, "run": 1}]
