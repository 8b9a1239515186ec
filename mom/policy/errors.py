"""PolicyError: every fault of a policy, with where it is.

A policy error names the policy source, the line and column, and can render
the offending line with a caret under the column:

    02-balloon.policy:48:21: error: undefined variable 'host_free_percnt'
        (if (<= host_free_percnt pressure_critical)
                ^
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass


class Source:
    """A policy text and the name errors use for it (a file name or a policy name)."""

    __slots__ = ("name", "text", "_line_starts")

    def __init__(self, name: str, text: str) -> None:
        self.name = name
        self.text = text
        self._line_starts: list[int] | None = None

    def __repr__(self) -> str:
        return f"Source({self.name!r})"

    def line(self, lineno: int) -> str:
        lines = self.text.split("\n")  # as pos() counts lines: \f, \r, \u2028 do not end one
        return lines[lineno - 1].rstrip("\r") if 0 < lineno <= len(lines) else ""

    def pos(self, offset: int) -> "Pos":
        """The line and column (both from 1) of a character offset."""
        if self._line_starts is None:
            starts = [0]
            find = self.text.find
            i = find("\n")
            while i >= 0:
                starts.append(i + 1)
                i = find("\n", i + 1)
            self._line_starts = starts
        line = bisect.bisect_right(self._line_starts, offset)
        return Pos(self, line, offset - self._line_starts[line - 1] + 1)


@dataclass(frozen=True)
class Pos:
    source: Source
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.source.name}:{self.line}:{self.col}"


class PolicyError(Exception):
    """A parse, check or evaluation error in a policy."""

    def __init__(self, message: str, pos: Pos | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos
        self.calls: list[tuple[str, Pos]] = []  # innermost first

    def add_call(self, function: str, pos: Pos) -> None:
        """Record that the error happened inside a call of ``function`` at ``pos``."""
        if len(self.calls) < 128:
            self.calls.append((function, pos))

    def __str__(self) -> str:
        """One line: ``file:line:col: message``."""
        where = f"{self.pos}: " if self.pos else ""
        return f"{where}{self.message}"

    def render(self) -> str:
        """The full report: one line, the source line, a caret, and the call chain."""
        if self.pos is None:
            return f"error: {self.message}"
        text = self.pos.source.line(self.pos.line).expandtabs(1)
        out = [f"{self.pos}: error: {self.message}"]
        if text.strip():
            out.append(f"    {text}")
            out.append("    " + " " * (self.pos.col - 1) + "^")
        i = 0
        while i < len(self.calls):  # runs of the same call (recursion) are shown once
            function, pos = self.calls[i]
            j = i
            while j + 1 < len(self.calls) and self.calls[j + 1][0] == function and str(self.calls[j + 1][1]) == str(pos):
                j += 1
            times = f" ({j - i + 1} times)" if j > i else ""
            out.append(f"  in {function}, called at {pos}{times}")
            i = j + 1
            if len(out) >= 3 + 8:
                out.append("  ...")
                break
        return "\n".join(out)
