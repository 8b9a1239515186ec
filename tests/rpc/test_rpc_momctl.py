"""momctl as a subprocess against a running momd: every RPC command, its output
and its exit codes (0 ok, 1 daemon error, 2 usage, 3 cannot connect)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.momd import REPO, Momd, run_momctl
from tests.support.net import free_port
from tests.support.rpc import tcp_client, unix_client, write_config


@pytest.fixture(scope="module")
def momd(tmp_path_factory: pytest.TempPathFactory, sockdir: Path) -> Iterator[tuple[Momd, str, Path]]:
    tmp = tmp_path_factory.mktemp("ctl")
    sock = str(sockdir / "ctl.sock")
    m = Momd(write_config(tmp, rpc=sock))
    try:
        m.wait_listening(unix_client(sock))
        m.wait_ticks(3)
        yield m, sock, tmp
    finally:
        m.close()


def test_ping_stats_guests(momd: tuple[Momd, str, Path]) -> None:
    _, sock, _ = momd
    r = run_momctl(["--socket", sock, "ping"])
    assert (r.returncode, r.stdout.strip()) == (0, "momd is alive")
    r = run_momctl(["stats", "--socket", sock])  # the option also goes after the command
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    assert lines[0] == "Host"
    assert any(line.split()[:1] == ["mem_available"] for line in lines)
    i = lines.index("Guests (3)")
    assert lines[i + 1].split()[:3] == ["name", "balloon_cur", "balloon_max"]
    assert [line.split()[0] for line in lines[i + 2:]] == ["vm1", "vm2", "vm3"]
    r = run_momctl(["--socket", sock, "stats", "--json"])
    stats = json.loads(r.stdout)
    assert sorted(stats["guests"]) == ["vm1", "vm2", "vm3"] and "ksm_run" in stats["host"]
    r = run_momctl(["--socket", sock, "guests"])
    assert (r.returncode, r.stdout.split()) == (0, ["vm1", "vm2", "vm3"])
    r = run_momctl(["--socket", sock, "guests", "--json"])
    assert (r.returncode, json.loads(r.stdout)) == (0, ["vm1", "vm2", "vm3"])


def test_policy_commands(momd: tuple[Momd, str, Path]) -> None:
    _, sock, tmp = momd
    ctl = ["--socket", sock, "policy"]
    r = run_momctl(ctl + ["list"])
    assert r.returncode == 0 and [line.split("\t")[0] for line in r.stdout.splitlines()] == ["balloon", "ksm"]
    r = run_momctl(ctl + ["list", "--json"])
    policies = json.loads(r.stdout)
    assert sorted(policies) == ["balloon", "ksm"] and "(Host.Control" in policies["ksm"]
    r = run_momctl(ctl + ["get"])
    assert r.returncode == 0 and "(Host.Control" in r.stdout

    r = run_momctl(ctl + ["set-named", "zz-extra", "-"], input="(defvar extra 1)\n")
    assert (r.returncode, r.stdout.strip()) == (0, "policy zz-extra set")
    r = run_momctl(ctl + ["set-named", "zz-extra", "-"], input="(defvar extra (+ 1\n")
    # Why, as `momctl policy check` would say it: where, the source line and a caret.
    assert r.returncode == 1 and "rejected" in r.stderr
    assert r.stderr.splitlines()[1:] == ["zz-extra:1:15: error: '(' is never closed", "    (defvar extra (+ 1",
                                         "                  ^"], r.stderr
    assert unix_client(sock).getNamedPolicies()["zz-extra"] == "(defvar extra 1)\n"
    r = run_momctl(ctl + ["delete", "zz-extra"])
    assert r.returncode == 0 and "zz-extra" not in unix_client(sock).getNamedPolicies()
    r = run_momctl(ctl + ["delete", "zz-extra"])
    assert r.returncode == 1 and "no policy named zz-extra" in r.stderr

    single = tmp / "single.policy"
    single.write_text('(Host.Control "ksm_pages_to_scan" 99)\n')
    r = run_momctl(ctl + ["set", str(single)])
    assert r.returncode == 0
    assert unix_client(sock).getNamedPolicies() == {"50_main_": single.read_text()}
    r = run_momctl(ctl + ["set", str(tmp / "missing.policy")])
    assert r.returncode == 2 and "cannot read" in r.stderr
    r = run_momctl(ctl + ["reset"])
    assert r.returncode == 0
    assert sorted(unix_client(sock).getNamedPolicies()) == ["balloon", "ksm"]
    # The offline policy tools still work beside them.
    r = run_momctl(["policy", "check", str(REPO / "doc" / "policies")])
    assert r.returncode == 0
    r = run_momctl(["policy", "eval", "-"], input="(+ 1 2)\n")
    assert (r.returncode, r.stdout.strip()) == (0, "3")


def test_verbosity_actions_health(momd: tuple[Momd, str, Path]) -> None:
    _m, sock, _ = momd
    r = run_momctl(["--socket", sock, "verbosity", "info"])
    assert r.returncode == 0
    r = run_momctl(["--socket", sock, "verbosity", "loud"])
    assert r.returncode == 1 and r.stderr.startswith("momctl: momd: verbosity") and len(r.stderr.splitlines()) == 1
    r = run_momctl(["--socket", sock, "actions", "2"])
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["time", "guest", "controller", "control", "old", "new"] and 2 <= len(lines) <= 3
    r = run_momctl(["--socket", sock, "actions", "--json"])
    actions = json.loads(r.stdout)
    assert actions and {"time", "guest", "controller", "control", "old", "new"} == set(actions[0])
    r = run_momctl(["--socket", sock, "health"])
    assert r.returncode == 0 and r.stdout.startswith("momd is healthy")
    assert {line.split()[0] for line in r.stdout.splitlines()[2:]} >= {"policy", "collector", "controller"}
    assert json.loads(run_momctl(["--socket", sock, "health", "--json"]).stdout)["ok"] is True


def test_exit_codes_usage_and_connect(momd: tuple[Momd, str, Path], sockdir: Path) -> None:
    _, sock, _ = momd
    r = run_momctl(["ping"])  # no address: the default socket, where no momd listens in the tests
    assert r.returncode == 3 and "unix socket /run/mom/mom.sock" in r.stderr
    r = run_momctl(["--socket", sock, "--port", "1", "ping"])
    assert r.returncode == 2
    r = run_momctl(["--socket", sock, "actions", "many"])
    assert r.returncode == 2
    r = run_momctl(["--socket", sock, "nosuchcommand"])
    assert r.returncode == 2
    r = run_momctl(["--socket", str(sockdir / "nobody.sock"), "ping"])
    assert r.returncode == 3 and r.stderr.startswith("momctl: cannot connect") and len(r.stderr.splitlines()) == 1
    r = run_momctl(["--port", str(free_port()), "stats"])
    assert r.returncode == 3 and "Connection refused" in r.stderr


def test_momctl_over_tcp(tmp_path: Path) -> None:
    port = free_port()
    m = Momd(write_config(tmp_path, rpc=str(port)))
    try:
        m.wait_listening(tcp_client(port))
        r = run_momctl(["--port", str(port), "guests"])
        assert (r.returncode, r.stdout.split()) == (0, ["vm1", "vm2", "vm3"])
    finally:
        m.close()
