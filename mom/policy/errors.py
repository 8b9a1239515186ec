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

from mom.core.errors import MomError


class Source:
    """A policy text and the name errors use for it (a file name or a policy name)."""

    __slots__ = ("name", "text", "_line_starts")

    def __init__(self, name: str, text: str) -> None:
        self.name = name
        self.text = text
        self._line_starts: list[int] | None = None

    def __repr__(self) -> str:
        return f"Source({self.name!r})"

    def _starts(self) -> list[int]:
        """Offsets where lines begin (only \n ends a line: \f, \r, \u2028 do not)."""
        if self._line_starts is None:
            starts = [0]
            find = self.text.find
            i = find("\n")
            while i >= 0:
                starts.append(i + 1)
                i = find("\n", i + 1)
            self._line_starts = starts
        return self._line_starts

    def line(self, lineno: int) -> str:
        starts = self._starts()  # a slice, not a split: rendering many findings stays linear
        if not 0 < lineno <= len(starts):
            return ""
        end = starts[lineno] - 1 if lineno < len(starts) else len(self.text)
        return self.text[starts[lineno - 1]:end].rstrip("\r")

    def pos(self, offset: int) -> Pos:
        """The line and column (both from 1) of a character offset."""
        starts = self._starts()
        line = bisect.bisect_right(starts, offset)
        return Pos(self, line, offset - starts[line - 1] + 1)


@dataclass(frozen=True)
class Pos:
    source: Source
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.source.name}:{self.line}:{self.col}"


class PolicyError(MomError):
    """A parse, check or evaluation error in a policy.

    ``calls`` is the call chain (innermost first); ``bindings`` the ``with``
    variables in force where it happened (innermost first), so an error in a
    loop names the guest; ``note`` says how it was found (a trial evaluation).
    """

    def __init__(self, message: str, pos: Pos | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos
        self.calls: list[tuple[str, Pos]] = []  # innermost first
        self.bindings: list[tuple[str, str, Pos]] = []  # (variable, value label, position of the with)
        self.note: str | None = None

    def add_call(self, function: str, pos: Pos) -> None:
        """Record that the error happened inside a call of ``function`` at ``pos``."""
        if len(self.calls) < 128:
            self.calls.append((function, pos))

    def add_binding(self, variable: str, value: object, pos: Pos) -> None:
        """Record that the error happened while a ``with`` at ``pos`` bound ``variable``."""
        if len(self.bindings) < 3:
            label = repr(value)
            self.bindings.append((variable, label if len(label) <= 60 else label[:57] + "...", pos))

    def __str__(self) -> str:
        """One line: ``file:line:col: message``."""
        where = f"{self.pos}: " if self.pos else ""
        return f"{where}{self.message}"

    def render(self, severity: str = "error") -> str:
        """The full report: one line, the source line, a caret, the call chain,
        the ``with`` bindings and the note."""
        if self.pos is None:
            out = [f"{severity}: {self.message}"]
        else:
            text = self.pos.source.line(self.pos.line).expandtabs(1)
            out = [f"{self.pos}: {severity}: {self.message}"]
            if text.strip():
                out.append(f"    {text}")
                out.append("    " + " " * (self.pos.col - 1) + "^")
        out.extend(self._chain())
        out.extend(f"  where {var} = {label} (with at {pos})" for var, label, pos in self.bindings)
        if self.note:
            out.append(f"  ({self.note})")
        return "\n".join(out)

    def _chain(self) -> list[str]:
        out: list[str] = []
        i = 0
        while i < len(self.calls):  # runs of the same call (recursion) are shown once
            function, pos = self.calls[i]
            j = i
            while (j + 1 < len(self.calls) and self.calls[j + 1][0] == function
                   and str(self.calls[j + 1][1]) == str(pos)):
                j += 1
            times = f" ({j - i + 1} times)" if j > i else ""
            out.append(f"  in {function}, called at {pos}{times}")
            i = j + 1
            if len(out) >= 8:
                out.append("  ...")
                break
        return out


@dataclass(frozen=True)
class Finding:
    """One result of checking a policy: an error (the policy is refused) or a warning."""

    severity: str  # "error" or "warning"
    error: PolicyError

    @property
    def pos(self) -> Pos | None:
        return self.error.pos

    @property
    def message(self) -> str:
        return self.error.message

    def __str__(self) -> str:
        """One line: ``file:line:col: severity: message``."""
        where = f"{self.pos}: " if self.pos else ""
        return f"{where}{self.severity}: {self.message}"

    def render(self) -> str:
        """Like PolicyError.render: the line, the source line, a caret, the chain."""
        return self.error.render(self.severity)


class PolicyRejected(PolicyError):
    """A policy refused by validation: the first error, with every finding.

    ``str()`` and the position are the first error's; ``render()`` shows every
    error (at most MAX_RENDERED) in full.
    """

    MAX_RENDERED = 10

    def __init__(self, findings: list[Finding]) -> None:
        errors = [f for f in findings if f.severity == "error"]
        first = errors[0].error
        super().__init__(first.message, first.pos)
        self.calls, self.bindings, self.note = first.calls, first.bindings, first.note
        self.findings = findings
        self.errors = errors

    def render(self, severity: str = "error") -> str:
        parts = [f.render() for f in self.errors[: self.MAX_RENDERED]]
        if len(self.errors) > self.MAX_RENDERED:
            parts.append(f"... and {len(self.errors) - self.MAX_RENDERED} more errors")
        return "\n".join(parts)
