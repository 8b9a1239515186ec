"""Compiler: policy tree to Python closures, once per policy load.

Each node becomes a function ``f(V, S)``. ``V`` maps every visible name to its
value; ``S`` is the current scope's record of the names it bound and the values
they hid. That is dynamic scoping by shallow binding: a name is read with one
dict lookup, a scope binds by saving the old value in its record (``bind``) and
gives it back on exit, in ``finally`` (``restore``). Only function calls,
``let`` and each ``with`` iteration open a scope.

The closures hold no state of a run: ``V`` is made for each evaluation and
carries, under the name MACHINE (no policy can write a name beginning with
'_'), that evaluation's Machine (function table, steps, depth, bytes, deadline).
So one compiled policy can be evaluated by several threads at once, each with
its own ``V``, and needs no lock.

Structural faults (wrong arity of a form or built-in, a bad name) are found
here, at load time; the rest raise PolicyError with the node's position when
they happen.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from mom.policy.errors import PolicyError, Pos
from mom.policy.parser import Node
from mom.policy.runtime import (
    ALL_METHODS,
    BUILTINS,
    ENTITY_METHODS,
    LATER_BUILTINS,
    LIST_BUILTINS,
    MAX_INT_BITS,
    SPECIAL_FORMS,
    Entity,
    IoTuneEntry,
    RuntimeFault,
    read_field,
    sort_numbers,
    type_name,
)

# A policy's variables (V) and a scope's record of the values its bindings hid (S).
Scope = dict[str, Any]
Closure = Callable[[Scope, Scope], Any]

UNBOUND = object()  # saved in a scope record when a name had no outer value

NAME = re.compile(r"[A-Za-z][A-Za-z0-9_\-]*\Z")

DEFAULT_MAX_STEPS = 1_000_000
DEFAULT_MAX_DEPTH = 100

# The clock is read every CHECK_EVERY steps, not at each: a step is a function
# call or a with iteration, and reading the clock at each would cost the hot path.
CHECK_EVERY = 32

# What one item of a list built by ``with`` is charged: its slot and, usually,
# a number made for it.
WITH_ITEM_BYTES = 32
# What a Control or SetVar is charged: the entry it may add to the entity's map.
ENTRY_BYTES = 100
_LIST_BYTES = sys.getsizeof([])
_STR_BYTES = sys.getsizeof("")
_SMALL_INT_BITS = 64  # larger results of integer arithmetic are charged by size
_WORD = (1 << 63) - 1  # integers within +-_WORD are small: no need to ask their size
# A built-in reading through a list longer than this reads the clock first, so a
# loop of calls over a huge list stops at the deadline.
_LONG_LIST = 4096


@dataclass(frozen=True)
class Budget:
    """What one evaluation may use. Exceeding any bound is a PolicyError at the
    expression that did it ("policy budget exceeded: ...").

    The defaults leave any real policy far below them (vdsm's set for 1,000
    guests takes ~30 ms, builds well under 1 MiB and runs ~4,000 steps).
    """

    max_steps: int = DEFAULT_MAX_STEPS  # function calls and with iterations
    max_depth: int = DEFAULT_MAX_DEPTH  # nested function calls
    max_size: int = 1 << 20  # characters of one string built, items of one list built
    max_alloc: int = 32 << 20  # bytes of strings, lists, large integers and entries built
    max_seconds: float = 5.0  # wall-clock time of one evaluation

    def with_limits(self, **limits: Any) -> Budget:
        """This budget with some fields replaced (unknown names raise TypeError)."""
        return replace(self, **limits) if limits else self


class BudgetExceeded(RuntimeFault):
    """A budget bound was crossed; the compiler adds the position."""

    def __init__(self, what: str) -> None:
        super().__init__(f"policy budget exceeded: {what}")


MACHINE = "_machine"  # V's entry for the evaluation's Machine: a name no policy can write


class Machine:
    """The state of one evaluation: function table and what it has used of its budget.

    One is made for each evaluation and put in its environment (``V[MACHINE]``).
    Steps are counted per user-function call and per ``with`` iteration: the
    language has no other loops, so this bounds the work of any policy; the
    clock is read every CHECK_EVERY steps and whenever something is built.
    Bytes are charged for every string, list and large integer an operator
    builds, every list a ``with`` or ``sort`` builds, and every Control and SetVar.
    """

    __slots__ = ("defs", "steps", "depth", "alloc", "check_at", "deadline",
                 "max_steps", "max_depth", "max_size", "max_alloc", "max_seconds")

    def __init__(self, budget: Budget) -> None:
        self.max_steps = budget.max_steps
        self.max_depth = budget.max_depth
        self.max_size = budget.max_size
        self.max_alloc = budget.max_alloc
        self.max_seconds = budget.max_seconds
        self.defs: dict[str, tuple[tuple[str, ...], Closure, Node]] = {}
        self.steps = 0
        self.depth = 0
        self.alloc = 0
        self.check_at = min(self.max_steps, CHECK_EVERY)
        self.deadline = time.monotonic() + self.max_seconds

    # -- the slow path of the step count -------------------------------------------------
    def over_steps(self, pos: Pos) -> None:
        """Called when ``steps`` passed ``check_at``: the step bound or a clock check."""
        if self.steps > self.max_steps:
            raise PolicyError(f"policy budget exceeded: more than {self.max_steps} steps "
                              f"(function calls and with iterations)", pos)
        if time.monotonic() > self.deadline:
            raise PolicyError(self._late(), pos)
        self.check_at = min(self.max_steps, self.steps + CHECK_EVERY)

    def _late(self) -> str:
        return f"policy budget exceeded: evaluation took longer than {self.max_seconds:g} s"

    # -- charging what is built ------------------------------------------------------------
    def over_alloc(self) -> str:
        return (f"policy budget exceeded: more than {_size(self.max_alloc)} of strings, lists and "
                f"entries built in one evaluation")

    def charge(self, nbytes: int) -> None:
        self.alloc += nbytes
        if self.alloc > self.max_alloc:
            raise BudgetExceeded(self.over_alloc()[len("policy budget exceeded: "):])
        if time.monotonic() > self.deadline:
            raise BudgetExceeded(self._late()[len("policy budget exceeded: "):])

    def charge_sequence(self, length: int, kind: type, nbytes: int) -> None:
        if length > self.max_size:
            what = "string of" if kind is str else "list of"
            unit = "characters" if kind is str else "items"
            raise BudgetExceeded(f"{what} {length:,} {unit}, longer than the limit of {self.max_size:,}")
        self.charge(nbytes)

    def big_int(self, value: int) -> int:
        bits = value.bit_length()
        if bits > MAX_INT_BITS:
            raise RuntimeFault(f"integer result larger than {MAX_INT_BITS} bits")
        if bits > _SMALL_INT_BITS:
            self.charge(sys.getsizeof(value))
        return value

    # -- operators that may build something large (ints, floats go the fast path) ----------
    def add(self, x: Any, y: Any) -> Any:
        t = type(x)
        if (t is str or t is list) and type(y) is t:
            n = len(x) + len(y)
            self.charge_sequence(n, t, sys.getsizeof(x) + sys.getsizeof(y))
            return x + y
        r = x + y  # numbers; a TypeError for the rest
        return r if type(r) is not int or -_WORD <= r <= _WORD else self.big_int(r)

    def sub(self, x: Any, y: Any) -> Any:
        r = x - y
        return r if type(r) is not int or -_WORD <= r <= _WORD else self.big_int(r)

    def mul(self, x: Any, y: Any) -> Any:
        tx, ty = type(x), type(y)
        if (tx is str or tx is list) and ty is int:
            return self.repeat(x, y)
        if (ty is str or ty is list) and tx is int:
            return self.repeat(y, x)
        r = x * y
        return r if type(r) is not int or -_WORD <= r <= _WORD else self.big_int(r)

    def repeat(self, seq: str | list[Any], n: int) -> str | list[Any]:
        """SEQ * N, charged (length and bytes) before anything is built."""
        count = max(n, 0)
        length = len(seq) * count
        if type(seq) is str:
            nbytes = _STR_BYTES + (sys.getsizeof(seq) - _STR_BYTES) * count
        else:
            nbytes = _LIST_BYTES + 8 * length
        self.charge_sequence(length, type(seq), nbytes)
        return seq * count

    def shl(self, x: Any, y: Any) -> Any:
        if type(y) is int and y > MAX_INT_BITS:
            raise RuntimeFault(f"shift by more than {MAX_INT_BITS} bits")
        r = x << y
        return self.big_int(r) if type(r) is int else r

    def abs(self, x: Any) -> Any:
        r = abs(x)
        return self.big_int(r) if type(r) is int else r

    def sort(self, seq: Any) -> list[Any]:
        """(sort LIST): the new list is charged (length and bytes) before it is built."""
        if type(seq) is list:
            self.charge_sequence(len(seq), list, _LIST_BYTES + 8 * len(seq))
        return sort_numbers(seq)

    def read_list(self, seq: Any) -> None:
        """Before a built-in reads through a long list: the deadline."""
        if type(seq) is list and len(seq) > _LONG_LIST and time.monotonic() > self.deadline:
            raise BudgetExceeded(self._late()[len("policy budget exceeded: "):])


def _size(nbytes: int) -> str:
    return f"{nbytes / (1 << 20):g} MiB" if nbytes >= 1 << 20 else f"{nbytes:,} bytes"


def bind(V: Scope, S: Scope, name: str, value: Any) -> Any:
    """Bind ``name`` to ``value`` in scope ``S``, noting the value it hides; a
    name the scope already bound keeps its first value. Returns the value in force."""
    if name in S:
        return V[name]
    S[name] = V[name] if name in V else UNBOUND
    V[name] = value
    return value


def restore(V: Scope, S: Scope) -> None:
    """Leave scope ``S`` (in ``finally``): give back the values its bindings hid.

    A restore is not a binding: it writes around a subclass's ``__setitem__``,
    so the trace (trace.py), which notes each binding, does not note it."""
    if type(V) is dict:  # an evaluation's own scope: the plain (quicker) writes
        for name, old in S.items():
            if old is UNBOUND:
                del V[name]
            else:
                V[name] = old
        return
    for name, old in S.items():
        if old is UNBOUND:
            del V[name]
        else:
            _set_item(V, name, old)


_set_item = dict.__setitem__


def _fault(pos: Pos, what: str, args: tuple[Any, ...], exc: BaseException) -> PolicyError:
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
    """Compiles nodes to closures; it keeps nothing: the closures of one policy
    share no state but what each run's environment carries."""

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
            form: Callable[[Node, tuple[Node, ...]], Closure] = getattr(self, "form_" + name)
            return form(node, items[1:])
        if name in BUILTINS:
            return self.builtin(node, name, items[1:])
        if "." in name:
            return self.method(node, name, items[1:])
        return self.call(node, self.check_name(head), items[1:])

    # -- names -------------------------------------------------------------------
    def check_name(self, node: Node, what: str = "name") -> str:
        if node.kind != "sym":
            raise PolicyError(f"expected a {what}, found {node!r}", node.pos)
        name: str = node.value
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

            def read(V: Scope, S: Scope) -> Any:
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
        def var(V: Scope, S: Scope) -> Any:
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

        def block(V: Scope, S: Scope) -> Any:
            for f in head:
                f(V, S)
            return last(V, S)
        return block

    def form_defvar(self, node: Node, args: tuple[Node, ...]) -> Closure:
        self.arity(node, args, 2, "(defvar NAME VALUE)")
        name = self.check_name(args[0], "variable name")
        value = self.compile(args[1])

        def defvar(V: Scope, S: Scope) -> Any:
            v = value(V, S)
            if name in S:  # already bound in this scope: kept (bind(), written out: the
                return V[name]  # commonest form; a call each cost ~10% of a vdsm run)
            S[name] = V[name] if name in V else UNBOUND
            V[name] = v
            return v
        return defvar

    def form_set(self, node: Node, args: tuple[Node, ...]) -> Closure:
        self.arity(node, args, 2, f"({node.head} NAME VALUE)")
        name = self.check_name(args[0], "variable name")
        value = self.compile(args[1])
        at = args[0]

        def set_(V: Scope, S: Scope) -> Any:
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
        at = node

        def def_(V: Scope, S: Scope) -> Any:
            V[MACHINE].defs[name] = (params, body, at)
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

        def let(V: Scope, S: Scope) -> Any:
            F: Scope = {}
            try:
                for name, value in bindings:
                    bind(V, F, name, value(V, F))
                return body(V, F)
            finally:
                restore(V, F)
        return let

    def form_if(self, node: Node, args: tuple[Node, ...]) -> Closure:
        self.arity(node, args, 3, "(if COND THEN ELSE)")
        cond, then, other = (self.compile(a) for a in args)
        return lambda V, S: then(V, S) if cond(V, S) else other(V, S)

    def form_and(self, node: Node, args: tuple[Node, ...]) -> Closure:
        """(and A B ...): the first false argument, else the last; the rest are not
        evaluated. The original MOM evaluated every argument."""
        fs = self.operands(node, args)
        if len(fs) == 1:
            return fs[0]
        if len(fs) == 2:
            a, b = fs
            return lambda V, S: a(V, S) and b(V, S)
        if len(fs) == 3:
            a, b, c = fs
            return lambda V, S: a(V, S) and b(V, S) and c(V, S)
        head, last = fs[:-1], fs[-1]

        def and_(V: Scope, S: Scope) -> Any:
            for f in head:
                v = f(V, S)
                if not v:
                    return v
            return last(V, S)
        return and_

    def form_or(self, node: Node, args: tuple[Node, ...]) -> Closure:
        """(or A B ...): the first true argument, else the last; the rest are not evaluated."""
        fs = self.operands(node, args)
        if len(fs) == 1:
            return fs[0]
        if len(fs) == 2:
            a, b = fs
            return lambda V, S: a(V, S) or b(V, S)
        if len(fs) == 3:
            a, b, c = fs
            return lambda V, S: a(V, S) or b(V, S) or c(V, S)
        head, last = fs[:-1], fs[-1]

        def or_(V: Scope, S: Scope) -> Any:
            for f in head:
                v = f(V, S)
                if v:
                    return v
            return last(V, S)
        return or_

    def operands(self, node: Node, args: tuple[Node, ...]) -> list[Closure]:
        if not args:
            raise PolicyError(f"{node.head} takes at least 1 argument, got 0", node.pos)
        return [self.compile(a) for a in args]

    def form_with(self, node: Node, args: tuple[Node, ...]) -> Closure:
        self.arity(node, args, 3, "(with LIST VAR EXPR)")
        items = self.compile(args[0])
        var = self.check_name(args[1], "variable name")
        body = self.compile(args[2])
        at, form = args[0], node

        def with_(V: Scope, S: Scope) -> list[Any]:
            seq = items(V, S)
            if type(seq) is not list:
                raise PolicyError(f"with needs a list, got {type_name(seq)}", at.pos)
            m = V[MACHINE]
            m.alloc += _LIST_BYTES + WITH_ITEM_BYTES * len(seq)  # the list of results, charged up front
            if m.alloc > m.max_alloc:
                raise PolicyError(m.over_alloc(), at.pos)
            out = []
            for item in seq:
                m.steps += 1
                if m.steps > m.check_at:
                    m.over_steps(at.pos)
                F: Scope = {var: V[var] if var in V else UNBOUND}  # bind(), written out (per guest)
                V[var] = item
                try:
                    out.append(body(V, F))
                except PolicyError as e:
                    e.add_binding(var, item, form.pos)  # names the guest the error happened for
                    raise
                finally:
                    restore(V, F)
            return out
        return with_

    # -- calls -------------------------------------------------------------------------
    def builtin(self, node: Node, name: str, args: tuple[Node, ...]) -> Closure:
        wrong = builtin_arity_error(name, len(args))
        if name in LATER_BUILTINS:
            return self.later_builtin(node, name, args, wrong)
        if wrong:
            raise PolicyError(wrong, node.pos)
        return self.builtin_call(node, name, [self.compile(a) for a in args])

    def later_builtin(self, node: Node, name: str, args: tuple[Node, ...], wrong: str | None) -> Closure:
        """A built-in the original MOM lacked: the policy's own function of that
        name, when it defined one, else the built-in (see LATER_BUILTINS)."""
        fs = [self.compile(a) for a in args]
        own = self.call_compiled(node, name, fs)
        native: Closure
        if wrong:
            def refused(V: Scope, S: Scope) -> Any:
                raise PolicyError(wrong, node.pos)
            native = refused
        else:
            native = self.builtin_call(node, name, fs)

        def builtin_or_own(V: Scope, S: Scope) -> Any:
            return own(V, S) if name in V[MACHINE].defs else native(V, S)
        return builtin_or_own

    def builtin_call(self, node: Node, name: str, fs: list[Closure]) -> Closure:
        at = node.items[0]
        if name in _INLINE and len(fs) == 2:
            a, b = fs
            return _INLINE[name](a, b, at)
        if name in _BUDGETED or name in LIST_BUILTINS:
            return _machine_call(_with_machine(name), name, fs, at)
        fn = BUILTINS[name][0]
        if len(fs) == 1:
            (a,) = fs

            def call1(V: Scope, S: Scope) -> Any:
                x = a(V, S)
                try:
                    return fn(x)
                except _ERRORS as e:
                    raise _fault(at.pos, name, (x,), e) from None
            return call1
        if len(fs) == 2:
            a, b = fs
            return _binary_call(fn, name, a, b, at)

        def calln(V: Scope, S: Scope) -> Any:
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
        if mname in ("Control", "SetVar"):
            return self.storing_method(obj_name, mname, func, fs, at,
                                       args[0].value if mname == "SetVar" and args[0].kind == "str" else None)
        if n == 1:
            (a,) = fs

            def mcall1(V: Scope, S: Scope) -> Any:
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
            if mname in ("GetVar", "Stat", "Has") and args[0].kind == "str" and args[0].value != "io_tune":
                return self.named_read(obj_name, mname, args[0].value, mcall1)
            return mcall1
        lookup = self.variable(obj_name, at)

        def mcall(V: Scope, S: Scope) -> Any:
            obj = lookup(V, S)
            xs = [f(V, S) for f in fs]
            if type(obj) is not owner:
                raise PolicyError(f"{type_name(obj)} has no method {mname!r}", at.pos)
            try:
                return func(obj, *xs)
            except _ERRORS as e:
                raise _fault(at.pos, mname, tuple(xs), e) from None
        return mcall

    @staticmethod
    def named_read(obj_name: str, mname: str, name: str, slow: Closure) -> Closure:
        """GetVar, Stat and Has of a name written in the policy, the calls most
        policies make most (several per guest and run): the entity's map is read
        in place. Anything else (not an entity, a statistic it lacks) goes through
        the method call, slow, so the values and the errors are the method's."""

        if mname == "GetVar":
            def get_var(V: Scope, S: Scope) -> Any:
                obj = V.get(obj_name)
                if type(obj) is Entity:
                    return obj.variables.get(name)
                return slow(V, S)
            return get_var
        if mname == "Has":
            def has(V: Scope, S: Scope) -> Any:
                obj = V.get(obj_name)
                if type(obj) is Entity:
                    return name in obj.latest
                return slow(V, S)
            return has

        def stat(V: Scope, S: Scope) -> Any:
            obj = V.get(obj_name)
            if type(obj) is Entity:
                latest = obj.latest
                if name in latest:
                    return latest[name]
            return slow(V, S)
        return stat

    def storing_method(self, obj_name: str, mname: str, func: Callable[..., Any], fs: list[Closure],
                       at: Node, var_name: str | None = None) -> Closure:
        """Control and SetVar: each call may add an entry to the entity, so each is charged.
        var_name: SetVar of a name written in the policy, stored in place (SetVar
        only stores; a policy makes a score of them per guest and run)."""
        lookup = self.variable(obj_name, at)
        key, value = fs
        if var_name is not None:
            name = var_name

            def set_var(V: Scope, S: Scope) -> Any:
                obj = lookup(V, S)
                v = value(V, S)
                if type(obj) is not Entity:
                    raise PolicyError(f"{type_name(obj)} has no method {mname!r}", at.pos)
                m = V[MACHINE]
                m.alloc += ENTRY_BYTES
                if m.alloc > m.max_alloc:
                    try:
                        m.charge(0)
                    except _ERRORS as e:
                        raise _fault(at.pos, mname, (name, v), e) from None
                obj.variables[name] = v
                return None
            return set_var

        def store(V: Scope, S: Scope) -> Any:
            obj = lookup(V, S)
            k = key(V, S)
            v = value(V, S)
            if type(obj) is not Entity:
                raise PolicyError(f"{type_name(obj)} has no method {mname!r}", at.pos)
            m = V[MACHINE]
            try:
                m.alloc += ENTRY_BYTES
                if m.alloc > m.max_alloc:
                    m.charge(0)
                return func(obj, k, v)
            except _ERRORS as e:
                raise _fault(at.pos, mname, (k, v), e) from None
        return store

    def call(self, node: Node, name: str, args: tuple[Node, ...]) -> Closure:
        return self.call_compiled(node, name, [self.compile(a) for a in args])

    def call_compiled(self, node: Node, name: str, fs: list[Closure]) -> Closure:
        nargs, at = len(fs), node

        def ucall(V: Scope, S: Scope) -> Any:
            m = V[MACHINE]
            try:
                params, body, _ = m.defs[name]
            except KeyError:
                raise PolicyError(f"undefined function {name!r}", at.pos) from None
            if len(params) != nargs:
                plural = "s" if len(params) != 1 else ""
                raise PolicyError(f"{name} takes {len(params)} argument{plural}, got {nargs}", at.pos)
            m.steps += 1
            if m.steps > m.check_at:
                m.over_steps(at.pos)
            if m.depth >= m.max_depth:
                raise PolicyError(f"calls nested deeper than {m.max_depth} (runaway recursion?)", at.pos)
            m.depth += 1
            F: Scope = {}
            try:
                for i in range(nargs):  # as many parameters: checked above (no zip: an object per call)
                    value = fs[i](V, F)  # in the new scope: a later argument sees earlier parameters
                    param = params[i]
                    if param not in F:  # bind(), written out: a call per argument costs ~5% of a run
                        F[param] = V[param] if param in V else UNBOUND
                        V[param] = value
                return body(V, F)
            except PolicyError as e:
                e.add_call(name, at.pos)
                raise
            except RecursionError:
                raise PolicyError("expressions and calls nested too deeply", at.pos) from None
            finally:
                restore(V, F)
                m.depth -= 1
        return ucall


def builtin_arity_error(name: str, nargs: int) -> str | None:
    """The message for a call of built-in ``name`` with ``nargs`` arguments, or None if right."""
    _, least, most = BUILTINS[name]
    if least <= nargs and (most is None or nargs <= most):
        return None
    want = f"{least}" if least == most else f"at least {least}"
    return f"{name} takes {want} argument{'s' if least != 1 else ''}, got {nargs}"


def _with_machine(name: str) -> Callable[..., Any]:
    """Built-in ``name`` as a function of (machine, *args): the machine's version
    of those that may build something large, which charges it, and a deadline
    check first for those that read through a list."""
    fn: Callable[..., Any]
    if name in _BUDGETED:
        fn = getattr(Machine, _BUDGETED[name])
    else:
        plain = BUILTINS[name][0]

        def without_machine(m: Machine, *args: Any) -> Any:
            return plain(*args)
        fn = without_machine
    if name not in LIST_BUILTINS:
        return fn

    def read_through(m: Machine, seq: Any, *rest: Any) -> Any:
        m.read_list(seq)
        return fn(m, seq, *rest)
    return read_through


def _machine_call(fn: Callable[..., Any], name: str, fs: list[Closure], at: Node) -> Closure:
    """A call of a built-in that needs the run's machine (``_with_machine``)."""
    if len(fs) == 1:
        (a,) = fs

        def mcall1(V: Scope, S: Scope) -> Any:
            x = a(V, S)
            try:
                return fn(V[MACHINE], x)
            except _ERRORS as e:
                raise _fault(at.pos, name, (x,), e) from None
        return mcall1
    if len(fs) == 2:
        a, b = fs

        def mcall2(V: Scope, S: Scope) -> Any:
            x = a(V, S)
            y = b(V, S)
            try:
                return fn(V[MACHINE], x, y)
            except _ERRORS as e:
                raise _fault(at.pos, name, (x, y), e) from None
        return mcall2

    def mcalln(V: Scope, S: Scope) -> Any:
        xs = [f(V, S) for f in fs]
        try:
            return fn(V[MACHINE], *xs)
        except _ERRORS as e:
            raise _fault(at.pos, name, tuple(xs), e) from None
    return mcalln


def _inline_operator(op: str, budgeted: str | None) -> Callable[[Closure, Closure, Node], Closure]:
    """A closure factory for a binary operator written inline (generated source),
    so an operation costs no call of its own.

    With ``budgeted`` (+ - *): floats and small integers go straight through the
    operator; the rest (strings, lists, large integers) through the Machine's
    method of that name, which bounds and charges what it builds. A float operand
    cannot make anything large. (Worth it: about 17% of a run of MOM's sample
    policies at 1,000 guests, bench/trace_bench.py.)"""
    if budgeted is None:
        body = f"return x {op} y"
    else:
        body = f"""tx = type(x)
            ty = type(y)
            if tx is float or ty is float:
                return x {op} y
            if tx is int and ty is int:
                r = x {op} y  # inputs are at most MAX_INT_BITS: cheap to make, then checked
                if -_WORD <= r <= _WORD:
                    return r
            return slow(V[MACHINE], x, y)"""
    src = f"""
def make(a, b, at):
    def operator(V, S):
        x = a(V, S)
        y = b(V, S)
        try:
            {body}
        except _ERRORS as e:
            raise _fault(at.pos, {op!r}, (x, y), e) from None
    return operator
"""
    scope: dict[str, Any] = {"_ERRORS": _ERRORS, "_fault": _fault, "_WORD": _WORD, "MACHINE": MACHINE,
                             "slow": getattr(Machine, budgeted) if budgeted else None}
    exec(src, scope)  # the fixed text above, with an operator from _INLINE's keys
    make: Callable[[Closure, Closure, Node], Closure] = scope["make"]
    return make


def _binary_call(fn: Callable[[Any, Any], Any], name: str, a: Closure, b: Closure, at: Node) -> Closure:
    def call2(V: Scope, S: Scope) -> Any:
        x = a(V, S)
        y = b(V, S)
        try:
            return fn(x, y)
        except _ERRORS as e:
            raise _fault(at.pos, name, (x, y), e) from None
    return call2


# Built-ins that may build something large: the Machine method that replaces each.
_BUDGETED = {"+": "add", "-": "sub", "*": "mul", "<<": "shl", "abs": "abs", "sort": "sort"}
# Binary operators written inline (see _inline_operator); + - * keep their budget.
_INLINE = {op: _inline_operator(op, _BUDGETED.get(op))
           for op in ("+", "-", "*", "/", "<", ">", "<=", ">=", "==", "!=", ">>")}
