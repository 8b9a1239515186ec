"""The RPC methods: the original MOM's API plus getRecentActions and getHealth.

Methods read the engine's published status (mom.engine.status, an immutable
value) and change things through the daemon's small command interface
(:class:`DaemonControl`): nothing here runs on, or waits for, the engine's
scheduler thread, and nothing here knows the engine's insides.

=====================  =========================================================
ping()                 True
getStatistics()        {"host": newest host row, "guests": {name: newest row}}
getActiveGuests()      names of the guests being managed
getPolicy()            all policy texts joined in name order; '0' when empty
setPolicy(text)        replace every named policy by this one text (nil: clear);
                       False when rejected, the old policies staying in force
setNamedPolicy(n, t)   add or replace policy n (nil: delete it); False if rejected
getNamedPolicies()     {name: text}
resetPolicies()        reload the configured policy file or directory; bool

A policy is rejected when it does not parse, fails the static checks (unknown
function, variable or control, wrong arity) or fails a trial run on the newest
statistics. With a trailing ``explain`` argument of true (new; momctl passes
it), a rejection is a Fault with code 5 whose string is the rendered error
(file:line:col, the source line, a caret, the call chain).
setVerbosity(level)    debug|info|warn|error|critical or 5..1; True
getRecentActions(n)    the last n applied controls, oldest first
getHealth()            per component: ok, errors, last error, last run
explainGuest(n[, t])   why guest n got its controls in the last tick (t: that
                       tick's number, which must be the last): the policy's
                       functions that ran for it, its variables, the inputs
=====================  =========================================================
"""

from __future__ import annotations

import logging
import xmlrpc.client
from collections.abc import Callable
from typing import Any, Protocol

from mom.core.verbosity import parse_verbosity
from mom.engine.status import EngineStatus, StatusSource
from mom.policy.compiled import CompiledPolicy
from mom.policy.errors import PolicyError
from mom.policy.policy import DEFAULT_POLICY_NAME
from mom.rpc.server import FAULT_BAD_REQUEST, Dispatcher, cached_response

FAULT_POLICY = 5  # a policy change was rejected; the fault string is the rendered error

log = logging.getLogger("mom.rpc")

RECENT_ACTIONS_DEFAULT = 20
HEALTH_COMPONENTS = ("engine", "hypervisor", "collector", "policy", "controller", "output")


def _bad(message: str) -> xmlrpc.client.Fault:
    return xmlrpc.client.Fault(FAULT_BAD_REQUEST, message)


def _text_or_none(value: Any, what: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise _bad(f"{what} must be a string or nil, got {type(value).__name__}")


class DaemonControl(Protocol):
    """What the RPC may ask of the daemon: its policies (read and changed) and its
    verbosity. The changes raise PolicyError (or OSError for a reset that cannot
    read the configured files) and leave the old policy in force."""

    def policy_text(self) -> str: ...
    def policy_texts(self) -> dict[str, str]: ...
    def policy_names(self) -> list[str]: ...
    def compiled_policy(self) -> CompiledPolicy | None: ...
    def replace_policies(self, texts: dict[str, str]) -> None: ...
    def set_policy(self, name: str, text: str | None) -> None: ...
    def reset_policies(self) -> None: ...
    def set_verbosity(self, level: int) -> None: ...


def verbosity_level(level: Any) -> int:
    """A Python logging level from a name or 1-5. Raises Fault."""
    value = parse_verbosity(level)
    if value is None:
        raise _bad(f"verbosity: expected debug, info, warn, error, critical or 1-5, got {level!r}")
    return value


def _collection_round(status: EngineStatus) -> tuple[Any, ...]:
    """What changes when the engine's statistics or guests may have changed: its
    tick count and the times of its last discovery and collections."""
    run = status.last_run
    return status.tick_count, len(status.guests), run.get("discovery"), run.get("host"), run.get("guests")


class MomApi:
    """The methods, reading the engine's status and changing things through the daemon.

    status: returns the engine's newest status; now: the engine's clock (health's time).
    """

    def __init__(self, status: StatusSource, control: DaemonControl, now: Callable[[], float]) -> None:
        self.status = status
        self.control = control
        self.now = now

    def register(self, dispatcher: Dispatcher) -> Dispatcher:
        for name in ("ping", "getStatistics", "getActiveGuests", "getPolicy", "setPolicy", "setNamedPolicy",
                     "getNamedPolicies", "resetPolicies", "setVerbosity", "getRecentActions", "getHealth",
                     "explainGuest"):
            dispatcher.register(name, getattr(self, name))
        return dispatcher

    # -- the original's methods ----------------------------------------------------------
    def ping(self) -> bool:
        return True

    # Marshalled once per collection round (many clients, one marshalling: at 200
    # guests the statistics take tens of milliseconds to marshal).
    @cached_response(lambda api: _collection_round(api.status()))
    def getStatistics(self) -> dict[str, Any]:
        status = self.status()
        guests = {g.name: dict(g.row) for g in status.guests if g.row is not None}
        return {"host": dict(status.host), "guests": guests}

    @cached_response(lambda api: _collection_round(api.status()))
    def getActiveGuests(self) -> list[str]:
        return self.status().guest_names()

    def getPolicy(self) -> str:
        return self.control.policy_text()

    def setPolicy(self, text: Any = None, explain: Any = False) -> bool:
        text = _text_or_none(text, "policy")
        return self._change("setPolicy", "policy " + ("cleared" if text is None else "replaced"), explain,
                            lambda: self.control.replace_policies({} if text is None else {DEFAULT_POLICY_NAME: text}))

    def setNamedPolicy(self, name: Any, text: Any = None, explain: Any = False) -> bool:
        if not isinstance(name, str) or not name:
            raise _bad("policy name must be a non-empty string")
        text = _text_or_none(text, "policy")
        return self._change(f"setNamedPolicy {name}", f"policy {name} {'deleted' if text is None else 'set'}",
                            explain, lambda: self.control.set_policy(name, text))

    def getNamedPolicies(self) -> dict[str, str]:
        return self.control.policy_texts()

    def resetPolicies(self, explain: Any = False) -> bool:
        return self._change("resetPolicies", "policy reloaded from the configuration", explain,
                            self.control.reset_policies)

    def _change(self, call: str, done: str, explain: Any, change: Callable[[], None]) -> bool:
        """Run a policy change. A rejected one leaves the old policy in force and is
        logged with the rendered error; the original's clients get False, callers
        that pass explain=True (momctl) a Fault carrying the rendered error."""
        before = self.control.policy_texts()
        try:
            change()
        except PolicyError as e:
            reason = e.render()
        except OSError as e:
            reason = f"cannot read {e.filename}: {e.strerror}"
        else:
            # vdsm pushes the same parameters again and again: a change is news, a repeat is not.
            level = logging.INFO if self.control.policy_texts() != before else logging.DEBUG
            log.log(level, "%s: %s: %s", call, done if level == logging.INFO else "unchanged",
                    ", ".join(self.control.policy_names()) or "(no policy)")
            return True
        log.warning("%s: rejected, the previous policy stays in force: %s", call, reason)
        if explain is True:
            raise xmlrpc.client.Fault(FAULT_POLICY, reason)
        return False

    def setVerbosity(self, level: Any) -> bool:
        self.control.set_verbosity(verbosity_level(level))
        return True

    # -- new -------------------------------------------------------------------------------
    def getRecentActions(self, n: Any = RECENT_ACTIONS_DEFAULT) -> list[dict[str, Any]]:
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise _bad(f"n must be an integer >= 0, got {n!r}")
        actions = self.status().recent_actions[-n:] if n else ()
        return [{"time": a.time, "guest": a.target, "controller": a.controller, "control": a.control,
                 "old": a.old, "new": a.new} for a in actions]

    def getHealth(self) -> dict[str, Any]:
        status = self.status()
        active = status.faults.active
        counts = status.faults.counts
        last = status.faults.last
        last_run = status.last_run
        runs = {
            "engine": max(last_run.values(), default=None),
            "hypervisor": last_run.get("discovery"),
            "collector": max((last_run[k] for k in ("host", "guests") if k in last_run), default=None),
            "policy": last_run.get("policy"),
            "controller": max((v for k, v in last_run.items() if k.startswith("controller ")), default=None),
            "output": last_run.get("output"),
        }
        components: dict[str, Any] = {}
        for comp in sorted(set(HEALTH_COMPONENTS) | counts.keys() | active.keys()):
            when, message = last.get(comp, (None, None))
            components[comp] = {
                "ok": comp not in active,
                "errors": counts.get(comp, 0),
                "active": dict(active.get(comp, {})),
                "last_error": message,
                "last_error_time": when,
                "last_run": runs.get(comp),
            }
        tick = status.last_tick
        return {
            "ok": not active,
            "time": self.now(),  # the engine's clock, as every other time here
            "ticks": status.tick_count,
            "last_tick": tick.time if tick is not None else None,
            "components": components,
        }

    def explainGuest(self, name: Any, tick: Any = None) -> dict[str, Any]:
        """Explain the guest's controls in the last tick (mom.engine.explain): the
        tick's recorded trace, else the snapshot evaluated again with the policy in force."""
        from mom.engine.explain import ExplainError, explain  # only for this call
        from mom.policy.policy import json_value
        if not isinstance(name, str) or not name:
            raise _bad("guest name must be a non-empty string")
        if tick is not None and (isinstance(tick, bool) or not isinstance(tick, int)):
            raise _bad(f"tick must be an integer, got {tick!r}")
        status = self.status()
        last = status.last_tick
        applied = [a for a in status.recent_actions if a.target == name]
        if last is None:
            raise _bad("no policy tick yet")
        if tick is not None and tick != last.number:
            raise _bad(f"momd keeps its last tick only ({last.number}); "
                       "explain older ticks from the flight recorder (momctl explain --record FILE)")
        try:
            out = explain(json_value(last.to_json()), name, self.control.compiled_policy())
        except ExplainError as err:
            raise _bad(str(err)) from None
        out["last_applied"] = applied[-1].to_json() if applied else None
        answer: dict[str, Any] = json_value(out)
        return answer
