"""vdsm's use of MOM, exactly: its configuration (policy set, collectors,
controllers), a unix-socket client with a 2-second timeout, getStatistics for
KSM statistics, and setNamedPolicy('01-parameters', ...) taking effect on the
next policy tick."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.momd import Momd
from tests.support.rpc import scenario, unix_client, write_config
from tests.support.shared_policies import SHARED_POLICIES

VDSM_POLICIES = SHARED_POLICIES / "vdsm"
PAGE_SIZE = 4096
MiB = 1 << 20


@pytest.fixture
def vdsm_momd(tmp_path: Path, sockdir: Path) -> Iterator[tuple[Momd, Path]]:
    if not VDSM_POLICIES.is_dir() or not list(VDSM_POLICIES.glob("*.policy")):
        pytest.skip(f"vdsm's policy set is not available at {VDSM_POLICIES}")
    policy_dir = tmp_path / "mom.d"
    policy_dir.mkdir()
    for p in VDSM_POLICIES.glob("*.policy"):
        shutil.copy(p, policy_dir)
    sock = sockdir / "mom-vdsm.sock"
    # Overcommitted: 3 guests of 2 GiB busy with 1.2 GiB each on a 4 GiB host, so
    # vdsm's KSM policy runs KSM while ksmEnabled, and its balloon policy shrinks
    # guests while balloonEnabled.
    cfg = write_config(tmp_path, rpc=str(sock), policy_dir=str(policy_dir),
                       scenario_text=scenario(guests=3, memory=4096, guest_max=2048, level=1200),
                       controllers="Balloon, KSM, CpuTune, IoTune", host_collectors="HostMemory, HostKSM, HostCpu",
                       guest_collectors="GuestMemoryOptional, GuestBalloonOptional, GuestCpuTune, GuestIoTuneOptional")
    m = Momd(cfg)
    try:
        m.wait_listening(unix_client(sock))
        yield m, sock
    finally:
        m.close()


def ksm_stats(mom: object) -> dict:
    """vdsm's MomClient.getKsmStats, step by step."""
    stats = mom.getStatistics()["host"]  # type: ignore[attr-defined]
    return {
        "ksmState": bool(stats["ksm_run"]),
        "ksmPages": stats["ksm_pages_to_scan"],
        "ksmMergeAcrossNodes": bool(stats["ksm_merge_across_nodes"]),
        "memShared": stats["ksm_pages_sharing"] * PAGE_SIZE // MiB,
        "ksmCpu": stats["ksmd_cpu_usage"],
    }


def _ticks_after(m: Momd, n: int, more: int) -> list[dict]:
    """The ticks that started after tick n's successor (a tick in flight may have seen the old policy)."""
    return m.wait_ticks(n + 1 + more)[n + 1:]


def test_vdsm_statistics_and_policy_parameters(vdsm_momd: tuple[Momd, Path]) -> None:
    m, sock = vdsm_momd
    mom = unix_client(sock, timeout=2)  # vdsm: UnixXmlRpcClient(sock_path, CONNECTION_TIMEOUT_SEC=2)
    assert mom.ping() is True  # MomClient.getStatus -> 'active'
    m.wait_ticks(3)
    ksm = ksm_stats(mom)
    assert isinstance(ksm["ksmPages"], int) and isinstance(ksm["ksmCpu"], (int, float))
    assert ksm["ksmMergeAcrossNodes"] is True
    names = set(mom.getNamedPolicies())
    assert names == {p.stem for p in VDSM_POLICIES.glob("*.policy")}

    # The defaults (00-defines): ksmEnabled 1, balloonEnabled 0: KSM runs on this host.
    m.wait_for("KSM running", lambda: ksm_stats(mom)["ksmState"], timeout=10)
    recs = m.records()
    assert recs[-1]["host_controls"]["ksm_run"] == 1

    # vdsm's setPolicyParameters: ksm off, ballooning on.
    assert mom.setNamedPolicy("01-parameters", "(set ksmEnabled False)\n(set balloonEnabled True)") is True
    n = len(m.records())
    after = _ticks_after(m, n, 3)
    for r in after:
        assert r["host_controls"]["ksm_run"] in (0, 2), r["host_controls"]  # stop (2: unmerge first)
    assert any("balloon_target" in c for r in after for c in r["guest_controls"].values())
    assert mom.getNamedPolicies()["01-parameters"] == "(set ksmEnabled False)\n(set balloonEnabled True)"
    m.wait_for("KSM stopped", lambda: mom.getStatistics()["host"]["ksm_run"] != 1, timeout=10)

    # The example: ksm on, ballooning off -- effective on the next tick.
    assert mom.setNamedPolicy("01-parameters", "(set ksmEnabled True)\n(set balloonEnabled False)") is True
    n = len(m.records())
    after = _ticks_after(m, n, 3)
    for r in after:
        assert r["host_controls"]["ksm_run"] == 1, r["host_controls"]
        current = {g["properties"]["name"]: g["statistics"][-1]["balloon_cur"] for g in r["guests"]}
        for name, controls in r["guest_controls"].items():
            target = controls.get("balloon_target")
            # With ballooning off, vdsm's policy only grows guests back toward their maximum.
            if target is not None:
                assert target >= current[name], (name, target, current[name])
    m.wait_for("KSM running again", lambda: ksm_stats(mom)["ksmState"], timeout=10)
    # The applied controls show in getRecentActions.
    recent = mom.getRecentActions(50)
    assert any(a["controller"] == "KSM" and a["control"] == "ksm_run" and a["new"] == 1 for a in recent)
