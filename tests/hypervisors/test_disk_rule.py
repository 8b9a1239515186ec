"""The one disk rule (mom.core.disks) is what every path applies: the same table
of entries and limit values run against the simulator, libvirt (its test
driver), vdsm (the interface over a recording client, and its mapping of IO
policies to devices) and the IoTune controller's comparison."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mom.controllers.io_tune import _find as controller_find
from mom.core.disks import DiskLimitError, DiskLimits, find_disk, io_limit
from mom.core.errors import MomError
from mom.hypervisors.base import GuestInfo, HypervisorError
from mom.hypervisors.sim import SimHypervisor
from mom.hypervisors.vdsm import VdsmInterface, io_tune_section
from tests.hypervisors.disk_cases import MATCH_CASES, VALUE_CASES, entry

# -- the rule itself ---------------------------------------------------------------------

@pytest.mark.parametrize("limits, expected", VALUE_CASES)
def test_the_value_rule(limits: dict[str, Any], expected: Any) -> None:
    if isinstance(expected, dict):
        assert DiskLimits.from_entry({"name": "vda", "path": "/d", "current": limits}).limits == expected
    else:
        with pytest.raises(DiskLimitError, match=expected):
            DiskLimits.from_entry({"name": "vda", "path": "/d", "current": limits})


def test_vdsm_spelling_and_entries_without_limits() -> None:
    assert DiskLimits.from_entry({"name": "vda", "path": None, "ioTune": {"read_iops_sec": 7}}).limits == \
        {"read_iops_sec": 7}
    for bad in ({"name": "vda", "current": 5}, {"name": "vda"}, "vda", None):
        with pytest.raises(DiskLimitError, match="without limits"):
            DiskLimits.from_entry(bad)
    assert io_limit("vda", "write_bytes_sec", 10**12) == 10**12


@pytest.mark.parametrize("case, matches", MATCH_CASES)
def test_the_matching_rule(case: tuple[Any, Any], matches: bool) -> None:
    disks = [("vdb", "/other.img"), ("vda", "/the.img")]
    found = find_disk(disks, *entry(case, "/the.img"), ident=lambda d: d)
    assert found == (("vda", "/the.img") if matches else None)


def test_path_is_tried_on_every_disk_before_names() -> None:
    disks = [("vda", "/a.img"), ("vdb", "/b.img")]
    assert find_disk(disks, "vda", "/b.img", ident=lambda d: d) == ("vdb", "/b.img")


# -- the simulator -----------------------------------------------------------------------

@pytest.fixture
def sim(tmp_path: Path) -> Iterator[tuple[SimHypervisor, GuestInfo, str]]:
    hv = SimHypervisor(tree_dir=str(tmp_path / "tree"))
    try:
        guest = hv.list_guests()[0]
        yield hv, guest, hv.guest_io_tune(guest)[0]["path"]
    finally:
        hv.close()


@pytest.mark.parametrize("limits, expected", VALUE_CASES)
def test_sim_values(sim: Any, limits: dict[str, Any], expected: Any) -> None:
    hv, guest, path = sim
    before = hv.guest_io_tune(guest)[0]["current"]
    tune = [{"name": "vda", "path": path, "current": limits}]
    if isinstance(expected, dict):
        hv.set_io_tune(guest, tune)
        assert hv.guest_io_tune(guest)[0]["current"] == {**before, **expected}
    else:
        with pytest.raises(HypervisorError, match=expected):
            hv.set_io_tune(guest, tune)
        assert hv.guest_io_tune(guest)[0]["current"] == before  # nothing applied


@pytest.mark.parametrize("case, matches", MATCH_CASES)
def test_sim_matching(sim: Any, case: tuple[Any, Any], matches: bool) -> None:
    hv, guest, path = sim
    name, where = entry(case, path)
    tune = [{"name": name, "path": where, "current": {"read_iops_sec": 42}}]
    if matches:
        hv.set_io_tune(guest, tune)
        assert hv.guest_io_tune(guest)[0]["current"]["read_iops_sec"] == 42
    else:
        with pytest.raises(HypervisorError, match="no disk"):
            hv.set_io_tune(guest, tune)


# -- vdsm ----------------------------------------------------------------------------------

class RecordingClient:
    """Stands in for VdsmClient: records the calls, answers True."""

    down_message = "no connection"

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def call(self, method: str, params: dict[str, Any] | None = None, timeout: float | None = None) -> Any:
        self.calls.append((method, params or {}))
        return True

    def close(self) -> None:
        pass


@pytest.mark.parametrize("limits, expected", VALUE_CASES)
def test_vdsm_values(limits: dict[str, Any], expected: Any) -> None:
    client = RecordingClient()
    iface = VdsmInterface(client)  # type: ignore[arg-type]
    guest = GuestInfo(uuid="u-1", name="vm1")
    tune = [{"name": "vda", "path": "/rhev/disk-a", "current": limits}]
    if isinstance(expected, dict):
        iface.set_io_tune(guest, tune)
        assert client.calls == [("VM.setIoTune", {"vmID": "u-1", "tunables": [
            {"name": "vda", "path": "/rhev/disk-a", "ioTune": expected}]})]
    else:
        with pytest.raises(HypervisorError, match=expected):
            iface.set_io_tune(guest, tune)
        assert client.calls == []  # vdsm is not asked


@pytest.mark.parametrize("case, matches", MATCH_CASES)
def test_vdsm_policy_meets_its_device(case: tuple[Any, Any], matches: bool) -> None:
    name, where = entry(case, "/rhev/disk-a")
    section = io_tune_section({
        "policy": [{"name": name, "path": where, "guaranteed": {}, "maximum": {"read_iops_sec": 9}}],
        "current_values": [{"name": "vdb", "path": "/rhev/disk-b", "ioTune": {"read_iops_sec": 1}},
                           {"name": "vda", "path": "/rhev/disk-a", "ioTune": {"read_iops_sec": 2}}],
    })
    expected = [{"name": "vda", "path": "/rhev/disk-a", "guaranteed": {}, "maximum": {"read_iops_sec": 9},
                 "current": {"read_iops_sec": 2}}]
    assert section == (expected if matches else [])


# -- the IoTune controller's comparison ------------------------------------------------------

@pytest.mark.parametrize("case, matches", MATCH_CASES)
def test_controller_compares_with_the_same_disk(case: tuple[Any, Any], matches: bool) -> None:
    present = [{"name": "vdb", "path": "/b.img", "current": {"read_iops_sec": 1}},
               {"name": "vda", "path": "/the.img", "current": {"read_iops_sec": 2}}]
    found = controller_find(present, *entry(case, "/the.img"))
    assert found == ({"read_iops_sec": 2} if matches else None)


# -- libvirt (its test driver) ----------------------------------------------------------------

@pytest.fixture
def lv(tmp_path: Path) -> Iterator[tuple[Any, GuestInfo, str]]:
    pytest.importorskip("libvirt", reason="libvirt-python is not installed")
    from mom.hypervisors.libvirt import LibvirtHypervisor
    from tests.hypervisors.libvirt.lvtest import node_file

    h = LibvirtHypervisor(node_file(tmp_path / "node.xml", 1))
    try:
        yield h, h.list_guests()[0], "/guest/vm0.img"
    finally:
        h.close()


@pytest.mark.parametrize("limits, expected", VALUE_CASES)
def test_libvirt_values(lv: Any, limits: dict[str, Any], expected: Any) -> None:
    h, guest, path = lv
    before = h.guest_io_tune(guest)[0]["current"]
    tune = [{"name": "vda", "path": path, "current": limits}]
    if isinstance(expected, dict):
        h.set_io_tune(guest, tune)
        assert h.guest_io_tune(guest)[0]["current"] == {**before, **expected}
    else:
        with pytest.raises(HypervisorError, match=expected):
            h.set_io_tune(guest, tune)
        assert h.guest_io_tune(guest)[0]["current"] == before


@pytest.mark.parametrize("case, matches", MATCH_CASES)
def test_libvirt_matching(lv: Any, case: tuple[Any, Any], matches: bool) -> None:
    h, guest, path = lv
    name, where = entry(case, path)
    tune = [{"name": name, "path": where, "current": {"read_iops_sec": 42}}]
    if matches:
        h.set_io_tune(guest, tune)
        assert h.guest_io_tune(guest)[0]["current"]["read_iops_sec"] == 42
    else:
        with pytest.raises(HypervisorError, match="no disk"):
            h.set_io_tune(guest, tune)


def test_hypervisor_errors_are_mom_errors() -> None:
    assert issubclass(HypervisorError, MomError)
