"""Entities (Host, Guests): fields, methods, controls, variables, IO tune, and Decisions."""

from __future__ import annotations

import copy

import pytest

from mom.policy.snapshot import EntityData, Snapshot, from_json

from .util import compiled, err, ev, ev1, guest, host, same, snapshot, where

HOST_ROWS = [
    {"mem_free": 100, "mem_available": 1000, "old_only": 5, "gaps": None, "none": None},
    {"mem_free": None, "mem_available": 1000, "gaps": 4, "none": None},
    {"mem_free": 200, "mem_available": 1000, "gaps": None, "none": None, "label": "x"},
]


def test_field_reads_the_newest_value():
    h = host(HOST_ROWS)
    assert ev("Host.mem_free Host.mem_available Host.label", h) == [200, 1000, "x"]


def test_declared_field_missing_from_the_newest_row_is_nil():
    assert ev1("Host.old_only", host(HOST_ROWS)) is None
    assert ev1("Host.gaps", host(HOST_ROWS)) is None


def test_undeclared_field_is_an_error():
    e = err("(+ 1\n   Host.nothing)", host(HOST_ROWS))
    assert "Host has no statistic 'nothing'" in e.message and where(e)[1:] == (2, 4)
    e = err("(with Guests g g.nothing)", host(), [guest("vm1", [{"a": 1}])])
    assert "guest vm1 has no statistic 'nothing'" in e.message and where(e)[1:] == (1, 16)


def test_no_history_at_all():
    assert "no statistic" in err("Host.mem_free", host([])).message


def test_stat_is_the_newest_value():
    h = host(HOST_ROWS)
    assert ev('(Host.Stat "mem_free") (Host.Stat "old_only")', h) == [200, None]
    assert "no statistic 'zzz'" in err('(Host.Stat "zzz")', h).message


def test_stat_avg_averages_the_non_nil_values_as_a_float():
    h = host(HOST_ROWS)
    assert same(ev1('(Host.StatAvg "mem_free")', h), 150.0)
    assert same(ev1('(Host.StatAvg "mem_available")', h), 1000.0)
    assert same(ev1('(Host.StatAvg "old_only")', h), 5.0)
    assert same(ev1('(Host.StatAvg "gaps")', h), 4.0)
    assert same(ev1('(Host.StatAvg "none")', h), 0.0)


def test_stat_avg_of_an_undeclared_or_non_numeric_statistic_is_an_error():
    h = host(HOST_ROWS)
    e = err('\n (Host.StatAvg "zzz")', h)
    assert "no statistic 'zzz'" in e.message and where(e)[1:] == (2, 3)
    assert "not a number" in err('(Host.StatAvg "label")', h).message


def test_prop():
    h = host(HOST_ROWS, props={"name": "h1", "cpus": 8})
    assert ev('(Host.Prop "name") (Host.Prop "cpus")', h) == ["h1", 8]
    assert "Host has no property 'x'" in err('(Host.Prop "x")', h).message


def test_control_last_write_wins_and_get_control():
    h = host()
    assert ev('(Host.GetControl "a") (Host.Control "a" 1) (Host.GetControl "a") (Host.Control "a" 2) '
              '(Host.GetControl "a")', h) == [None, None, 1, None, 2]
    assert h.controls == {"a": 2}


def test_setvar_getvar():
    h = host(variables={"kept": 3})
    assert ev('(Host.GetVar "k") (Host.SetVar "k" 4) (Host.GetVar "k") (Host.GetVar "kept")', h) == [None, None, 4, 3]


def test_guests_is_a_list_of_entities():
    gs = [guest("a", [{"mem": 1}]), guest("b", [{"mem": 2}])]
    assert ev1("(with Guests g g.mem)", host(), gs) == [1, 2]
    assert ev1('(with Guests g (g.Stat "mem"))', host(), gs) == [1, 2]


def test_only_two_dotted_parts():
    e = err("(defvar x\n  Host.mem_free.x)", host(HOST_ROWS))
    assert "only one '.'" in e.message and where(e)[1:] == (2, 3)
    assert "only one '.'" in err('(Host.a.Stat "x")', host(HOST_ROWS)).message


def test_field_of_an_undefined_object():
    e = err("(+ 1 nobody.mem)")
    assert "undefined variable 'nobody'" in e.message and where(e)[1:] == (1, 6)


def test_field_of_nil_and_of_a_number():
    e = err("(defvar x nil)\n(+ 1 x.foo)")
    assert "nil has no field 'foo'" in e.message and where(e)[1:] == (2, 6)
    e = err("(defvar x 5) (x.Stat 1)")
    assert "integer has no method 'Stat'" in e.message and where(e)[1:] == (1, 15)


def test_run_collects_decisions():
    snap = snapshot([{"mem_free": 1}], {"vm1": [{"m": 1}], "vm2": [{"m": 2}], "vm3": [{"m": 3}]})
    text = """
    (Host.Control "ksm_run" 1)
    (Host.SetVar "memo" 9)
    (with Guests g (if (> g.m 1) (g.Control "balloon_target" (* g.m 100)) 0))
    (with Guests g (if (== g.m 3) (g.SetVar "seen" 1) 0))
    """
    d = compiled(text).run(snap)
    assert d.ok and d.error is None
    assert d.host_controls == {"ksm_run": 1}
    assert d.guest_controls == {"vm2": {"balloon_target": 200}, "vm3": {"balloon_target": 300}}
    assert d.host_variables == {"memo": 9}
    assert d.guest_variables == {"vm3": {"seen": 1}}
    assert d.to_json() == {"ok": True, "error": None, "host_controls": {"ksm_run": 1},
                           "guest_controls": {"vm2": {"balloon_target": 200}, "vm3": {"balloon_target": 300}}}


def test_each_run_starts_with_empty_controls():
    snap = snapshot()
    p = compiled('(Host.GetControl "a") (Host.Control "a" 1)')
    for _ in range(2):
        assert p.evaluate(*snap.entities())[0] is None
        assert p.run(snap).host_controls == {"a": 1}


# -- IO tune ------------------------------------------------------------------------------------

def limits(scale):
    return {"total_bytes_sec": scale * 1000, "read_bytes_sec": scale * 600, "write_bytes_sec": scale * 400,
            "total_iops_sec": scale * 10, "read_iops_sec": scale * 6, "write_iops_sec": scale * 4}


def io_entry(name, cur=1, maximum=5):
    return {"name": name, "path": f"/img/{name}.qcow2", "guaranteed": limits(1), "maximum": limits(maximum),
            "current": limits(cur)}


def io_snapshot(entries=None):
    entries = entries if entries is not None else [io_entry("vda"), io_entry("vdb")]
    # vm2 declared io_tune in an older row only: it reads as nil
    return snapshot(None, {"vm1": [{"m": 1}, {"m": 2, "io_tune": entries}], "vm2": [{"m": 1, "io_tune": []}, {"m": 1}]})


def test_io_tune_entry_fields_and_two_step_map_reads():
    text = """
    (with Guests g (if (valid g.io_tune)
      (with g.io_tune tune {
        (defvar m tune.maximum)
        (defvar gu tune.guaranteed)
        (defvar c tune.current)
        (+ (+ tune.name " ") tune.path)
      }) nil))
    (with Guests g (if (valid g.io_tune)
      (with g.io_tune tune {
        (defvar m tune.maximum)
        (defvar gu tune.guaranteed)
        (defvar c tune.current)
        (+ (+ m.read_bytes_sec gu.total_iops_sec) c.write_iops_sec)
      }) nil))
    """
    p = compiled(text)
    h, gs = io_snapshot().entities()
    assert p.evaluate(h, gs) == [[["vda /img/vda.qcow2", "vdb /img/vdb.qcow2"], None], [[3014, 3014], None]]


def test_io_tune_maps_cannot_be_read_in_one_step():
    e = err("(with Guests g (with g.io_tune tune tune.maximum.read_bytes_sec))", *io_snapshot().entities())
    assert "only one '.'" in e.message


@pytest.mark.parametrize("method, key", [
    ("setTotalBytesSec", "total_bytes_sec"), ("setReadBytesSec", "read_bytes_sec"),
    ("setWriteBytesSec", "write_bytes_sec"), ("setTotalIopsSec", "total_iops_sec"),
    ("setReadIopsSec", "read_iops_sec"), ("setWriteIopsSec", "write_iops_sec"),
])
def test_each_setter_changes_its_current_key(method, key):
    text = f"""
    (with Guests g (if (valid g.io_tune)
      (with g.io_tune tune (if (== tune.name "vda") (tune.{method} 12345) 0)) 0))
    """
    d = compiled(text).run(io_snapshot())
    assert d.ok, d.error
    expected = io_entry("vda")
    expected["current"][key] = 12345
    assert d.guest_controls == {"vm1": {"io_tune": [expected]}}  # vdb unchanged: not reported


def test_only_changed_entries_are_reported():
    text = """
    (with Guests g (if (valid g.io_tune)
      (with g.io_tune tune {
        (defvar m tune.maximum)
        (defvar c tune.current)
        (tune.setReadBytesSec c.read_bytes_sec)          # the same value: no change
        (if (== tune.name "vdb") (tune.setTotalIopsSec m.total_iops_sec) 0)
      }) 0))
    """
    d = compiled(text).run(io_snapshot())
    expected = io_entry("vdb")
    expected["current"]["total_iops_sec"] = 50
    assert d.guest_controls == {"vm1": {"io_tune": [expected]}}


def test_setting_the_same_values_is_no_change():
    text = """
    (with Guests g (if (valid g.io_tune)
      (with g.io_tune tune {
        (defvar c tune.current)
        (defvar was c.total_bytes_sec)
        (tune.setTotalBytesSec 1)
        (tune.setTotalBytesSec was)                     # set back: unchanged in the end
        (tune.setWriteIopsSec (+ c.write_iops_sec 0.0)) # same number as a float
      }) 0))
    """
    d = compiled(text).run(io_snapshot())
    assert d.ok and d.guest_controls == {}


def test_io_tune_and_controls_together_like_vdsm():
    text = """
    (def set_io_limits (guest) {
      (with guest.io_tune tune {
        (defvar max_io tune.maximum)
        (tune.setTotalBytesSec max_io.total_bytes_sec)
        (tune.setReadBytesSec  max_io.read_bytes_sec)
        (tune.setWriteBytesSec max_io.write_bytes_sec)
        (tune.setTotalIopsSec max_io.total_iops_sec)
        (tune.setReadIopsSec  max_io.read_iops_sec)
        (tune.setWriteIopsSec max_io.write_iops_sec)
      })
    })
    (with Guests guest (if (valid guest.io_tune) (set_io_limits guest) 0))
    (with Guests guest (guest.Control "vcpu_quota" 5))
    """
    snap = io_snapshot([io_entry("vda", cur=5), io_entry("vdb", cur=1)])
    d = compiled(text).run(snap)
    expected = io_entry("vdb")
    expected["current"] = limits(5)
    assert d.guest_controls == {"vm1": {"vcpu_quota": 5, "io_tune": [expected]}, "vm2": {"vcpu_quota": 5}}


def test_io_tune_setter_rejects_non_numbers():
    e = err('(with Guests g (with g.io_tune tune (tune.setTotalBytesSec "lots")))', *io_snapshot().entities())
    assert "must be a whole number >= 0, not 'lots'" in e.message and where(e)[1:] == (1, 38)


def test_io_tune_from_a_json_snapshot_with_malformed_maps_does_not_crash():
    snap = from_json({"guests": [{"properties": {"name": "a"},
                                  "statistics": [{"io_tune": [{"name": "vda", "maximum": 5, "current": [1]}, 7]}]}]})
    p = compiled("(with Guests g (with g.io_tune t t.name))")
    assert p.evaluate(*snap.entities()) == [[["vda"]]]
    d = compiled("(with Guests g (with g.io_tune t { (defvar m t.maximum) m.total_bytes_sec }))").run(snap)
    assert not d.ok and "no key 'total_bytes_sec'" in d.error


def test_guest_without_a_name_property():
    snap = Snapshot(EntityData({}, [{"m": 1}]), [EntityData({}, [{"m": 1}])])
    d = compiled('(with Guests g (g.Control "x" 1))').run(snap)
    assert d.guest_controls == {"guest-0": {"x": 1}}


def test_the_snapshot_is_not_modified_by_a_run():
    snap = io_snapshot()
    before = copy.deepcopy(snap.to_json())
    compiled("(with Guests g (if (valid g.io_tune) (with g.io_tune t (t.setTotalBytesSec 1)) 0))").run(snap)
    assert snap.to_json() == before


def test_has_tells_a_provided_statistic_from_one_no_collector_provides():
    h = host(HOST_ROWS)
    # provided (even where its newest value is nil), and not provided at all
    assert ev('(Host.Has "mem_free") (Host.Has "old_only") (Host.Has "rss")', h) == [True, True, False]
    # the policy pattern: read an optional collector's field only where it exists
    text = '(defvar f "rss") (if (Host.Has f) (Host.Stat f) -1)'
    assert ev(text, h)[-1] == -1
    assert ev(text, host([{"rss": 7}]))[-1] == 7


# A name written in the policy ("x") is read and stored in place, a name held in a
# variable (n) through the method: both must give the same values and errors.
@pytest.mark.parametrize("text", [
    '(Host.SetVar "v" 3) (Host.GetVar "v") (Host.GetVar "unset") (Host.Stat "mem_free") (Host.Stat "old_only")'
    ' (Host.Has "mem_free") (Host.Has "nothing")',
    '(defvar a "v") (defvar b "unset") (defvar c "mem_free") (defvar d "old_only") (defvar e "nothing")'
    ' (Host.SetVar a 3) (Host.GetVar a) (Host.GetVar b) (Host.Stat c) (Host.Stat d) (Host.Has c) (Host.Has e)',
])
def test_named_reads_and_writes_match_the_methods(text: str) -> None:
    values = ev(text, host(HOST_ROWS))
    assert values[-7:] == [None, 3, None, 200, None, True, False]


@pytest.mark.parametrize(("call", "message", "col"), [
    ('(x.GetVar "v")', "integer has no method 'GetVar'", 15),
    ('(x.Stat "mem_free")', "integer has no method 'Stat'", 15),
    ('(x.Has "mem_free")', "integer has no method 'Has'", 15),
    ('(x.SetVar "v" 1)', "integer has no method 'SetVar'", 15),
    ('(Host.Stat "nothing")', "Host has no statistic 'nothing'", 15),
    ('(nobody.GetVar "v")', "undefined variable 'nobody'", 15),
])
def test_named_reads_and_writes_fail_as_the_methods_do(call: str, message: str, col: int) -> None:
    e = err("(defvar x 5) " + call, host(HOST_ROWS))
    assert message in e.message and where(e)[1:] == (1, col)


def test_named_stat_of_io_tune_wraps_the_entries() -> None:
    g = guest("vm1", [{"io_tune": [{"name": "vda", "path": "/d", "guaranteed": {}, "maximum": {}, "current": {}}]}])
    assert ev1('(with Guests g (count (g.Stat "io_tune")))', host(HOST_ROWS), [g]) == [1]
