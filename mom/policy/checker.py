"""Static checks of a policy without running it (`momctl policy check`).

Reports, as ``file:line:col: error|warning: message``:
- syntax and structure errors (everything the compiler rejects);
- unknown variables and functions, wrong arity of user functions;
- statistic names that no collector provides (likely typos such as
  ``guest.ballon_cur``), with a suggestion.

A free variable inside a function body is only a warning: with dynamic scoping
a caller may bind it (vdsm's ``guest_qos`` reads ``guest`` from the caller's
``with``). Sources are checked together, in order, as they are deployed.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Iterable

from mom.policy.compiler import Compiler, Machine, NAME
from mom.policy.errors import Pos, PolicyError, Source
from mom.policy.parser import Node, parse
from mom.policy.runtime import ALL_METHODS, BUILTINS, IO_ENTRY_FIELDS, IO_KEYS

_SCOPE_FORMS = ("def", "defun", "let", "with")


@dataclass(frozen=True)
class Finding:
    pos: Pos | None
    severity: str  # "error" or "warning"
    message: str

    def __str__(self) -> str:
        where = f"{self.pos}: " if self.pos else ""
        return f"{where}{self.severity}: {self.message}"


def known_fields() -> tuple[frozenset[str], frozenset[str]]:
    """(host fields, guest fields) that MOM's collectors provide."""
    import mom.collectors  # noqa: F401  (fills the registry)
    from mom.collectors.base import REGISTRY

    host: set[str] = set()
    guest: set[str] = set()
    for cls in REGISTRY.values():
        (host if cls.scope == "host" else guest).update(cls.fields())
    return frozenset(host), frozenset(guest)


class _Checker:
    def __init__(self, host_fields: frozenset[str], guest_fields: frozenset[str]) -> None:
        self.host_fields = host_fields
        self.guest_fields = guest_fields
        self.any_fields = host_fields | guest_fields | set(IO_ENTRY_FIELDS) | set(IO_KEYS)
        self.findings: list[Finding] = []
        self.functions: dict[str, set[int]] = {}
        self.globals: set[str] = {"Host", "Guests"}
        self.warned: set[tuple[str, str]] = set()  # (function, name): one warning each

    def add(self, node: Node, severity: str, message: str) -> None:
        self.findings.append(Finding(node.pos, severity, message))

    # -- pass 1: what is defined -------------------------------------------------
    def collect_defs(self, node: Node) -> None:
        if node.kind in ("list", "block"):
            head = node.head
            if head in ("def", "defun") and len(node.items) == 4 and node.items[2].kind == "list":
                self.functions.setdefault(node.items[1].value, set()).add(len(node.items[2].items))
            for item in node.items:
                self.collect_defs(item)

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

    # -- pass 2: uses ----------------------------------------------------------------
    def walk(self, node: Node, scope: frozenset[str], kinds: dict[str, str], fn: str | None) -> None:
        if node.kind == "sym":
            self.symbol(node, scope, kinds, fn)
            return
        if node.kind == "block":
            for item in node.items:
                self.walk(item, scope, kinds, fn)
            return
        if node.kind != "list" or not node.items:
            return
        head, args = node.items[0].value, node.items[1:]
        if head in ("def", "defun"):
            params = frozenset(p.value for p in args[1].items)
            body_scope = self.globals | params | self.scope_defvars([args[2]])
            self.walk(args[2], frozenset(body_scope), {}, args[0].value)
        elif head == "let":
            inner = set(scope)
            for b in args[0].items:
                self.walk(b.items[1], frozenset(inner), kinds, fn)
                inner.add(b.items[0].value)
            inner |= self.scope_defvars(args[1:])
            for expr in args[1:]:
                self.walk(expr, frozenset(inner), kinds, fn)
        elif head == "with":
            self.walk(args[0], scope, kinds, fn)
            var = args[1].value
            inner_kinds = dict(kinds)
            if args[0].kind == "sym" and args[0].value == "Guests":
                inner_kinds[var] = "guest"
            else:
                inner_kinds.pop(var, None)
            inner = frozenset(scope | {var} | self.scope_defvars([args[2]]))
            self.walk(args[2], inner, inner_kinds, fn)
        elif head in ("defvar", "set", "setq"):
            if head != "defvar" and args[0].value not in scope:
                self.unbound(args[0], args[0].value, fn, f"{head} of undefined variable")
            self.walk(args[1], scope, kinds, fn)
        elif head == "if" or head in BUILTINS:
            for a in args:
                self.walk(a, scope, kinds, fn)
        elif "." in head:
            obj, method = head.split(".")
            self.variable(node.items[0], obj, scope, fn)
            if method in ("Stat", "StatAvg") and args and args[0].kind == "str":
                self.field(args[0], args[0].value, kinds.get(obj))
            for a in args:
                self.walk(a, scope, kinds, fn)
        else:
            arities = self.functions.get(head)
            if arities is None:
                self.add(node.items[0], "error", f"undefined function {head!r}")
            elif len(args) not in arities:
                want = " or ".join(str(a) for a in sorted(arities))
                self.add(node, "error", f"{head} takes {want} argument{'s' if want != '1' else ''}, got {len(args)}")
            for a in args:
                self.walk(a, scope, kinds, fn)

    def symbol(self, node: Node, scope: frozenset[str], kinds: dict[str, str], fn: str | None) -> None:
        name = node.value
        if name == "nil":
            return
        if "." in name:
            obj, attr = name.split(".")
            self.variable(node, obj, scope, fn)
            if attr in ALL_METHODS:
                self.add(node, "error", f"method {attr} used as a value; call it: ({name} ...)")
            else:
                self.field(node, attr, kinds.get(obj) or ("host" if obj == "Host" else None))
            return
        self.variable(node, name, scope, fn)

    def variable(self, node: Node, name: str, scope: frozenset[str], fn: str | None) -> None:
        if name not in scope:
            self.unbound(node, name, fn, "undefined variable")

    def unbound(self, node: Node, name: str, fn: str | None, what: str) -> None:
        if fn is not None:
            if (fn, name) in self.warned:
                return
            self.warned.add((fn, name))
            self.add(node, "warning", f"{name!r} is not defined in function {fn}: it must be bound by "
                                      f"every caller (dynamic scope)")
        else:
            self.add(node, "error", f"{what} {name!r}{self.suggest(name, self.globals)}")

    def field(self, node: Node, name: str, kind: str | None) -> None:
        known = {"host": self.host_fields, "guest": self.guest_fields}.get(kind or "", self.any_fields)
        if name not in known:
            who = {"host": "the host", "guest": "a guest"}.get(kind or "", "any entity")
            self.add(node, "error", f"no collector provides statistic {name!r} for {who}"
                                    f"{self.suggest(name, known)}")

    @staticmethod
    def suggest(name: str, candidates: Iterable[str]) -> str:
        close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.75)
        return f" (did you mean {close[0]!r}?)" if close else ""


def check_sources(sources: Iterable[Source], extra_fields: Iterable[str] = ()) -> list[Finding]:
    """All findings for the sources, checked together in order."""
    sources = list(sources)
    host_fields, guest_fields = known_fields()
    extra = frozenset(extra_fields)
    checker = _Checker(host_fields | extra, guest_fields | extra)
    compiler = Compiler(Machine())
    forms: list[Node] = []
    for src in sources:
        try:
            nodes = parse(src)
        except PolicyError as e:
            checker.findings.append(Finding(e.pos, "error", e.message))
            continue
        for node in nodes:
            try:
                compiler.compile(node)
            except PolicyError as e:
                checker.findings.append(Finding(e.pos, "error", e.message))
                continue
            forms.append(node)
    for node in forms:
        checker.collect_defs(node)
    checker.globals |= checker.scope_defvars(forms)
    for node in forms:
        checker.walk(node, frozenset(checker.globals), {"Host": "host"}, None)
    order = {id(src): i for i, src in enumerate(sources)}
    return sorted(checker.findings, key=lambda f: (order.get(id(f.pos.source), -1), f.pos.line, f.pos.col)
                  if f.pos else (-1, 0, 0))
