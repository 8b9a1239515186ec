"""KSM in the simulator follows the tunables written into its sysfs tree."""

from mom.hypervisors.sim import SimHypervisor


def ksm(tmp_path, name):
    return int((tmp_path / "sys/kernel/mm/ksm" / name).read_text())


def test_sharing_grows_with_run_1_and_unmerges_with_run_2(tmp_path, clock, small):
    hv = SimHypervisor(small, clock=clock, tree_dir=str(tmp_path))
    clock.now += 60
    hv.list_guests()
    assert ksm(tmp_path, "pages_sharing") == 0  # run=0 in the scenario
    free_before = hv.model.meminfo()["MemFree"]
    (tmp_path / "sys/kernel/mm/ksm/run").write_text("1\n")  # as MOM's KSM controller would
    clock.now += 30
    hv.list_guests()
    early = ksm(tmp_path, "pages_sharing")
    clock.now += 120
    hv.list_guests()
    late = ksm(tmp_path, "pages_sharing")
    assert 0 < early < late
    # Two guests: each merged page has one kept copy and one extra mapping.
    assert ksm(tmp_path, "pages_shared") == late
    assert ksm(tmp_path, "full_scans") >= 1
    assert hv.model.meminfo()["MemFree"] > free_before + late * 4 // 2
    hv.set_ksm_tune({"run": 2})
    clock.now += 1
    hv.list_guests()
    assert ksm(tmp_path, "pages_sharing") == 0
    assert ksm(tmp_path, "pages_shared") == 0


def test_pages_to_scan_sets_the_speed(tmp_path, clock, small):
    results = []
    for i, pages in enumerate((50, 1000)):
        hv = SimHypervisor(small, clock=clock, tree_dir=str(tmp_path / str(i)))
        hv.set_ksm_tune({"run": 1, "pages_to_scan": pages, "sleep_millisecs": 50})
        hv.model.advance(30)
        results.append(ksm(tmp_path / str(i), "pages_sharing"))
    assert results[1] > 3 * results[0] > 0


def test_half_written_control_file_keeps_old_value(tmp_path, clock, small):
    hv = SimHypervisor(small, clock=clock, tree_dir=str(tmp_path))
    hv.set_ksm_tune({"run": 1})
    hv.model.advance(5)
    (tmp_path / "sys/kernel/mm/ksm/run").write_text("")
    hv.model.advance(5)
    assert hv.model.ksm.run == 1


def test_stopped_ksm_decays_and_merge_across_nodes_unmerges(tmp_path, clock, small):
    hv = SimHypervisor(small, clock=clock, tree_dir=str(tmp_path))
    hv.set_ksm_tune({"run": 1, "pages_to_scan": 1000})
    hv.model.advance(60)
    peak = ksm(tmp_path, "pages_sharing")
    hv.set_ksm_tune({"run": 0})
    hv.model.advance(120)
    assert 0 < ksm(tmp_path, "pages_sharing") < peak
    hv.set_ksm_tune({"merge_across_nodes": 0})
    hv.model.advance(1)
    assert ksm(tmp_path, "pages_sharing") == 0
