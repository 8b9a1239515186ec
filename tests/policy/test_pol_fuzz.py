"""Property-based: the lexer, the reader and the compiler give a result or a PolicyError, never
any other exception, on arbitrary text and on text built from the language's own tokens."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mom.policy.errors import PolicyError, Source
from mom.policy.lexer import tokenize
from mom.policy.parser import parse
from mom.policy.policy import compile_policy

from .util import guest, host

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

FORMS = ["defvar", "set", "setq", "def", "defun", "let", "if", "with"]
BUILTIN_NAMES = ["+", "-", "*", "/", "<", ">", "<=", ">=", "==", "!=", "<<", ">>", "and", "or", "not", "min",
                 "max", "abs", "null", "valid", "debug"]
NAMES = ["x", "y", "f", "g", "n", "guest", "tune", "m", "Host", "Guests", "nil", "_x", "True"]
DOTTED = ["Host.mem_free", "Host.nothing", "guest.balloon_cur", "guest.io_tune", "tune.maximum", "m.total_bytes_sec",
          "Host.Stat", "Host.StatAvg", "Host.Control", "Host.GetControl", "Host.SetVar", "Host.GetVar", "Host.Prop",
          "guest.Control", "tune.setTotalBytesSec", "tune.setReadIopsSec", "Host.__class__", "a.b.c", "x.y"]
ODD = ["@", "017", "12abc", "'open", '"open', "0x", "1e", ".", "-", "$", "é", "\\", ";", "`", "0o9", "1.2.3"]
STRINGS = ['"mem_free"', "'balloon_cur'", '"a b"', '""', '"name"', r'"e\"sc"']


def atoms(names=NAMES + DOTTED + STRINGS + FORMS + BUILTIN_NAMES):
    numbers = st.one_of(
        st.integers(-10**6, 10**6).map(str),
        st.floats(allow_nan=False, allow_infinity=False, width=32).map(repr),
        st.integers(0, 4096).map(hex), st.integers(0, 4096).map(lambda i: f"0o{i:o}"),
        st.sampled_from([".3", "1e3", "10.0e3", "-0.05", "4096", "100000000"]))
    return st.one_of(numbers, st.sampled_from(names))


def expressions():
    """Mostly well-formed programs (forms with their arity, known names), some chaos: these reach
    the compiler and the evaluator, not just the reader."""
    var = st.sampled_from(["x", "y", "n", "guest", "tune", "m", "g"])
    fn = st.sampled_from(["f", "g", "h"])

    def extend(children):
        many = st.lists(children, min_size=1, max_size=4).map(" ".join)
        two = st.tuples(children, children).map(" ".join)
        return st.one_of(
            st.tuples(st.sampled_from(BUILTIN_NAMES[:12]), two).map(lambda t: f"({t[0]} {t[1]})"),
            st.tuples(st.sampled_from(["and", "or", "min", "max", "null", "valid", "debug"]), many).map(
                lambda t: f"({t[0]} {t[1]})"),
            st.tuples(st.sampled_from(["not", "abs"]), children).map(lambda t: f"({t[0]} {t[1]})"),
            st.tuples(children, children, children).map(lambda t: "(if {} {} {})".format(*t)),
            st.tuples(st.sampled_from(["defvar", "set", "setq"]), var, children).map(lambda t: "({} {} {})".format(*t)),
            st.tuples(st.sampled_from(["def", "defun"]), fn, st.lists(var, max_size=3, unique=True).map(" ".join),
                      children).map(lambda t: "({} {} ({}) {})".format(*t)),
            st.tuples(fn, st.lists(children, max_size=3).map(" ".join)).map(lambda t: "({} {})".format(*t)),
            st.tuples(var, children, many).map(lambda t: "(let (({} {})) {})".format(*t)),
            st.tuples(st.sampled_from(["Guests", "guest.io_tune", "Guests", "x"]), var, children).map(
                lambda t: "(with {} {} {})".format(*t)),
            many.map(lambda xs: "{" + xs + "}"),
            st.tuples(st.sampled_from(["Host", "guest", "g"]), st.sampled_from(["Stat", "StatAvg", "Prop", "GetControl",
                                                                                "GetVar"]),
                      st.sampled_from(STRINGS + ["x"])).map(lambda t: "({}.{} {})".format(*t)),
            st.tuples(st.sampled_from(["Host", "guest"]), st.sampled_from(["Control", "SetVar"]),
                      st.sampled_from(STRINGS), children).map(lambda t: "({}.{} {} {})".format(*t)),
            st.tuples(st.sampled_from(["setTotalBytesSec", "setReadIopsSec"]), children).map(
                lambda t: "(tune.{} {})".format(*t)),
            # chaos: any head, any arguments, brackets
            st.tuples(st.sampled_from(FORMS + BUILTIN_NAMES + DOTTED + ["f", "g"]),
                      st.lists(children, max_size=4)).map(lambda t: "[" + " ".join([t[0], *t[1]]) + "]"),
        )
    values = ["x", "y", "n", "m", "g", "guest", "tune", "nil", "Host", "Guests", "Host.mem_free", "guest.balloon_cur",
              "guest.io_tune", "tune.maximum", "tune.name", "g.mem_available", "m.total_bytes_sec"]
    return st.recursive(atoms(values + STRINGS + ["_x", "Host.nothing", "+"]), extend, max_leaves=40)


def token_soup():
    """Any sequence of the language's tokens and some foreign ones, joined by any separators."""
    token = st.one_of(atoms(), st.sampled_from(["(", ")", "{", "}", "[", "]", "# comment\n"] + ODD))
    sep = st.sampled_from([" ", "", "\n", "\t", "  "])
    return st.lists(st.tuples(token, sep), max_size=60).map(lambda ts: "".join(a + b for a, b in ts))


def entities():
    io = [{"name": "vda", "path": "/p", "guaranteed": {"total_bytes_sec": 1}, "maximum": {"total_bytes_sec": 9},
           "current": {"total_bytes_sec": 5}}]
    h = host([{"mem_free": 10, "mem_available": 100}, {"mem_free": 20, "mem_available": 100}])
    return h, [guest("vm1", [{"balloon_cur": 5, "io_tune": io}]),
               guest("vm2", [{"balloon_cur": 7, "io_tune": []}, {"balloon_cur": 7}])]


def check(text: str) -> None:
    source = Source("fuzz.policy", text)
    try:
        tokenize(source)
        parse(source)
    except PolicyError as e:
        assert e.pos is not None and e.pos.source is source
        assert str(e).startswith(f"fuzz.policy:{e.pos.line}:{e.pos.col}: ")
        e.render()
    try:
        policy = compile_policy([source], max_steps=2000, max_depth=30)
        policy.evaluate(*entities())
    except PolicyError as e:
        assert e.pos is not None, f"error without a position: {e}"
        assert str(e).startswith("fuzz.policy:")
        rendered = e.render()
        assert rendered.startswith(str(e).split(": ", 1)[0])


@SETTINGS
@given(st.text())
def test_arbitrary_text(text):
    check(text)


@SETTINGS
@given(st.text(alphabet="(){}[]\"'#\n .-+*/<>=!0123456789abcdefxoXOeE_HGt@$\\é"))
def test_text_from_the_languages_characters(text):
    check(text)


@SETTINGS
@given(token_soup())
def test_token_soup(text):
    check(text)


@SETTINGS
@given(st.lists(expressions(), min_size=1, max_size=6).map(
    lambda xs: "(defvar x 1) (defvar y 2.5) (defvar n 3) (defvar m nil) (defvar g Host)\n"
               "(with Guests guest (with (if (valid guest.io_tune) guest.io_tune Guests) tune {\n"
               + "\n".join(xs) + "}))"))
def test_well_formed_expressions(text):
    check(text)
