import logging

from mom.controllers.balloon import Balloon
from mom.controllers.base import REGISTRY

MIB = 1024


def by_target(actions):
    return {a.target: a for a in actions}


def test_registered_under_original_name():
    import mom.controllers  # noqa: F401
    assert REGISTRY["Balloon"] is Balloon


def test_target_reaches_guest_and_is_logged_at_debug_level(sim, caplog):
    ctl = Balloon(sim.ctx)
    caplog.set_level(logging.DEBUG, logger="mom.Controllers.Balloon")
    actions = ctl.apply(sim.tick({"web1": {"balloon_target": 1200 * MIB + 0.7}}))
    assert [(a.target, a.old, a.new, a.applied) for a in actions] == [("web1", 2048 * MIB, 1200 * MIB, True)]
    # One line per guest and tick: debug, or a large host's info log is all ballooning.
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.DEBUG, f"Ballooning guest:web1 from {2048 * MIB} to {1200 * MIB}")]
    sim.advance(5)
    assert sim.hv.guest_balloon_info(sim.guest("web1"))["balloon_cur"] == 1200 * MIB
    assert sim.hv.guest_balloon_info(sim.guest("web2"))["balloon_cur"] == 2048 * MIB


def test_clamped_to_max_and_min(sim):
    ctl = Balloon(sim.ctx)
    ctl.apply(sim.tick({"web1": {"balloon_target": 1024 * MIB}}))
    sim.advance(5)
    actions = by_target(ctl.apply(sim.tick({"web1": {"balloon_target": 9000 * MIB},
                                            "web2": {"balloon_target": 100 * MIB}})))
    assert actions["web1"].new == 2048 * MIB and "balloon_max" in actions["web1"].reason
    assert actions["web2"].new == 512 * MIB and "balloon_min" in actions["web2"].reason
    sim.advance(5)
    assert sim.hv.guest_balloon_info(sim.guest("web1"))["balloon_cur"] == 2048 * MIB
    assert sim.hv.guest_balloon_info(sim.guest("web2"))["balloon_cur"] == 512 * MIB


def test_no_call_when_target_equals_current(sim):
    ctl = Balloon(sim.ctx)
    assert ctl.apply(sim.tick({"web1": {"balloon_target": 2048 * MIB},
                               "db": {"balloon_target": 5000 * MIB}})) == []


def test_one_guest_failing_does_not_stop_the_others(sim):
    ctl = Balloon(sim.ctx)
    tick = sim.tick({name: {"balloon_target": 800 * MIB} for name in ("web1", "web2", "db")})
    sim.hv.vanish("web2")  # between collection and control, as a shutdown would
    sim.hv.inject_fault("db", "raise", message="monitor socket closed")
    actions = by_target(ctl.apply(tick))
    assert actions["web1"].applied
    assert not actions["web2"].applied and "not running" in actions["web2"].reason
    assert not actions["db"].applied and "monitor socket closed" in actions["db"].reason
    sim.advance(5)
    assert sim.hv.guest_balloon_info(sim.guest("web1"))["balloon_cur"] == 800 * MIB


def test_plan_makes_no_call_until_run(sim):
    """plan() only describes the calls: one per guest that needs one, with what it changes."""
    tick = sim.tick({"web1": {"balloon_target": 1000 * MIB}, "web2": {"balloon_target": 9000 * MIB},
                     "db": {"balloon_target": "lots"}})
    plan = Balloon(sim.ctx).plan(tick)
    # web2's target is clamped to its maximum, which it has already: no call.
    assert [(c.target, c.name, [(ch.control, ch.old, ch.new, ch.note) for ch in c.changes]) for c in plan.calls] == [
        ("web1", "balloon_target", [("balloon_target", 2048 * MIB, 1000 * MIB, None)])]
    assert [a.target for a in plan.refused] == ["db"] and "not a number" in plan.refused[0].reason
    sim.advance(5)
    assert sim.hv.guest_balloon_info(sim.guest("web1"))["balloon_cur"] == 2048 * MIB  # nothing sent yet
    plan.calls[0].run()
    sim.advance(5)
    assert sim.hv.guest_balloon_info(sim.guest("web1"))["balloon_cur"] == 1000 * MIB


def test_bad_target_is_refused(sim):
    actions = Balloon(sim.ctx).apply(sim.tick({"web1": {"balloon_target": "lots"}}))
    assert len(actions) == 1 and not actions[0].applied and "not a number" in actions[0].reason
