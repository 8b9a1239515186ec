"""Lexer and reader: tokens, literals, comments, and where syntax errors are reported."""

from __future__ import annotations

import pytest

from mom.policy.errors import PolicyError, Source
from mom.policy.lexer import tokenize
from mom.policy.parser import MAX_DEPTH, parse

from .util import compiled, err, ev, ev1, same, where


def kinds(text: str) -> list[tuple[str, object]]:
    return [(k, v) for k, v, _ in tokenize(Source("t", text))]


def test_tokens_and_offsets():
    toks = tokenize(Source("t", "(defvar x 1) {a [b]}"))
    assert [(k, v) for k, v, _ in toks] == [
        ("(", "("), ("sym", "defvar"), ("sym", "x"), ("num", 1), (")", ")"),
        ("{", "{"), ("sym", "a"), ("[", "["), ("sym", "b"), ("]", "]"), ("}", "}")]
    assert [o for _, _, o in toks] == [0, 1, 8, 10, 11, 13, 14, 16, 17, 18, 19]


def test_operators_are_symbols():
    assert kinds("+ - * / < > <= >= == != << >>") == [
        ("sym", op) for op in ("+", "-", "*", "/", "<", ">", "<=", ">=", "==", "!=", "<<", ">>")]


@pytest.mark.parametrize("text, value", [
    ("42", 42), ("-7", -7), ("0", 0),
    (".3", 0.3), ("1e3", 1000.0), ("10.0e3", 10000.0), ("-0.05", -0.05), ("2.", 2.0), ("1E-2", 0.01),
    ("0x1F", 31), ("0X1f", 31), ("0o17", 15), ("-0x10", -16),
    ('"double quoted"', "double quoted"), ("'single quoted'", "single quoted"),
    ('"it\'s"', "it's"), ("'say \"hi\"'", 'say "hi"'), (r'"a\"b"', 'a"b'), (r"'a\'b'", "a'b"),
    (r'"tab\there"', "tab\there"), ('""', ""), ("nil", None),
])
def test_literals(text, value):
    assert same(ev1(text), value)


def test_number_types():
    values = ev("1 1.0 .5 1e3 0x1F 0o17")
    assert [type(v) for v in values] == [int, float, float, float, int, int]


def test_comments_run_to_end_of_line():
    assert ev("# a comment (with parens\n1 # trailing ) comment\n2#x\n(+ 1 2)# after a paren") == [1, 2, 3]
    assert ev1('"# not a comment"') == "# not a comment"
    assert ev("") == [] and ev("# only a comment") == [] and ev("  \n\t\n") == []


def test_brackets_are_lists_and_braces_blocks():
    (node,) = parse(Source("t", "[+ 1 2]"))
    assert node.kind == "list" and node.head == "+"
    (block,) = parse(Source("t", "{ 1 (+ 1 1) }"))
    assert block.kind == "block" and len(block.items) == 2
    assert ev1("[+ 1 2]") == 3
    assert ev1("{ 1 2 (+ 1 2) }") == 3
    assert ev1("{}") is None


def test_node_positions():
    nodes = parse(Source("t", "1\n  (f\n    x)"))
    assert (nodes[1].pos.line, nodes[1].pos.col) == (2, 3)
    assert (nodes[1].items[1].pos.line, nodes[1].items[1].pos.col) == (3, 5)


def test_nesting_up_to_the_limit_is_fine():
    depth = MAX_DEPTH - 1
    text = "(+ 1 " * depth + "0" + ")" * depth
    assert ev1(text) == depth


# -- syntax errors: every one a PolicyError at the exact line and column ------------------------

@pytest.mark.parametrize("text, line, col, message", [
    # the original silently dropped everything after an unknown character
    ("(+ 1 2) @", 1, 9, "unexpected character '@'"),
    ("(defvar x 1)\n  (+ x 2) @ (boom)", 2, 11, "unexpected character '@'"),
    ("(+ 1 2) $x", 1, 9, "unexpected character '$'"),
    ("(defvar a;b 1)", 1, 9, "unexpected character ';' in name 'a;b'"),
    ("(+ 1 2", 1, 1, "'(' is never closed"),
    ("(defvar x 1)\n(+ x\n  (- 2 1)", 2, 1, "'(' is never closed"),
    ("{ 1 2", 1, 1, "'{' is never closed"),
    ("(+ 1 2]", 1, 7, "']' does not match '(' at 1:1"),
    ("(if 1\n  {2 3)\n 4)", 2, 7, "')' does not match '{' at 2:3"),
    ("1)", 1, 2, "unexpected ')'"),
    ("(+ 1 1)\n}", 2, 1, "unexpected '}'"),
    ('(debug "abc)', 1, 8, "unterminated string"),
    ("(defvar s 'abc\n)", 1, 11, "unterminated string"),
    ("(+ 12abc 1)", 1, 4, "malformed number '12abc'"),
    ("12abc", 1, 1, "malformed number '12abc'"),
    ("(+ 1 017)", 1, 6, "malformed number '017'"),
    ("\n\n   1e", 3, 4, "malformed number '1e'"),
    ("0x", 1, 1, "malformed number '0x'"),
    ("0o8", 1, 1, "malformed number '0o8'"),
    ("1.2.3", 1, 1, "malformed number '1.2.3'"),
    ("(+ -1x 1)", 1, 4, "malformed number '-1x'"),
])
def test_syntax_error_positions(text, line, col, message):
    e = err(text)
    assert where(e) == ("t.policy", line, col)
    assert message in e.message
    assert str(e) == f"t.policy:{line}:{col}: {e.message}"


def test_octal_message_suggests_0o():
    assert "0o17" in err("017").message


def test_syntax_error_stops_everything():
    """Nothing of a policy with a syntax error runs, not even what comes before the error."""
    with pytest.raises(PolicyError):
        compiled("(Host.Control 'a' 1)\n(+ 1 2) @")


@pytest.mark.parametrize("text, col", [("é", 1), ("(+ 1 aé)", 6), ("(+ 1 2) x\u00a0y", 9), ("名前", 1)])
def test_non_ascii_is_an_error_not_a_crash(text, col):
    e = err(text)
    assert where(e)[1:] == (1, col)


def test_huge_integer_literal_is_a_policy_error():
    e = err("(+ 1 " + "9" * 5000 + ")")
    assert where(e)[1:] == (1, 6)


@pytest.mark.parametrize("opener, closer", [("(", ")"), ("[", "]"), ("{", "}")])
def test_deep_nesting_is_a_policy_error_not_recursion_error(opener, closer):
    text = (opener + "+ 1 ") * 5000 + "1" + closer * 5000
    e = err(text)
    assert f"nested deeper than {MAX_DEPTH}" in e.message
    assert where(e)[1:] == (1, 5 * MAX_DEPTH + 1)  # the first opener too deep


def test_deep_unclosed_nesting():
    e = err("(" * 100000)
    assert "nested deeper" in e.message


def test_render_shows_line_and_caret():
    e = err("(defvar x 1)\n  (+ x 2) @ (boom)")
    assert e.render() == (
        "t.policy:2:11: error: unexpected character '@'\n"
        "      (+ x 2) @ (boom)\n"
        "              ^")


def test_render_counts_lines_like_positions():
    """A form feed or carriage return inside a line must not shift the line render() shows."""
    e = err('1\x0c2\n(+ 1 "a")')
    assert where(e)[1:] == (2, 2)
    assert e.render().splitlines()[1] == '    (+ 1 "a")'
    e = err('1\r\n(+ 1 "a")\r\n')
    assert where(e)[1:] == (2, 2)
    assert e.render().splitlines()[1:] == ['    (+ 1 "a")', "     ^"]


def test_render_with_tabs_keeps_caret_under_column():
    e = err('\t(+ 1 "a")')
    assert where(e)[1:] == (1, 3)
    lines = e.render().splitlines()
    assert lines[1] == '     (+ 1 "a")'
    assert lines[2].index("^") == lines[1].index("+")
