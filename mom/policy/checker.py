"""Static checks of a policy without running it (part of validation, and what
`momctl policy check` reports).

Finds, as errors:
- unknown variables and functions, wrong arity of user functions and of the
  built-ins a policy may replace with its own (runtime.LATER_BUILTINS);
- statistic names that no collector provides (likely typos such as
  ``guest.ballon_cur``), with a suggestion, when the known fields are given;
- control names that no controller acts on (``"balloon_targt"``), with a
  suggestion, when the known controls are given.

and as warnings: a free variable inside a function body (with dynamic scoping
a caller may bind it: vdsm's ``guest_qos`` reads ``guest`` from the caller's
``with``), and a control of a controller that is not enabled (policy sets move
between hosts). Syntax and structure errors are the compiler's (validate.py).

The walk is linear in the size of the policy: scopes are counted bindings that
are added and removed, never copied, and suggestions for large name sets use
an index of one-character deletions instead of comparing with every name.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from mom.core.disks import IO_KEYS
from mom.policy.compiler import builtin_arity_error
from mom.policy.errors import Finding, PolicyError
from mom.policy.parser import Node
from mom.policy.runtime import ALL_METHODS, BUILTINS, IO_ENTRY_FIELDS, LATER_BUILTINS, SPECIAL_FORMS

if TYPE_CHECKING:
    from mom.policy.validate import PolicyChecks

_SCOPE_FORMS = ("def", "defun", "let", "with")
_MISSING = object()


class Suggester:
    """'did you mean' for a set of names, in time independent of the set's size
    for large sets: candidates one edit away are found through an index of the
    names with one character deleted, then ranked by difflib."""

    SMALL = 200  # up to this many names, difflib compares with each

    def __init__(self, names: Iterable[str]) -> None:
        self.names = sorted(set(names))
        self._index: dict[str, list[str]] | None = None
        self._cache: dict[str, str | None] = {}

    @staticmethod
    def _deletions(word: str) -> set[str]:
        return {word} | {word[:i] + word[i + 1:] for i in range(len(word))}

    def _candidates(self, name: str) -> list[str]:
        if len(self.names) <= self.SMALL:
            return self.names
        if self._index is None:
            index: dict[str, list[str]] = {}
            for n in self.names:
                for key in self._deletions(n):
                    index.setdefault(key, []).append(n)
            self._index = index
        found: set[str] = set()
        for key in self._deletions(name):
            found.update(self._index.get(key, ()))
        return sorted(found)

    def __call__(self, name: str) -> str | None:
        if name not in self._cache:
            close = difflib.get_close_matches(name, self._candidates(name), n=1, cutoff=0.75)
            self._cache[name] = close[0] if close else None
        return self._cache[name]


def did_you_mean(suggestion: str | None) -> str:
    return f" (did you mean {suggestion!r}?)" if suggestion else ""


class StaticChecker:
    """One pass over compiled-clean forms; ``findings`` collects what it finds."""

    def __init__(self, checks: PolicyChecks) -> None:
        self.host_fields = checks.host_fields
        self.guest_fields = checks.guest_fields
        self.any_fields: frozenset[str] | None = None
        if self.host_fields is not None and self.guest_fields is not None:
            self.any_fields = self.host_fields | self.guest_fields | set(IO_ENTRY_FIELDS) | set(IO_KEYS)
        self.controls: dict[str, Mapping[str, str] | None] = {"host": checks.host_controls,
                                                             "guest": checks.guest_controls}
        self.enabled = checks.enabled_controllers
        self.findings: list[Finding] = []
        self.functions: dict[str, set[int]] = {}
        self.globals: set[str] = {"Host", "Guests"}
        self.local: dict[str, int] = {}  # names bound by the scopes being walked -> how many times
        self.kinds: dict[str, str | None] = {}  # variable -> "host", "guest" or None (not known)
        self.fn: str | None = None  # the function whose body is being walked
        self.warned: set[tuple[str, ...]] = set()  # one warning for each (function, name) or control
        self._suggesters: dict[str, Suggester] = {}

    def add(self, node: Node, severity: str, message: str) -> None:
        self.findings.append(Finding(severity, PolicyError(message, node.pos)))

    def check(self, forms: list[Node]) -> list[Finding]:
        for node in forms:
            self.collect_defs(node)
        self.globals |= self.scope_defvars(forms)
        for node in forms:
            self.walk(node)
        return self.findings

    # -- pass 1: what is defined -------------------------------------------------------
    def collect_defs(self, root: Node) -> None:
        stack = [root]
        while stack:
            node = stack.pop()
            if node.kind in ("list", "block"):
                if node.head in ("def", "defun") and len(node.items) == 4 and node.items[2].kind == "list":
                    self.functions.setdefault(node.items[1].value, set()).add(len(node.items[2].items))
                stack.extend(node.items)

    @staticmethod
    def scope_defvars(nodes: Iterable[Node]) -> set[str]:
        """Names that defvar binds in the scope these nodes run in (through if and
        blocks, not into forms that open their own scope)."""
        names: set[str] = set()
        stack = list(nodes)
        while stack:
            node = stack.pop()
            if node.kind not in ("list", "block"):
                continue
            head = node.head if node.kind == "list" else None
            if head in _SCOPE_FORMS:
                if head == "with" and len(node.items) == 4:
                    stack.append(node.items[1])  # the list expression runs in this scope
                continue
            if head == "defvar" and len(node.items) == 3 and node.items[1].kind == "sym":
                names.add(node.items[1].value)
            stack.extend(node.items[1:] if head else node.items)
        return names

    # -- scopes: counted bindings, added and removed (never copied) --------------------
    def bind(self, names: Iterable[str]) -> list[str]:
        bound = list(names)
        for n in bound:
            self.local[n] = self.local.get(n, 0) + 1
        return bound

    def unbind(self, names: list[str]) -> None:
        for n in names:
            count = self.local[n] - 1
            if count:
                self.local[n] = count
            else:
                del self.local[n]

    def set_kind(self, name: str, kind: str | None) -> object:
        old = self.kinds.get(name, _MISSING)
        self.kinds[name] = kind
        return old

    def restore_kind(self, name: str, old: object) -> None:
        if old is _MISSING:
            del self.kinds[name]
        else:
            self.kinds[name] = old  # type: ignore[assignment]

    def kind_of(self, name: str) -> str | None:
        kind = self.kinds.get(name, _MISSING)
        if kind is _MISSING:
            return "host" if name == "Host" else None
        return kind  # type: ignore[return-value]

    def is_bound(self, name: str) -> bool:
        return name in self.local or name in self.globals

    # -- pass 2: uses --------------------------------------------------------------------
    def walk(self, node: Node) -> None:
        if node.kind == "sym":
            self.symbol(node)
            return
        if node.kind == "block":
            for item in node.items:
                self.walk(item)
            return
        if node.kind != "list" or not node.items:
            return
        head, args = node.items[0].value, node.items[1:]
        if head in ("def", "defun"):
            self.function_body(args)
        elif head == "let":
            self.let(args)
        elif head == "with":
            self.with_(args)
        elif head in ("defvar", "set", "setq"):
            if head != "defvar" and not self.is_bound(args[0].value):
                self.unbound(args[0], args[0].value, f"{head} of undefined variable")
            self.walk(args[1])
        elif head in LATER_BUILTINS:
            self.later_builtin(node, head, args)
        elif head in ("if", "and", "or") or head in BUILTINS:
            for a in args:
                self.walk(a)
        elif "." in head:
            self.method_call(node, head, args)
        else:
            self.call(node, head, args)

    def function_body(self, args: tuple[Node, ...]) -> None:
        # A body sees the globals, its parameters and its own defvars (and, at run
        # time, its callers' variables: the free ones are warnings).
        saved = (self.local, self.kinds, self.fn)
        self.local, self.kinds, self.fn = {}, {}, args[0].value
        self.bind(p.value for p in args[1].items)
        self.bind(self.scope_defvars([args[2]]))
        self.walk(args[2])
        self.local, self.kinds, self.fn = saved

    def let(self, args: tuple[Node, ...]) -> None:
        bound: list[str] = []
        kinds: list[tuple[str, object]] = []
        for b in args[0].items:
            self.walk(b.items[1])
            name = b.items[0].value
            bound += self.bind([name])
            kinds.append((name, self.set_kind(name, None)))
        bound += self.bind(self.scope_defvars(args[1:]))
        for expr in args[1:]:
            self.walk(expr)
        self.unbind(bound)
        for name, old in reversed(kinds):
            self.restore_kind(name, old)

    def with_(self, args: tuple[Node, ...]) -> None:
        self.walk(args[0])
        var = args[1].value
        over_guests = args[0].kind == "sym" and args[0].value == "Guests"
        old = self.set_kind(var, "guest" if over_guests else None)
        bound = self.bind([var]) + self.bind(self.scope_defvars([args[2]]))
        self.walk(args[2])
        self.unbind(bound)
        self.restore_kind(var, old)

    def method_call(self, node: Node, head: str, args: tuple[Node, ...]) -> None:
        obj, method = head.split(".")
        self.variable(node.items[0], obj)
        if method in ("Stat", "StatAvg") and args and args[0].kind == "str":
            self.field(args[0], args[0].value, self.kind_of(obj))
        elif method in ("Control", "GetControl") and args and args[0].kind == "str":
            self.control(args[0], args[0].value, self.kind_of(obj), method == "Control")
        for a in args:
            self.walk(a)

    def later_builtin(self, node: Node, head: str, args: tuple[Node, ...]) -> None:
        """A built-in the policy may replace with its own function (see
        runtime.LATER_BUILTINS); its arity is checked here, not by the compiler."""
        if head in self.functions:
            self.call(node, head, args)
            return
        wrong = builtin_arity_error(head, len(args))
        if wrong:
            self.add(node, "error", wrong)
        for a in args:
            self.walk(a)

    def call(self, node: Node, head: str, args: tuple[Node, ...]) -> None:
        arities = self.functions.get(head)
        if arities is None:
            hint = did_you_mean(self.suggester("functions")(head))
            self.add(node.items[0], "error", f"undefined function {head!r}{hint}")
        elif len(args) not in arities:
            want = " or ".join(str(a) for a in sorted(arities))
            self.add(node, "error", f"{head} takes {want} argument{'s' if want != '1' else ''}, got {len(args)}")
        for a in args:
            self.walk(a)

    def symbol(self, node: Node) -> None:
        name = node.value
        if name == "nil":
            return
        if "." in name:
            obj, attr = name.split(".")
            self.variable(node, obj)
            if attr in ALL_METHODS:
                self.add(node, "error", f"method {attr} used as a value; call it: ({name} ...)")
            else:
                self.field(node, attr, self.kind_of(obj))
            return
        self.variable(node, name)

    def variable(self, node: Node, name: str) -> None:
        if not self.is_bound(name):
            self.unbound(node, name, "undefined variable")

    def unbound(self, node: Node, name: str, what: str) -> None:
        if self.fn is not None:
            if (self.fn, name) in self.warned:
                return
            self.warned.add((self.fn, name))
            self.add(node, "warning", f"{name!r} is not defined in function {self.fn}: it must be bound by "
                                      f"every caller (dynamic scope)")
        else:
            suggestion = self.suggester("variables")(name)
            if suggestion is None and self.local:
                close = difflib.get_close_matches(name, list(self.local), n=1, cutoff=0.75)
                suggestion = close[0] if close else None
            self.add(node, "error", f"{what} {name!r}{did_you_mean(suggestion)}")

    def field(self, node: Node, name: str, kind: str | None) -> None:
        known = {"host": self.host_fields, "guest": self.guest_fields}.get(kind or "", self.any_fields)
        if known is None or name in known:
            return
        who = {"host": "the host", "guest": "a guest"}.get(kind or "", "any entity")
        hint = did_you_mean(self.suggester(f"fields-{kind}", known)(name))
        self.add(node, "error", f"no collector provides statistic {name!r} for {who}{hint}")

    def control(self, node: Node, name: str, kind: str | None, setting: bool) -> None:
        host, guest = self.controls["host"], self.controls["guest"]
        if kind in ("host", "guest"):
            owners = self.controls[kind]
            other_kind = "guest" if kind == "host" else "host"
            other = self.controls[other_kind]
        else:
            owners = {**host, **guest} if host is not None and guest is not None else None
            other_kind, other = "", None
        if owners is None:
            return
        owner = owners.get(name)
        if owner is None:
            if other is not None and name in other:
                self.add(node, "error", f"{name!r} is a {other_kind} control: no controller acts on it "
                                        f"for {'the host' if kind == 'host' else 'a guest'}")
            else:
                hint = did_you_mean(self.suggester(f"controls-{kind}", owners)(name))
                self.add(node, "error", f"unknown control {name!r}: no controller acts on it{hint}")
        elif setting and self.enabled is not None and owner not in self.enabled:
            if ("control", name) not in self.warned:
                self.warned.add(("control", name))
                self.add(node, "warning", f"controller {owner} is not enabled: {name} has no effect")

    def suggester(self, key: str, names: Iterable[str] | None = None) -> Suggester:
        s = self._suggesters.get(key)
        if s is None:
            if key == "variables":
                names = self.globals
            elif key == "functions":
                names = list(self.functions) + [n for n in BUILTINS if n[0].isalpha()] + list(SPECIAL_FORMS)
            s = self._suggesters[key] = Suggester(names or ())
        return s


def check_forms(forms: list[Node], checks: PolicyChecks) -> list[Finding]:
    """The static findings for forms that compiled, in the order they run."""
    return StaticChecker(checks).check(forms)
