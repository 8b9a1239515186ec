"""Compiler: policy tree to Python closures, once per policy load.

Each node becomes a function ``f(V, S)``. ``V`` maps every visible name to its
value; ``S`` is the current scope's record of the names it bound and the values
they hid. That is dynamic scoping by shallow binding: a name is read with one
dict lookup, a scope binds by saving the old value in its record and restores
it on exit. Only function calls, ``let`` and each ``with`` iteration open a scope.

Structural faults (wrong arity of a form or built-in, a bad name) are found
here, at load time; the rest raise PolicyError with the node's position when
they happen.
"""

from __future__ import annotations

import operator
import re
from typing import Any, Callable

from mom.policy.errors import Pos, PolicyError
from mom.policy.parser import Node
from mom.policy.runtime import (
    ALL_METHODS, BUILTINS, ENTITY_METHODS, IOTUNE_METHODS, SPECIAL_FORMS, Entity, IoTuneEntry,
    RuntimeFault, read_field, type_name,
)

Closure = Callable[[dict, dict], Any]

UNBOUND = object()  # saved in a scope record when a name had no outer value

NAME = re.compile(r"[A-Za-z][A-Za-z0-9_\-]*\Z")

DEFAULT_MAX_STEPS = 1_000_000
DEFAULT_MAX_DEPTH = 100


class Machine:
    """The state of one evaluation: function table and the step and depth budgets.

    Steps are counted per user-function call and per ``with`` iteration: the
    language has no other loops, so this bounds the work of any policy.
    """

    __slots__ = ("defs", "steps", "max_steps", "depth", "max_depth")

    def __init__(self, max_steps: int = DEFAULT_MAX_STEPS, max_depth: int = DEFAULT_MAX_DEPTH) -> None:
        self.max_steps = max_steps
        self.max_depth = max_depth
        self.reset()

    def reset(self) -> None:
        self.defs: dict[str, tuple[tuple[str, ...], Closure, Node]] = {}
        self.steps = 0
        self.depth = 0


def restore(V: dict, S: dict) -> None:
    """Leave a scope: give back the values its bindings hid."""
    for name, old in S.items():
        if old is UNBOUND:
            del V[name]
        else:
            V[name] = old


def _fault(pos: Pos, what: str, args: tuple, exc: BaseException) -> PolicyError:
    if isinstance(exc, RuntimeFault):
        return PolicyError(str(exc), pos)
    if isinstance(exc, ZeroDivisionError):
        return PolicyError("division by zero", pos)
    if isinstance(exc, OverflowError):
        return PolicyError(f"{what}: number too large", pos)
    if isinstance(exc, TypeError):
        kinds = " and ".join(type_name(a) for a in args) or "no arguments"
        return PolicyError(f"cannot apply {what} to {kinds}", pos)
    return PolicyError(f"{what}: {exc}", pos)


_ERRORS = (TypeError, ValueError, ZeroDivisionError, OverflowError, RuntimeFault)


class Compiler:
    def __init__(self, machine: Machine) -> None:
        self.m = machine

    def compile(self, node: Node) -> Closure:
        if node.kind in ("num", "str"):
            value = node.value
            return lambda V, S: value
        if node.kind == "sym":
            return self.symbol(node)
        if node.kind == "block":
            return self.block(node.items)
        items = node.items
        if not items:
            raise PolicyError("empty expression ()", node.pos)
        head = items[0]
        if head.kind != "sym":
            raise PolicyError("expected a function or form name after '('", head.pos)
        name = head.value
        if name in SPECIAL_FORMS:
            return getattr(self, "form_" + name)(node, items[1:])
        if name in BUILTINS:
            return self.builtin(node, name, items[1:])
        if "." in name:
            return self.method(node, name, items[1:])
        return self.call(node, self.check_name(head), items[1:])

    # -- names -------------------------------------------------------------------
    def check_name(self, node: Node, what: str = "name") -> str:
        if node.kind != "sym":
            raise PolicyError(f"expected a {what}, found {node!r}", node.pos)
        name = node.value
        if name.startswith("_"):
            raise PolicyError(f"names beginning with '_' are reserved: {name!r}", node.pos)
        if not NAME.match(name) or name == "nil":
            raise PolicyError(f"{name!r} cannot be used as a {what}", node.pos)
        return name

    def split_dotted(self, node: Node) -> tuple[str, str]:
        parts = node.value.split(".")
        if len(parts) != 2:
            raise PolicyError(f"{node.value!r}: only one '.' is allowed (object.field)", node.pos)
        obj, attr = parts
        for part in parts:
            if not NAME.match(part):
                raise PolicyError(f"{node.value!r} is not a valid object.field name", node.pos)
        return obj, attr

    def symbol(self, node: Node) -> Closure:
        name, at = node.value, node
        if name == "nil":
            return lambda V, S: None
        if name in BUILTINS and not NAME.match(name):
            raise PolicyError(f"operator {name!r} used as a value", at.pos)
        if "." in name:
            obj_name, attr = self.split_dotted(node)
            fast = attr != "io_tune"  # io_tune entries are wrapped on first read: the slow path

            def read(V: dict, S: dict) -> Any:
                try:
                    obj = V[obj_name]
                except KeyError:
                    raise PolicyError(f"undefined variable {obj_name!r}", at.pos) from None
                if fast and type(obj) is Entity:
                    try:
                        return obj.latest[attr]
                    except KeyError:
                        pass
                try:
                    return read_field(obj, attr)
                except RuntimeFault as e:
                    raise PolicyError(str(e), at.pos) from None
            return read
        self.check_name(node, "variable name")
        return self.variable(name, at)

    @staticmethod
    def variable(name: str, at: Node) -> Closure:
        def var(V: dict, S: dict) -> Any:
            try:
                return V[name]
            except KeyError:
                raise PolicyError(f"undefined variable {name!r}", at.pos) from None
        return var

    # -- special forms -----------------------------------------------------------------
    def arity(self, node: Node, args: tuple[Node, ...], n: int, shape: str) -> None:
        if len(args) != n:
            raise PolicyError(f"{shape} takes {n} argument{'s' if n != 1 else ''}, got {len(args)}", node.pos)

    def block(self, items: tuple[Node, ...]) -> Closure:
        fs = [self.compile(i) for i in items]
        if not fs:
            return lambda V, S: None
        if len(fs) == 1:
            return fs[0]
        head, last = fs[:-1], fs[-1]

        def block(V: dict, S: dict) -> Any:
            for f in head:
                f(V, S)
            return last(V, S)
        return block

    def form_defvar(self, node: Node, args: tuple[Node, ...]) -> Closure:
        self.arity(node, args, 2, "(defvar NAME VALUE)")
        name = self.check_name(args[0], "variable name")
        value = self.compile(args[1])

        def defvar(V: dict, S: dict) -> Any:
            v = value(V, S)
            if name in S:  # already bound in this scope: keep it
                return V[name]
            S[name] = V.get(name, UNBOUND)
            V[name] = v
            return v
        return defvar

    def form_set(self, node: Node, args: tuple[Node, ...]) -> Closure:
        self.arity(node, args, 2, f"({node.head} NAME VALUE)")
        name = self.check_name(args[0], "variable name")
        value = self.compile(args[1])
        at = args[0]

        def set_(V: dict, S: dict) -> Any:
            v = value(V, S)
            if name not in V:
                raise PolicyError(f"set of undefined variable {name!r} (use defvar to create it)", at.pos)
            V[name] = v
            return v
        return set_

    form_setq = form_set

    def form_def(self, node: Node, args: tuple[Node, ...]) -> Closure:
        self.arity(node, args, 3, f"({node.head} NAME (PARAMS...) BODY)")
        name = self.check_name(args[0], "function name")
        if args[1].kind != "list":
            raise PolicyError("expected a parameter list (NAME ...)", args[1].pos)
        params = tuple(self.check_name(p, "parameter name") for p in args[1].items)
        body = self.compile(args[2])
        m, at = self.m, node

        def def_(V: dict, S: dict) -> Any:
            m.defs[name] = (params, body, at)
            return name
        return def_

    form_defun = form_def

    def form_let(self, node: Node, args: tuple[Node, ...]) -> Closure:
        if len(args) < 2 or args[0].kind != "list":
            raise PolicyError("(let ((NAME VALUE)...) EXPR...) needs bindings and at least one expression", node.pos)
        bindings = []
        for b in args[0].items:
            if b.kind != "list" or len(b.items) != 2:
                raise PolicyError("a let binding is (NAME VALUE)", b.pos)
            bindings.append((self.check_name(b.items[0], "variable name"), self.compile(b.items[1])))
        body = self.block(args[1:])

        def let(V: dict, S: dict) -> Any:
            F: dict = {}
            for name, value in bindings:
                v = value(V, F)
                if name not in F:
                    F[name] = V.get(name, UNBOUND)
                    V[name] = v
            result = body(V, F)
            restore(V, F)
            return result
        return let

    def form_if(self, node: Node, args: tuple[Node, ...]) -> Closure:
        self.arity(node, args, 3, "(if COND THEN ELSE)")
        cond, then, other = (self.compile(a) for a in args)
        return lambda V, S: then(V, S) if cond(V, S) else other(V, S)

    def form_with(self, node: Node, args: tuple[Node, ...]) -> Closure:
        self.arity(node, args, 3, "(with LIST VAR EXPR)")
        items = self.compile(args[0])
        var = self.check_name(args[1], "variable name")
        body = self.compile(args[2])
        m, at = self.m, args[0]

        def with_(V: dict, S: dict) -> list:
            seq = items(V, S)
            if type(seq) is not list:
                raise PolicyError(f"with needs a list, got {type_name(seq)}", at.pos)
            out = []
            for item in seq:
                m.steps += 1
                if m.steps > m.max_steps:
                    raise PolicyError(f"evaluation exceeded {m.max_steps} steps", at.pos)
                F = {var: V.get(var, UNBOUND)}
                V[var] = item
                out.append(body(V, F))
                restore(V, F)
            return out
        return with_

    # -- calls -------------------------------------------------------------------------
    def builtin(self, node: Node, name: str, args: tuple[Node, ...]) -> Closure:
        fn, least, most = BUILTINS[name]
        if len(args) < least or (most is not None and len(args) > most):
            want = f"{least}" if least == most else f"at least {least}"
            raise PolicyError(f"{name} takes {want} argument{'s' if least != 1 else ''}, got {len(args)}", node.pos)
        fs = [self.compile(a) for a in args]
        at = node.items[0]
        if len(fs) == 1:
            (a,) = fs

            def call1(V: dict, S: dict) -> Any:
                x = a(V, S)
                try:
                    return fn(x)
                except _ERRORS as e:
                    raise _fault(at.pos, name, (x,), e) from None
            return call1
        if len(fs) == 2:
            a, b = fs
            return _BINARY.get(name, _binary_call)(fn, name, a, b, at)

        def calln(V: dict, S: dict) -> Any:
            xs = [f(V, S) for f in fs]
            try:
                return fn(*xs)
            except _ERRORS as e:
                raise _fault(at.pos, name, tuple(xs), e) from None
        return calln

    def method(self, node: Node, dotted: str, args: tuple[Node, ...]) -> Closure:
        obj_name, mname = self.split_dotted(node.items[0])
        at = node.items[0]
        if mname not in ALL_METHODS:
            raise PolicyError(f"unknown method {mname!r} (known: {', '.join(sorted(ALL_METHODS))})", at.pos)
        n = ALL_METHODS[mname]
        if len(args) != n:
            raise PolicyError(f"{mname} takes {n} argument{'s' if n != 1 else ''}, got {len(args)}", node.pos)
        owner = Entity if mname in ENTITY_METHODS else IoTuneEntry
        func = getattr(owner, mname)
        fs = [self.compile(a) for a in args]
        if n == 1:
            (a,) = fs

            def mcall1(V: dict, S: dict) -> Any:
                try:
                    obj = V[obj_name]
                except KeyError:
                    raise PolicyError(f"undefined variable {obj_name!r}", at.pos) from None
                x = a(V, S)
                if type(obj) is not owner:
                    raise PolicyError(f"{type_name(obj)} has no method {mname!r}", at.pos)
                try:
                    return func(obj, x)
                except _ERRORS as e:
                    raise _fault(at.pos, mname, (x,), e) from None
            return mcall1
        lookup = self.variable(obj_name, at)

        def mcall(V: dict, S: dict) -> Any:
            obj = lookup(V, S)
            xs = [f(V, S) for f in fs]
            if type(obj) is not owner:
                raise PolicyError(f"{type_name(obj)} has no method {mname!r}", at.pos)
            try:
                return func(obj, *xs)
            except _ERRORS as e:
                raise _fault(at.pos, mname, tuple(xs), e) from None
        return mcall

    def call(self, node: Node, name: str, args: tuple[Node, ...]) -> Closure:
        fs = [self.compile(a) for a in args]
        nargs, m, at = len(fs), self.m, node

        def ucall(V: dict, S: dict) -> Any:
            try:
                params, body, _ = m.defs[name]
            except KeyError:
                raise PolicyError(f"undefined function {name!r}", at.pos) from None
            if len(params) != nargs:
                raise PolicyError(f"{name} takes {len(params)} argument{'s' if len(params) != 1 else ''}, got {nargs}", at.pos)
            m.steps += 1
            if m.steps > m.max_steps:
                raise PolicyError(f"evaluation exceeded {m.max_steps} steps", at.pos)
            if m.depth >= m.max_depth:
                raise PolicyError(f"calls nested deeper than {m.max_depth} (runaway recursion?)", at.pos)
            m.depth += 1
            F: dict = {}
            try:
                for i in range(nargs):
                    v = fs[i](V, F)  # in the new scope: a later argument sees earlier parameters
                    p = params[i]
                    if p not in F:
                        F[p] = V.get(p, UNBOUND)
                        V[p] = v
                result = body(V, F)
            except PolicyError as e:
                e.add_call(name, at.pos)
                raise
            except RecursionError:
                raise PolicyError("expressions and calls nested too deeply", at.pos) from None
            restore(V, F)
            m.depth -= 1
            return result
        return ucall


def _binary_call(fn: Callable[[Any, Any], Any], name: str, a: Closure, b: Closure, at: Node) -> Closure:
    def call2(V: dict, S: dict) -> Any:
        x = a(V, S)
        y = b(V, S)
        try:
            return fn(x, y)
        except _ERRORS as e:
            raise _fault(at.pos, name, (x, y), e) from None
    return call2


def _make_inline(op: str) -> Callable[..., Closure]:
    """A closure factory with the operator written inline: no call per operation."""
    src = f"""
def make(fn, name, a, b, at):
    def op(V, S):
        x = a(V, S)
        y = b(V, S)
        try:
            return x {op} y
        except _ERRORS as e:
            raise _fault(at.pos, name, (x, y), e) from None
    return op
"""
    scope: dict[str, Any] = {"_ERRORS": _ERRORS, "_fault": _fault}
    exec(src, scope)
    return scope["make"]


def _make_guarded(op: str, guarded: Callable[[Any, Any], Any]) -> Callable[..., Closure]:
    """+ - *: inline for floats (most policy arithmetic), the size-guarded function otherwise."""
    fast = {"+": operator.add, "-": operator.sub, "*": operator.mul}[op]

    def make(fn: Any, name: str, a: Closure, b: Closure, at: Node) -> Closure:
        def op_(V: dict, S: dict) -> Any:
            x = a(V, S)
            y = b(V, S)
            try:
                if type(x) is float or type(y) is float:
                    return fast(x, y)
                return guarded(x, y)
            except _ERRORS as e:
                raise _fault(at.pos, name, (x, y), e) from None
        return op_
    return make


# Operators that cannot blow up in size are inlined; + - * and << keep their guards.
_BINARY = {op: _make_inline(op) for op in ("/", "<", ">", "<=", ">=", "==", "!=", ">>")}
for _op in ("+", "-", "*"):
    _BINARY[_op] = _make_guarded(_op, BUILTINS[_op][0])
