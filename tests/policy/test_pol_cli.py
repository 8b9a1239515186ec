"""`momctl policy check|eval|run` as a user runs them: exit statuses (0 fine,
1 the policy has errors, 2 usage), what they print, replaying a damaged
flight-recorder file, controls shown as the controllers apply them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mom.policy.generate import generate_snapshot
from tests.support.momd import REPO, run_momctl

SHRINK = """\
(with Guests vm
    (vm.Control "balloon_target" (* vm.balloon_cur 0.95)))
(Host.Control "ksm_pages_to_scan" (* 100 1.5))
"""


@pytest.fixture
def shrink(tmp_path: Path) -> Path:
    path = tmp_path / "shrink.policy"
    path.write_text(SHRINK)
    return path


def snapshots_file(tmp_path: Path, count: int = 3) -> tuple[Path, list[str]]:
    lines = [json.dumps(generate_snapshot(2, seed=i).to_json()) for i in range(count)]
    path = tmp_path / "record.jsonl"
    path.write_text("".join(line + "\n" for line in lines))
    return path, lines


# -- check -----------------------------------------------------------------------------------

def test_check_accepts_the_sample_policies():
    r = run_momctl(["policy", "check", str(REPO / "doc" / "policies")])
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")


def test_check_reports_each_finding_rendered(tmp_path: Path):
    bad = tmp_path / "bad.policy"
    bad.write_text('(set ksmEnabled True)\n(frobnicate 1 2)\n(with Guests g (g.Control "balloon_targt" 1))\n')
    r = run_momctl(["policy", "check", str(bad)])
    assert r.returncode == 1 and r.stderr == ""
    assert r.stdout.splitlines() == [
        f"{bad}:1:6: error: set of undefined variable 'ksmEnabled'",
        "    (set ksmEnabled True)",
        "         ^",
        f"{bad}:1:17: error: undefined variable 'True'",
        "    (set ksmEnabled True)",
        "                    ^",
        f"{bad}:2:2: error: undefined function 'frobnicate'",
        "    (frobnicate 1 2)",
        "     ^",
        f"{bad}:3:27: error: unknown control 'balloon_targt': no controller acts on it "
        "(did you mean 'balloon_target'?)",
        '    (with Guests g (g.Control "balloon_targt" 1))',
        "                              ^"]


def test_check_runs_the_trial_evaluation(tmp_path: Path):
    bad = tmp_path / "zero.policy"
    bad.write_text('(with Guests g (g.Control "balloon_target" (/ g.balloon_cur (- 1 1))))\n')
    r = run_momctl(["policy", "check", str(bad)])
    assert r.returncode == 1
    assert r.stdout.splitlines()[0] == f"{bad}:1:45: error: division by zero"
    assert r.stdout.splitlines()[-1] == "  (found by a trial evaluation)"


def test_check_controllers_as_the_daemon_has_them(shrink: Path):
    r = run_momctl(["policy", "check", "--controllers", "Balloon", str(shrink)])
    assert r.returncode == 0
    assert r.stdout.splitlines()[0] == (f"{shrink}:3:15: warning: controller KSM is not enabled: "
                                        "ksm_pages_to_scan has no effect")
    r = run_momctl(["policy", "check", "--controllers", "Balloon,KSM", str(shrink)])
    assert (r.returncode, r.stdout) == (0, "")
    r = run_momctl(["policy", "check", "--controllers", "Balloon,Ksm", str(shrink)])
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("momctl: --controllers: unknown controller Ksm (known: ") and \
        len(r.stderr.splitlines()) == 1


def test_check_a_directory_without_policies_is_an_error(tmp_path: Path):
    (tmp_path / "balloon.rules").write_text("(defvar x 1)\n")
    r = run_momctl(["policy", "check", str(tmp_path)])
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == f"momctl: {tmp_path}: no *.policy files in this directory\n"
    r = run_momctl(["policy", "run", str(tmp_path), "--snapshots", "-"], input="")
    assert r.returncode == 1 and "no *.policy files" in r.stderr


@pytest.mark.parametrize("command", [
    ["policy", "check", "{missing}"],
    ["policy", "eval", "{missing}"],
    ["policy", "run", "{missing}", "--snapshots", "-"],
    ["policy", "run", "{good}", "--snapshots", "{missing}"],
])
def test_a_missing_file_is_a_usage_error_everywhere(tmp_path: Path, shrink: Path, command: list[str]):
    missing = tmp_path / "nope.policy"
    args = [a.format(missing=missing, good=shrink) for a in command]
    r = run_momctl(args, input="")
    assert r.returncode == 2, r.stderr
    assert r.stderr == f"momctl: cannot read {missing}: No such file or directory\n"


def test_eval_of_a_directory_is_a_usage_error(tmp_path: Path):
    r = run_momctl(["policy", "eval", str(tmp_path)])
    assert r.returncode == 2 and r.stderr == f"momctl: {tmp_path} is a directory: eval takes one policy file\n"


# -- run -------------------------------------------------------------------------------------

def test_run_shows_controls_as_the_controllers_apply_them(tmp_path: Path, shrink: Path):
    record, lines = snapshots_file(tmp_path, 1)
    r = run_momctl(["policy", "run", str(shrink), "--snapshots", str(record)])
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    snap = json.loads(lines[0])
    for g in snap["guests"]:
        target = out["guest_controls"][g["properties"]["name"]]["balloon_target"]
        assert type(target) is int and target == int(g["statistics"][-1]["balloon_cur"] * 0.95)
    assert out["host_controls"] == {"ksm_pages_to_scan": 150}
    raw = json.loads(run_momctl(["policy", "run", "--raw", str(shrink), "--snapshots", str(record)]).stdout)
    assert raw["host_controls"] == {"ksm_pages_to_scan": 150.0}
    assert all(type(c["balloon_target"]) is float for c in raw["guest_controls"].values())


def test_run_leaves_what_a_controller_would_refuse_or_not_know(tmp_path: Path):
    policy = tmp_path / "odd.policy"
    policy.write_text('(Host.Control "ksm_run" "on") (Host.Control "ksm_sleep_millisecs" (* 1e308 10))'
                      ' (Host.Control "mine" 2.5)')
    record, _ = snapshots_file(tmp_path, 1)
    r = run_momctl(["policy", "run", str(policy), "--snapshots", str(record)])
    assert r.returncode == 0
    assert json.loads(r.stdout)["host_controls"] == {"ksm_run": "on", "ksm_sleep_millisecs": float("inf"),
                                                     "mine": 2.5}


def test_run_skips_a_damaged_line_with_one_warning_and_goes_on(tmp_path: Path, shrink: Path):
    _, lines = snapshots_file(tmp_path, 4)
    record = tmp_path / "damaged.jsonl"
    # The disk filled up in the middle of record 2; record 3 was appended to what was left of it.
    record.write_text(lines[0] + "\n" + lines[1][: len(lines[1]) // 2] + lines[2] + "\n" + lines[3] + "\n"
                      + lines[0][:100])  # and the file ends in a cut record, without a newline
    r = run_momctl(["policy", "run", str(shrink), "--snapshots", str(record)])
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == 2  # records 1 and 4
    warnings = r.stderr.splitlines()
    assert len(warnings) == 2
    assert warnings[0].startswith(f"momctl: warning: {record}:2: not valid JSON: ")
    assert warnings[0].endswith("; damaged line skipped")
    assert warnings[1].startswith(f"momctl: warning: {record}:4: ")


def test_run_still_stops_at_a_line_that_is_not_a_snapshot(tmp_path: Path, shrink: Path):
    record, lines = snapshots_file(tmp_path, 1)
    record.write_text(lines[0] + "\n" + '{"guests": 5}\n' + lines[0] + "\n")
    r = run_momctl(["policy", "run", str(shrink), "--snapshots", str(record)])
    assert r.returncode == 1 and len(r.stdout.splitlines()) == 1
    assert r.stderr == f"momctl: {record}:2: guests: expected a list\n"
