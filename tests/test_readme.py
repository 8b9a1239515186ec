"""The README's examples run, in order, as a newcomer would type them."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.support.momd import REPO, Momd

README = (REPO / "README.md").read_text()
DEMO_SOCKET = "/tmp/momd-demo.sock"


def code_blocks(after_heading: str) -> list[str]:
    """The ```sh blocks of the README section that starts with after_heading."""
    section = README[README.index(after_heading):]
    section = section[:section.find("\n## ", 1) if "\n## " in section[1:] else len(section)]
    return re.findall(r"```sh\n(.*?)```", section, re.S)


def commands(block: str) -> list[str]:
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_momctl_examples_run_in_order_against_the_demo(tmp_path: Path) -> None:
    demo = (REPO / "doc" / "mom-sim-demo.conf").read_text()
    assert f"rpc-port: {DEMO_SOCKET}" in demo  # the README's commands talk to this socket
    sock = tmp_path / "demo.sock"
    conf = tmp_path / "demo.conf"
    # The demo as the README runs it, on a private socket and with a recorder to wait on.
    conf.write_text(demo.replace(f"rpc-port: {DEMO_SOCKET}",
                                 f"rpc-port: {sock}\nrecord-file: {tmp_path / 'record.jsonl'}")
                    .replace("policy-dir: doc/policies", f"policy-dir: {REPO / 'doc' / 'policies'}"))
    m = Momd(conf)
    try:
        m.wait_ticks(2)
        lines = commands(next(b for b in code_blocks("### Controlling a running momd") if "momctl" in b))
        assert len(lines) >= 10
        for line in lines:
            command = line.replace(DEMO_SOCKET, str(sock))
            proc = subprocess.run(["bash", "-c", command], cwd=REPO, capture_output=True, text=True, timeout=30)
            expected = 1 if "# rejected" in line else 0
            assert proc.returncode == expected, (line, proc.stdout, proc.stderr)
            assert "Traceback" not in proc.stderr
            if expected:
                # The daemon's rendered error reaches the user: file:line:col, the line, a caret.
                assert "01-parameters:1:" in proc.stderr and "^" in proc.stderr, proc.stderr
        assert m.alive()
    finally:
        m.close()


def test_policy_tool_examples_run(tmp_path: Path) -> None:
    block = next(b for b in code_blocks("### Policies") if "policy check" in b)
    for line in commands(block):
        command = line.replace("/tmp/snap.jsonl", str(tmp_path / "snap.jsonl"))
        proc = subprocess.run(["bash", "-c", command], cwd=REPO, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, (line, proc.stdout, proc.stderr)


def test_bench_example_runs() -> None:
    block = next(b for b in code_blocks("### Comparing policies") if "momctl bench" in b)
    for line in commands(block):
        proc = subprocess.run(["bash", "-c", line], cwd=REPO, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, (line, proc.stdout, proc.stderr)
        assert "| proxmox |" in proc.stdout and "| none |" in proc.stdout, proc.stdout
