"""Tokenizer for MOM's policy language.

Tokens: ( ) { } [ ], numbers (integers, floats such as .3 1e3 10.0e3 -0.05,
hex 0x1F, octal 0o17), strings in double or single quotes, symbols (letters,
digits, _ - and . after a first letter or _), operators (+ - * / < > <= >= == !=
<< >>). A # starts a comment that runs to the end of the line. Anything else is
an error, reported with its position: the original silently dropped the rest of
the text.

A token is a tuple (kind, value, offset); positions are worked out from the
offset only when an error needs one.
"""

from __future__ import annotations

import re

from mom.policy.errors import PolicyError, Source

Token = tuple[str, object, int]  # kind, value, offset

_END = r"(?=[\s(){}\[\]#\"']|\Z)"  # what may follow a number or a name directly

_TOKEN = re.compile(
    rf"""
    (?P<space>\s+)
  | (?P<comment>\#[^\n]*)
  | (?P<paren>[(){{}}\[\]])
  | (?P<num>-?(?:0[xX][0-9A-Fa-f]+|0[oO][0-7]+
        |(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?
        |[0-9]+(?:[eE][+-]?[0-9]+)?){_END})
  | (?P<sym>[A-Za-z_][A-Za-z0-9_.\-]*{_END})
  | (?P<op>(?:<<|>>|<=|>=|==|!=|[-+*/<>]){_END})
  | (?P<str>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
    """,
    re.VERBOSE,
)

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'"}


def _number(text: str) -> int | float | None:
    body = text.lstrip("-")
    if body[:2] in ("0x", "0X", "0o", "0O"):
        return int(text, 0)
    if "." in body or "e" in body or "E" in body:
        return float(text)
    if len(body) > 1 and body[0] == "0":
        return None  # 017: ambiguous, the original read it as octal
    return int(text)


def _string(text: str) -> str:
    body = text[1:-1]
    if "\\" not in body:
        return body
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), "\\" + m.group(1)), body)


def _bad_token(source: Source, i: int) -> PolicyError:
    """Explain why no token starts at offset i."""
    text = source.text
    ch = text[i]
    if ch in "\"'":
        return PolicyError("unterminated string", source.pos(i))
    j = i
    while j < len(text) and not text[j].isspace() and text[j] not in "(){}[]#\"'":
        j += 1
    word = text[i:j]
    if ch.isdigit() or (ch in "-." and len(word) > 1 and (word[1].isdigit() or word[1] == ".")):
        return PolicyError(f"malformed number {word!r}", source.pos(i))
    if ch.isalpha() or ch == "_":
        bad = next((c for c in word if not (c.isascii() and (c.isalnum() or c in "_.-"))), ch)
        return PolicyError(f"unexpected character {bad!r} in name {word!r}", source.pos(i))
    return PolicyError(f"unexpected character {ch!r}", source.pos(i))


def tokenize(source: Source) -> list[Token]:
    """The tokens of ``source``; raises PolicyError at the first bad character."""
    text = source.text
    tokens: list[Token] = []
    append = tokens.append
    end = 0
    # Pattern.scanner (undocumented, absent from typeshed): each match starts where the last ended.
    for m in iter(_TOKEN.scanner(text).match, None):  # type: ignore[attr-defined]
        kind = m.lastgroup
        end = m.end()
        if kind == "space" or kind == "comment":
            continue
        value = m.group()
        if kind == "paren":
            append((value, value, m.start()))
        elif kind == "sym" or kind == "op":
            append(("sym", value, m.start()))
        elif kind == "num":
            try:
                number = _number(value)
            except ValueError:  # more digits than Python converts
                raise PolicyError(f"number too long: {value[:20]}...", source.pos(m.start())) from None
            if number is None:
                raise PolicyError(f"malformed number {value!r}: write octal as 0o{value.lstrip('-')[1:]}",
                                  source.pos(m.start()))
            append(("num", number, m.start()))
        else:
            append(("str", _string(value), m.start()))
    if end < len(text):
        raise _bad_token(source, end)
    return tokens
