"""Reader: tokens to a tree of Nodes, each knowing where it came from.

Node kinds: "num", "str", "sym" (value is the name; operators are symbols too),
"list" for (...) and [...], "block" for {...}. Nesting deeper than MAX_DEPTH is
an error, so no input can exhaust the interpreter's stack.
"""

from __future__ import annotations

from typing import Any

from mom.policy.errors import PolicyError, Pos, Source
from mom.policy.lexer import Token, tokenize

MAX_DEPTH = 100

_CLOSERS = {"(": ")", "[": "]", "{": "}"}


class Node:
    __slots__ = ("kind", "value", "items", "source", "offset")

    def __init__(self, kind: str, value: Any, source: Source, offset: int, items: tuple[Node, ...] = ()) -> None:
        self.kind = kind
        self.value = value
        self.items = items
        self.source = source
        self.offset = offset

    @property
    def pos(self) -> Pos:
        return self.source.pos(self.offset)

    @property
    def head(self) -> str | None:
        """The symbol a list starts with, if any."""
        if self.kind == "list" and self.items and self.items[0].kind == "sym":
            name: str = self.items[0].value
            return name
        return None

    def __repr__(self) -> str:
        if self.kind in ("list", "block"):
            o, c = ("(", ")") if self.kind == "list" else ("{", "}")
            return o + " ".join(map(repr, self.items)) + c
        return repr(self.value) if self.kind == "str" else str(self.value)


def parse(source: Source) -> list[Node]:
    """Parse a whole policy text into its top-level expressions."""
    tokens = tokenize(source)
    nodes: list[Node] = []
    i, n = 0, len(tokens)
    while i < n:
        node, i = _read(source, tokens, i, 0)
        nodes.append(node)
    return nodes


def _read(source: Source, tokens: list[Token], i: int, depth: int) -> tuple[Node, int]:
    kind, value, offset = tokens[i]
    closer = _CLOSERS.get(kind)
    if closer is None:
        if kind in (")", "]", "}"):
            raise PolicyError(f"unexpected {kind!r}", source.pos(offset))
        return Node(kind, value, source, offset), i + 1
    if depth >= MAX_DEPTH:
        raise PolicyError(f"expressions nested deeper than {MAX_DEPTH} levels", source.pos(offset))
    items: list[Node] = []
    i += 1
    n = len(tokens)
    while True:
        if i >= n:
            raise PolicyError(f"{kind!r} is never closed", source.pos(offset))
        k = tokens[i][0]
        if k == closer:
            break
        if k in (")", "]", "}"):
            p = source.pos(offset)
            raise PolicyError(f"{k!r} does not match {kind!r} at {p.line}:{p.col}", source.pos(tokens[i][2]))
        if k in _CLOSERS:
            node, i = _read(source, tokens, i, depth + 1)
        else:
            _, v, o = tokens[i]
            node = Node(k, v, source, o)
            i += 1
        items.append(node)
    return Node("block" if kind == "{" else "list", None, source, offset, tuple(items)), i + 1
