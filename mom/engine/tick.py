"""One policy tick: the snapshot in, the policy's decisions, the controllers'
planned calls made on the pool under one deadline, and the tick's record out.

A hung call costs only its own target's control. Each control is one Action:
applied, refused while planning, refused by the call's error, refused for no
answer in time, or refused because that target's previous call has not
returned (never queued behind it). Calls answered after their deadline come
back as actions of a later tick.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from mom.controllers.base import REGISTRY as CONTROLLERS
from mom.controllers.base import Controller, ControllerContext, GuestView, Plan, PlannedCall, TickView
from mom.core.actions import HOST, Action
from mom.core.faults import FaultKey, FaultLog
from mom.engine.gateway import ControlCall, Gateway
from mom.engine.inventory import Inventory
from mom.engine.status import TickRecord
from mom.hypervisors.base import GuestGone, HypervisorUnavailable
from mom.policy.compiled import Decisions
from mom.policy.policy import PolicySet
from mom.policy.snapshot import Snapshot

POLICY = FaultKey("policy")
POLICY_NONE = FaultKey("policy", "none")
POLICY_EVALUATION = FaultKey("policy", "evaluation")

Outcome = tuple[Action, int]  # an action and the level its fault is logged at


class Ticker:
    """Runs policy ticks over the inventory, with the controllers, through the gateway."""

    def __init__(self, ctx: ControllerContext, names: tuple[str, ...], settings: dict[str, dict[str, str]],
                 policies: PolicySet, inventory: Inventory, gateway: Gateway, faults: FaultLog,
                 clock: Callable[[], float]) -> None:
        self.controllers: list[Controller] = [CONTROLLERS[n](ctx, settings.get(n)) for n in names]
        self.policies = policies
        self.inventory = inventory
        self.gateway = gateway
        self.faults = faults
        self.clock = clock
        self.count = 0
        self.last_run: dict[str, float] = {}  # "controller NAME" -> tick time of its last plan

    def tick(self, trace: Callable[[TickRecord], dict[str, Any] | None] | None = None) -> TickRecord | None:
        """One tick; its record, or None when the host's statistics are not complete."""
        if not self.inventory.host_ready:
            self.faults.report(POLICY, "host statistics are not complete; policy not run")
            return None
        self.faults.clear(POLICY)
        if not self.policies.names():
            # In health; logged once at start already (preflight), so not again here.
            self.faults.report(POLICY_NONE, "no policy in force: statistics are collected, nothing is controlled",
                               logging.DEBUG)
        else:
            self.faults.clear(POLICY_NONE)
        snap = self.inventory.snapshot()
        t0 = time.perf_counter()
        decisions = self.policies.run(snap)
        eval_seconds = time.perf_counter() - t0
        now = self.clock()
        actions: list[Action] = []
        if not decisions.ok:
            err = decisions.policy_error
            # Logged once while it lasts, rendered: file:line:col, the source line, a caret, the call chain.
            self.faults.report(POLICY_EVALUATION, err.render() if err else str(decisions.error), logging.ERROR)
        else:
            self.faults.clear(POLICY_EVALUATION)
            self.inventory.keep_variables(decisions)
            actions = self.apply(snap, decisions, now)
        self.count += 1
        record = TickRecord(self.count, now, snap, decisions, tuple(actions), eval_seconds)
        return dataclasses.replace(record, trace=trace(record)) if trace is not None else record

    def apply(self, snap: Snapshot, decisions: Decisions, now: float) -> list[Action]:
        """Plan each controller's calls and make them all on the pool, in parallel under
        one deadline (hypervisor-call-timeout), as collection does; one Action per control."""
        tick = self.tick_view(snap, decisions, now)
        results = self._late_results(now)  # controller -> outcomes
        slots: list[tuple[str, PlannedCall, ControlCall | str]] = []  # each call: sent, or why not
        refused: list[tuple[str, Action]] = []
        for c in self.controllers:
            plan = self._plan(c, tick)
            if plan is None:
                continue
            for call in plan.calls:
                previous = self.gateway.control_in_flight(c.name, call.target)
                if previous is not None:
                    why = f"previous {previous.call.name} call for {call.target} has not returned"
                    slots.append((c.name, call, why))
                else:
                    slots.append((c.name, call, self.gateway.send_control(c.name, call)))
            refused.extend((c.name, a) for a in plan.refused)
        done = self.gateway.wait([sent.future for _, _, sent in slots if isinstance(sent, ControlCall)])
        for controller, call, sent in slots:
            error, level = self._outcome(sent, done) if isinstance(sent, ControlCall) else (sent, logging.WARNING)
            results.setdefault(controller, []).extend((a, level) for a in call.actions(controller, now, error))
        for controller, a in refused:
            results.setdefault(controller, []).append((a, logging.WARNING))
        actions: list[Action] = []
        for controller, outcomes in results.items():
            actions.extend(a for a, _ in outcomes)
            self._report_refused(controller, outcomes)
        return actions

    def tick_view(self, snap: Snapshot, decisions: Decisions, now: float) -> TickView:
        """What the controllers get of a tick: the decisions with each guest's newest row."""
        by_name = self.inventory.by_name()
        views = []
        for g in snap.guests:
            name = g.properties["name"]
            controls = decisions.guest_controls.get(name)
            if controls and name in by_name:
                views.append(GuestView(by_name[name], g.statistics[-1], controls))
        return TickView(now, snap.host.statistics[-1] if snap.host.statistics else {},
                        decisions.host_controls, views)

    def _late_results(self, now: float) -> dict[str, list[Outcome]]:
        """The actions of calls that missed an earlier deadline and have returned since."""
        results: dict[str, list[Outcome]] = {}
        note = f"answered after the {self.gateway.call_timeout:g} s deadline"
        for sent in self.gateway.returned_controls(self.inventory.names() | {HOST}):
            error, level = answer(sent.future)
            results.setdefault(sent.controller, []).extend(
                (a, level) for a in sent.call.actions(sent.controller, now, error, note))
        return results

    def _outcome(self, sent: ControlCall, done: set[Future[Any]]) -> tuple[str | None, int]:
        """A sent call's error (None: applied) and its fault's level, once the deadline
        has passed. A call still running stays in flight: its target gets no other
        call until it returns."""
        if sent.future in done:
            return answer(sent.future)
        if self.gateway.stopping:  # the wait ended early
            sent.future.cancel()
            return "not answered: momd is stopping", logging.DEBUG
        if sent.future.cancel():  # still queued: every worker is busy with hung calls
            return f"not sent: no free worker within {self.gateway.call_timeout:g} s", logging.WARNING
        self.gateway.hold(sent)
        return self.gateway.timeout_message(), logging.WARNING

    def _plan(self, controller: Controller, tick: TickView) -> Plan | None:
        """The controller's plan; None (and a fault) when it has a bug."""
        key = FaultKey("controller", controller.name)
        try:
            plan = controller.plan(tick)
        except Exception as e:  # noqa: BLE001 - a broken controller is a fault, not a crash
            self.faults.report(key, f"{type(e).__name__}: {e}", logging.ERROR)
            return None
        self.faults.clear(key)
        self.last_run[f"controller {controller.name}"] = tick.time
        return plan

    def _report_refused(self, controller: str, outcomes: list[Outcome]) -> None:
        """A refused action is a fault of its target and controller: logged once (at the
        given level), until one is applied."""
        refused: dict[FaultKey, tuple[str, int]] = {}
        applied: set[FaultKey] = set()
        for a, level in outcomes:
            key = FaultKey("controller", f"controller {controller}", a.target)
            if a.applied:
                applied.add(key)
            else:
                refused.setdefault(key, (a.reason or "refused", level))
        for key, (reason, level) in refused.items():
            if not self.gateway.stopping:
                self.faults.report(key, reason, level)
        for key in applied - refused.keys():
            self.faults.clear(key)


def answer(future: Future[Any]) -> tuple[str | None, int]:
    """A finished control call's error (None: applied) and the level its fault is logged at."""
    try:
        future.result()
    except (GuestGone, HypervisorUnavailable) as e:
        # A guest that vanished since it was listed is normal under churn, and an
        # outage is logged by the interface itself: recorded, logged at debug level.
        return str(e) or type(e).__name__, logging.DEBUG
    except Exception as e:  # noqa: BLE001 - any error is this target's refused control
        return str(e) or type(e).__name__, logging.WARNING
    return None, logging.WARNING
