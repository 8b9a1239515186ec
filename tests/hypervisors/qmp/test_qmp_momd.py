"""momd as a subprocess on the qmp interface, its guests fake QEMUs speaking QMP on
real unix sockets (tests/support/qmp_double.py): the configuration key and the
registry wire it up; the policy's balloon targets reach every QEMU; one QEMU
that stops answering costs only its own guest, with one warning, and is managed
again when it answers; a socket that appears is picked up."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from tests.support.momd import Momd
from tests.support.qmp_double import GuestState, QmpDouble

UUIDS = [f"5d0f7a52-1c1e-4a7e-8c1b-00000000000{i}" for i in range(4)]


def write_conf(base: Path, sockets: Path, target_mib: int) -> Path:
    policy = base / "balloon.policy"
    policy.write_text(f'(with Guests vm (vm.Control "balloon_target" {target_mib * 1024}))\n')
    (base / "sys" / "kernel/mm/ksm").mkdir(parents=True, exist_ok=True)
    conf = base / "mom.conf"
    conf.write_text(f"""[main]
hypervisor-interface: qmp
qmp-socket-glob: {sockets}/*.qmp
main-loop-interval: 1
host-monitor-interval: 1
guest-monitor-interval: 1
guest-manager-interval: 1
policy-engine-interval: 1
hypervisor-call-timeout: 3
controllers: Balloon
policy: {policy}
sys-root: {base / 'sys'}
rpc-port: -1

[logging]
log: stdio
verbosity: info

[host]
collectors: HostMemory

[guest]
collectors: GuestMemory, GuestBalloon
""")
    return conf


def test_momd_balloons_fake_qemus_and_one_hung_qemu_costs_only_its_guest(
        tmp_path: Path, sockets: Path, double: QmpDouble) -> None:
    qemus = [double.add(f"{i}.qmp", name=f"vm{i}", uuid=UUIDS[i], state=GuestState(base_mib=1024, actual_mib=1024))
             for i in range(3)]
    momd = Momd(write_conf(tmp_path, sockets, 512))
    try:
        momd.wait_for("every balloon at 512 MiB", lambda: all(q.state.actual_mib == 512 for q in qemus), 30)
        assert all(q.state.polling_interval == 1 for q in qemus)  # the guest-monitor-interval

        stuck = qemus[1]
        stuck.hang()
        (tmp_path / "balloon.policy").write_text('(with Guests vm (vm.Control "balloon_target" (* 640 1024)))\n')
        momd.send(signal.SIGHUP)
        others = [qemus[0], qemus[2]]
        momd.wait_for("the answering QEMUs at 640 MiB", lambda: all(q.state.actual_mib == 640 for q in others), 30)
        momd.wait_log("did not answer within 1 s", 15)
        time.sleep(4)  # several ticks more with the QEMU still stuck
        assert stuck.state.actual_mib == 512
        stuck_lines = [line for line in momd.log().splitlines() if "WARNING" in line and "1.qmp" in line]
        # One line when it stopped answering, one when connecting again failed; not one per tick.
        assert len(stuck_lines) == 2, stuck_lines
        assert "did not answer" in stuck_lines[0] and "cannot connect" in stuck_lines[1], stuck_lines

        stuck.hang(False)
        momd.wait_for("the stuck QEMU managed again", lambda: stuck.state.actual_mib == 640, 45)
        assert "vm1" in momd.wait_log("connected again", 5)

        late = double.add("3.qmp", name="vm3", uuid=UUIDS[3], state=GuestState(base_mib=1024, actual_mib=1024))
        momd.wait_for("a new socket's guest ballooned", lambda: late.state.actual_mib == 640, 30)
        assert momd.alive() and "Traceback" not in momd.log()
    finally:
        momd.close()
