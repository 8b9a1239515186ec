"""momctl explain against a momd whose test policy balloons every guest each tick:
the decision, the functions that ran, the variables and their values, the inputs;
from the daemon (RPC) and offline from its flight recorder."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.momd import REPO, run_momctl

from .conftest import PRESSURE_FREE, SHRINK_MIB, Daemon


def explain(*args: str) -> tuple[int, str, str]:
    proc = run_momctl(["explain", *args])
    assert "Traceback" not in proc.stderr
    return proc.returncode, proc.stdout, proc.stderr


def newest(entity: dict, field: str) -> float:
    return entity["statistics"][-1][field]


def test_explain_from_the_daemon_names_the_variables_behind_the_ballooning(shrinking: Daemon) -> None:
    rc, out, err = explain("--socket", str(shrinking.socket), "vm2", "--json")
    assert rc == 0, err
    x = json.loads(out)
    assert x["guest"] == "vm2" and x["calls"] == ["shrink"]
    target = x["controls"]["balloon_target"]
    assert target == x["inputs"]["balloon_cur"] - SHRINK_MIB * 1024  # the policy's arithmetic, on its inputs
    assert x["variables"] == {"target": target}
    host = x["host_variables"]
    assert host["pressure_free"] == PRESSURE_FREE and 0 < host["host_free"] < PRESSURE_FREE
    [action] = x["actions"]
    assert action["control"] == "balloon_target" and action["applied"]
    assert action["new"] == int(target) or "clamped" in action["reason"]  # at balloon_min, late in a long run

    rc, text, _ = explain("--socket", str(shrinking.socket), "vm2")
    assert rc == 0
    assert "the policy set balloon_target" in text and "functions that ran for vm2: shrink" in text
    lines = text.splitlines()
    assert any(line.split() == ["pressure_free", str(PRESSURE_FREE)] for line in lines), text
    assert any(line.split()[:1] == ["host_free"] for line in lines) and any("target" in line for line in lines)


def test_explain_offline_from_the_record(shrinking: Daemon) -> None:
    records = [json.loads(line) for line in shrinking.record.read_text().splitlines()[:8]]
    tick = records[4]
    rc, out, err = explain("--record", str(shrinking.record), "vm1", "--tick", str(tick["tick"]), "--json")
    assert rc == 0, err
    x = json.loads(out)
    vm1 = next(g for g in tick["guests"] if g["properties"]["name"] == "vm1")
    host_stats = tick["host"]["statistics"]
    free = sum(r["mem_free"] for r in host_stats) / len(host_stats) / host_stats[-1]["mem_available"]
    assert abs(x["host_variables"]["host_free"] - free) < 1e-9  # the value the policy computed that tick
    assert x["variables"]["target"] == newest(vm1, "balloon_cur") - SHRINK_MIB * 1024
    assert x["trace"] == "recorded" and x["tick"] == tick["tick"]

    # MOM's earlier sample balloon policy, evaluated on the same snapshot: what it would have done, and why.
    rc, out, err = explain("--record", str(shrinking.record), "vm1", "--tick", str(tick["tick"]),
                           "--policy", str(REPO / "bench" / "policies" / "mom-sample" / "balloon.policy"), "--json")
    assert rc == 0, err
    x = json.loads(out)
    assert x["trace"] == "recorded"  # the record's own trace wins for a guest it has
    assert "low_free" not in x["host_variables"]


def test_explain_a_guest_without_a_recorded_trace_evaluates_again(shrinking: Daemon, tmp_path: Path) -> None:
    lines = shrinking.record.read_text().splitlines()[:5]
    stripped = tmp_path / "old.jsonl"  # a record written before momd kept the policy's variables
    stripped.write_text("".join(json.dumps({k: v for k, v in json.loads(line).items() if k != "trace"}) + "\n"
                                for line in lines))
    rc, _, err = explain("--record", str(stripped), "vm3")
    assert rc == 1 and "--policy" in err and len(err.splitlines()) == 1
    sample = REPO / "bench" / "policies" / "mom-sample"
    rc, out, err = explain("--record", str(stripped), "vm3", "--policy", str(sample), "--json")
    assert rc == 0, err
    x = json.loads(out)
    assert x["trace"] == "evaluated again" and x["host_variables"]["low_free"] == 0.2
    assert x["calls"] and x["calls"][0] in ("shrink", "grow")


def test_explain_bad_input_is_one_line(shrinking: Daemon, tmp_path: Path) -> None:
    record = str(shrinking.record)
    damaged = tmp_path / "damaged.jsonl"
    damaged.write_text('{"tick": 1}\nnot json\n')
    for args, words in [(["nosuch", "--record", record], "guest nosuch is in no tick"),
                        (["vm1", "--record", record, "--tick", "999999"], "no tick 999999"),
                        (["vm1", "--record", str(tmp_path / "missing")], "cannot read"),
                        (["vm1", "--record", str(damaged)], "damaged.jsonl:2: not a record line"),
                        (["nosuch", "--socket", str(shrinking.socket)], "guest nosuch is not in tick"),
                        (["vm1", "--socket", str(shrinking.socket), "--tick", "1"], "keeps its last tick only")]:
        rc, _, err = explain(*args)
        assert rc == 1 and words in err and len(err.splitlines()) == 1, (args, err)
    rc, _, err = explain("vm1", "--socket", str(shrinking.socket), "--port", "1")
    assert rc == 2 and "not both" in err
    rc, _, err = explain("vm1", "--socket", str(shrinking.socket), "--policy", "x")
    assert rc == 2 and "--policy goes with --record" in err
    assert shrinking.momd.alive()


def test_a_trace_is_bounded_and_a_failing_policy_traces_nothing() -> None:
    from mom.policy.errors import Source
    from mom.policy.policy import compile_policy
    from mom.policy.snapshot import EntityData, Snapshot
    from mom.policy.trace import MAX_TEXT, MAX_VARIABLES, trace_run

    many = "\n".join(f"(defvar v{i} {i})" for i in range(MAX_VARIABLES + 50))
    policy = compile_policy([Source("many", many + '\n(defvar long "' + "x" * 1000 + '")')])
    snap = Snapshot(EntityData({}, [{"mem_free": 1}]), [EntityData({"name": "g"}, [{"x": 1}])])
    trace = trace_run(policy, snap)
    assert trace.ok and len(trace.host_variables) == MAX_VARIABLES and "long" not in trace.host_variables
    policy = compile_policy([Source("long", '(defvar long "' + "x" * 1000 + '")')])
    assert len(trace_run(policy, snap).host_variables["long"]) == MAX_TEXT + 3
    failing = compile_policy([Source("bad", "(defvar a 1)\n(with Guests vm (vm.Control \"x\" (/ 1 0)))")])
    trace = trace_run(failing, snap)
    assert not trace.ok and "division by zero" in trace.error and not trace.guest_controls


def test_a_traced_run_does_not_log_the_policys_debug_lines_again(caplog) -> None:
    import logging

    from mom.policy.errors import Source
    from mom.policy.policy import compile_policy
    from mom.policy.snapshot import EntityData, Snapshot
    from mom.policy.trace import trace_run

    policy = compile_policy([Source("dbg", '(debug "once per tick")')])
    snap = Snapshot(EntityData({}, [{"mem_free": 1}]), [])
    with caplog.at_level(logging.DEBUG, logger="mom.policy.debug"):
        policy.run(snap)
        trace_run(policy, snap)
        policy.run(snap)
    assert [r.getMessage() for r in caplog.records].count("debug: once per tick") == 2
