"""What a policy can touch: entities (Host, each guest), IO tune entries, built-ins.

This is the whole sandbox. A policy reaches values only through the field
reads and methods listed here (ENTITY_METHODS, IOTUNE_METHODS) and the built-in
functions (BUILTINS); it never reaches a Python attribute.
"""

from __future__ import annotations

import logging
import math
import operator
from collections.abc import Callable
from typing import Any

from mom.core.disks import DISK_ENTRY_FIELDS, DiskLimitError, io_limit
from mom.core.errors import MomError

debug_log = logging.getLogger("mom.policy.debug")

IO_ENTRY_FIELDS = DISK_ENTRY_FIELDS  # an io_tune entry's fields, as the checker knows them


class RuntimeFault(MomError):
    """Raised by runtime helpers; the compiler turns it into a PolicyError at the node."""


class Entity:
    """Host or one guest as the policy sees it: a thin view on a snapshot entity.

    ``latest`` maps every declared statistic (a field present in any history row)
    to its newest value, nil when the newest row lacks it.
    """

    __slots__ = ("kind", "properties", "rows", "latest", "controls", "variables", "io_entries", "_avgs")

    def __init__(self, kind: str, properties: dict[str, Any], rows: list[dict[str, Any]],
                 variables: dict[str, Any] | None = None) -> None:
        self.kind = kind  # "Host" or "Guest"
        self.properties = properties
        self.rows = rows
        latest: dict[str, Any] = dict(rows[-1]) if rows else {}
        keys = latest.keys()
        for row in rows:
            if not row.keys() <= keys:  # rare: a field the newest row lacks
                for key in row:
                    latest.setdefault(key, None)
        self.latest = latest
        self.io_entries: list[IoTuneEntry] | None = None  # made when the policy first reads io_tune
        self.controls: dict[str, Any] = {}
        self.variables = dict(variables) if variables else {}
        self._avgs: dict[str, float] = {}

    @property
    def label(self) -> str:
        return self.kind if self.kind == "Host" else f"guest {self.properties.get('name', '?')!s}"

    def __repr__(self) -> str:
        return self.label

    def field(self, name: str) -> Any:
        try:
            value = self.latest[name]
        except KeyError:
            raise RuntimeFault(f"{self.label} has no statistic {name!r}") from None
        if name == "io_tune" and self.io_entries is None and isinstance(value, list):
            # Wrapped on first use, so guests whose io_tune no policy reads cost nothing.
            self.io_entries = [IoTuneEntry(t) for t in value if isinstance(t, dict)]
            value = self.latest[name] = self.io_entries
        return value

    def changed_io_tune(self) -> list[dict[str, Any]]:
        """The io_tune entries whose current values the policy changed."""
        return [e.to_json() for e in self.io_entries or () if e.changed]

    # -- methods a policy may call --------------------------------------------
    def Stat(self, name: str) -> Any:
        """The newest value of a statistic."""
        return self.field(name)

    def Has(self, name: str) -> bool:
        """Whether a collector provides the statistic here (its value may still be nil):
        how a policy uses a statistic of an optional collector without failing where
        that collector is not configured."""
        return name in self.latest

    def StatAvg(self, name: str) -> float:
        """The average of the non-nil values in the history window; 0.0 if none."""
        cached = self._avgs.get(name)
        if cached is not None:
            return cached
        if name not in self.latest:
            raise RuntimeFault(f"{self.label} has no statistic {name!r}")
        total, count = 0, 0
        for row in self.rows:
            v = row.get(name)
            if v is None:
                continue
            if type(v) not in (int, float) or v is True or v is False:
                raise RuntimeFault(f"StatAvg of {name!r}: {v!r} is not a number")
            total += v
            count += 1
        avg = float(total) / count if count else 0.0
        self._avgs[name] = avg
        return avg

    def Prop(self, name: str) -> Any:
        try:
            return self.properties[name]
        except KeyError:
            raise RuntimeFault(f"{self.label} has no property {name!r}") from None

    def Control(self, name: str, value: Any) -> None:
        """Set a control; the last write in a run wins."""
        if type(name) is not str:
            raise RuntimeFault(f"a control name must be a string, not {type_name(name)}")
        self.controls[name] = value

    def GetControl(self, name: str) -> Any:
        return self.controls.get(name)

    def SetVar(self, name: str, value: Any) -> None:
        self.variables[name] = value

    def GetVar(self, name: str) -> Any:
        return self.variables.get(name)


def _io_limit_or_none(disk: str, key: str, value: Any) -> int | None:
    """nil (leave the limit as it is) or the value under core's one limit rule, so a
    fraction is refused here, where the policy wrote it, as every interface refuses it."""
    if value is None:
        return None
    try:
        return io_limit(disk, key, value)
    except DiskLimitError as e:
        raise RuntimeFault(str(e)) from None


class IoTuneEntry:
    """One disk's IO tune: name, path and the guaranteed/maximum/current maps."""

    __slots__ = ("fields", "original")

    def __init__(self, entry: dict[str, Any]) -> None:
        get = entry.get

        def limits(key: str) -> dict[str, Any]:  # a malformed map reads as empty, never a crash
            value = get(key)
            return dict(value) if isinstance(value, dict) else {}
        self.fields: dict[str, Any] = {"name": get("name"), "path": get("path"), "guaranteed": limits("guaranteed"),
                       "maximum": limits("maximum"), "current": limits("current")}
        self.original = dict(self.fields["current"])

    def __repr__(self) -> str:
        return f"io_tune {self.fields.get('name')!s}"

    def field(self, name: str) -> Any:
        try:
            return self.fields[name]
        except KeyError:
            raise RuntimeFault(f"an io_tune entry has no field {name!r}") from None

    @property
    def changed(self) -> bool:
        current: dict[str, Any] = self.fields["current"]
        return current != self.original

    def to_json(self) -> dict[str, Any]:
        f = self.fields
        return {"name": f["name"], "path": f["path"], "guaranteed": dict(f["guaranteed"]),
                "maximum": dict(f["maximum"]), "current": dict(f["current"])}

    def _setter(key: str) -> Callable[[IoTuneEntry, Any], None]:  # type: ignore[misc]
        def set_value(self: IoTuneEntry, value: Any) -> None:
            fields = self.fields
            # The values core's rule takes as they are, tested first: a policy sets
            # several limits per disk, guest and run (vdsm's sets them all).
            t = type(value)
            if (t is int and value >= 0) or (t is float and value >= 0 and value.is_integer()):
                fields["current"][key] = int(value)
                return
            disk = fields["name"] if fields["name"] is not None else fields["path"]
            fields["current"][key] = _io_limit_or_none(str(disk), key, value)
        set_value.__name__ = key
        return set_value

    setTotalBytesSec = _setter("total_bytes_sec")
    setReadBytesSec = _setter("read_bytes_sec")
    setWriteBytesSec = _setter("write_bytes_sec")
    setTotalIopsSec = _setter("total_iops_sec")
    setReadIopsSec = _setter("read_iops_sec")
    setWriteIopsSec = _setter("write_iops_sec")
    del _setter


# Methods by the class they belong to: name -> number of arguments.
ENTITY_METHODS: dict[str, int] = {
    "Stat": 1, "StatAvg": 1, "Has": 1, "Prop": 1, "Control": 2, "GetControl": 1, "SetVar": 2, "GetVar": 1,
}
IOTUNE_METHODS: dict[str, int] = {
    "setTotalBytesSec": 1, "setReadBytesSec": 1, "setWriteBytesSec": 1,
    "setTotalIopsSec": 1, "setReadIopsSec": 1, "setWriteIopsSec": 1,
}
METHODS_BY_TYPE: dict[type, dict[str, int]] = {Entity: ENTITY_METHODS, IoTuneEntry: IOTUNE_METHODS}
ALL_METHODS = {**ENTITY_METHODS, **IOTUNE_METHODS}


def type_name(value: Any) -> str:
    if value is None:
        return "nil"
    if isinstance(value, Entity):
        return value.kind
    if isinstance(value, IoTuneEntry):
        return "io_tune entry"
    return {bool: "boolean", int: "integer", float: "float", str: "string",
            list: "list", dict: "map"}.get(type(value), type(value).__name__)


def read_field(obj: Any, name: str) -> Any:
    """``obj.name`` in a policy: a statistic, an io_tune entry field or a map key."""
    t = type(obj)
    if t is Entity or t is IoTuneEntry:
        return obj.field(name)
    if t is dict:
        try:
            return obj[name]
        except KeyError:
            raise RuntimeFault(f"the map has no key {name!r}") from None
    raise RuntimeFault(f"{type_name(obj)} has no field {name!r}")


# -- built-in functions ---------------------------------------------------------
MAX_INT_BITS = 4096


def _null(*args: Any) -> bool:
    return all(a is None or (isinstance(a, (str, list, dict)) and len(a) == 0) for a in args)


def _valid(*args: Any) -> bool:
    return not any(a is None for a in args)


def _min(*args: Any) -> Any:
    return min(args)  # the first smallest argument, itself


def _max(*args: Any) -> Any:
    return max(args)


def _debug(*args: Any) -> Any:
    if debug_log.isEnabledFor(logging.DEBUG):  # the text is built only when someone reads it
        debug_log.debug("debug: %s", " ".join(map(str, args)))
    return args[-1]


# -- over lists: what (with Guests vm EXPR) returns -------------------------------
def _list(what: str, seq: Any) -> list[Any]:
    if type(seq) is not list:
        raise RuntimeFault(f"{what} needs a list, got {type_name(seq)}")
    return seq


def numbers_of(what: str, seq: Any) -> list[Any]:
    """The non-nil items of a list, each checked to be a number (booleans count
    as 0 and 1, as they do for +)."""
    out = []
    for i, v in enumerate(_list(what, seq)):
        t = type(v)
        if t is float or t is int or t is bool:
            out.append(v)
        elif v is not None:
            raise RuntimeFault(f"{what}: item {i} of the list is {_a(type_name(v))}, not a number")
    return out


def _a(kind: str) -> str:
    return kind if kind == "nil" else ("an " if kind[0] in "aeiou" else "a ") + kind


def _sum(seq: Any) -> Any:
    return sum(numbers_of("sum", seq))  # 0 for an empty list


def _count(seq: Any) -> int:
    items = _list("count", seq)
    return len(items) - items.count(None)


def sort_numbers(seq: Any) -> list[Any]:
    """A new list of the non-nil items, ascending (the machine charges it first)."""
    items = numbers_of("sort", seq)
    items.sort()
    return items


def _min_of(seq: Any) -> Any:
    items = numbers_of("min-of", seq)
    return min(items) if items else None  # the first smallest item, itself


def _max_of(seq: Any) -> Any:
    items = numbers_of("max-of", seq)
    return max(items) if items else None


def _nth(seq: Any, index: Any) -> Any:
    items = _list("nth", seq)
    if type(index) is not int:
        raise RuntimeFault(f"nth: the index must be an integer, not {_a(type_name(index))} (use floor or round)")
    if index < 0:
        raise RuntimeFault(f"nth: index {index} is negative")
    return items[index] if index < len(items) else None


# -- rounding ----------------------------------------------------------------------
def number_of(what: str, x: object) -> int | float:
    """``x`` if it is a finite number (a boolean as 0 or 1); else a fault naming ``what``."""
    if type(x) is int:
        return x
    if type(x) is float:
        if not math.isfinite(x):
            raise RuntimeFault(f"{what} of {x!r}: not a finite number")
        return x
    if type(x) is bool:
        return int(x)
    raise RuntimeFault(f"{what} needs a number, got {type_name(x)}")


def _round(x: Any) -> int:
    """The nearest integer, halves away from zero (2.5 is 3, -2.5 is -3): what an
    operator expects, not Python's round to even."""
    n = number_of("round", x)
    if type(n) is int:
        return n
    below = math.floor(n)
    fraction = n - below  # exact for floats: no 0.49999999999999994 + 0.5 == 1.0 trap
    return below + 1 if fraction > 0.5 or (fraction == 0.5 and n > 0) else below


def _floor(x: Any) -> int:
    return math.floor(number_of("floor", x))


def _ceil(x: Any) -> int:
    return math.ceil(number_of("ceil", x))


def _clamp(x: Any, low: Any, high: Any) -> Any:
    """X limited to [LOW, HIGH], one of the three unchanged; LOW wins when LOW > HIGH.
    The same as (max LOW (min HIGH X)), which policies wrote before."""
    for what, v in (("X", x), ("LO", low), ("HI", high)):
        t = type(v)
        if t is not int and t is not float and t is not bool:
            raise RuntimeFault(f"clamp: {what} is {_a(type_name(v))}, not a number")
    return max(low, min(high, x))


# name -> (function, minimum arity, maximum arity or None for any). The compiler
# runs + - * << abs through the evaluation's Machine instead, which bounds and
# charges what they build (mom.policy.compiler.Budget).
BUILTINS: dict[str, tuple[Callable[..., Any], int, int | None]] = {
    "+": (operator.add, 2, 2),
    "-": (operator.sub, 2, 2),
    "*": (operator.mul, 2, 2),
    "/": (operator.truediv, 2, 2),
    "<": (operator.lt, 2, 2),
    ">": (operator.gt, 2, 2),
    "<=": (operator.le, 2, 2),
    ">=": (operator.ge, 2, 2),
    "==": (operator.eq, 2, 2),
    "!=": (operator.ne, 2, 2),
    "<<": (operator.lshift, 2, 2),
    ">>": (operator.rshift, 2, 2),
    "not": (operator.not_, 1, 1),
    "min": (_min, 1, None),
    "max": (_max, 1, None),
    "abs": (abs, 1, 1),
    "null": (_null, 0, None),
    "valid": (_valid, 0, None),
    "debug": (_debug, 1, None),
    "sum": (_sum, 1, 1),
    "count": (_count, 1, 1),
    "sort": (sort_numbers, 1, 1),
    "min-of": (_min_of, 1, 1),
    "max-of": (_max_of, 1, 1),
    "nth": (_nth, 2, 2),
    "round": (_round, 1, 1),
    "floor": (_floor, 1, 1),
    "ceil": (_ceil, 1, 1),
    "clamp": (_clamp, 3, 3),
}

# Built-ins the original MOM did not have. A policy's own function of the same
# name takes their place (doc/policies/ksm.policy defines clamp), so a policy
# written before they existed keeps its meaning; for the same reason a call with
# the wrong number of arguments is an error of the static checks (checker.py)
# and of the run, not of compiling.
LATER_BUILTINS = frozenset(("sum", "count", "sort", "min-of", "max-of", "nth", "round", "floor", "ceil", "clamp"))

# Built-ins whose first argument is a list they read through.
LIST_BUILTINS = frozenset(("sum", "count", "sort", "min-of", "max-of", "nth"))

# and/or are forms: they stop at the first false (and) or true (or) argument.
SPECIAL_FORMS = ("defvar", "set", "setq", "def", "defun", "let", "if", "with", "and", "or")
