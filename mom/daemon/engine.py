"""The engine: discovery, collection, policy and controllers on their intervals.

One scheduler thread owns time; blocking hypervisor calls and controllers run
on a small fixed pool with deadlines. Nothing is per guest: the thread count is
the same for 1 guest or 1,000.

Data flows one way: collectors -> history -> snapshot -> policy -> decisions ->
controllers. The snapshot is a plain value, the same thing the flight recorder
writes and `momctl policy run` replays.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from concurrent.futures import Future, wait
from dataclasses import dataclass, field
from typing import Any, Callable

from mom.collectors.base import REGISTRY as COLLECTORS, CollectionError, Collector, CollectorContext, GuestSubject
from mom.controllers.base import (REGISTRY as CONTROLLERS, Action, Controller, ControllerContext, GuestView, Plan,
                                  PlannedCall, TickView)
from mom.daemon.clock import Clock
from mom.daemon.faults import FaultLog
from mom.daemon.pool import CallPool
from mom.hypervisors.base import GuestData, GuestGone, GuestInfo, HypervisorInterface, HypervisorUnavailable
from mom.policy.errors import PolicyError
from mom.policy.policy import Decisions, PolicySet
from mom.policy.snapshot import EntityData, Snapshot

log = logging.getLogger("mom.engine")
tick_log = logging.getLogger("mom.tick")

POOL_SIZE = 4
RELOAD_MIN_INTERVAL = 1.0  # real seconds between two policy reloads, however many are requested


@dataclass
class EngineSettings:
    """The engine's part of the configuration (intervals in clock seconds)."""

    host_interval: float = 5.0
    guest_interval: float = 5.0
    discovery_interval: float = 5.0
    policy_interval: float = 10.0
    history_length: int = 10
    call_timeout: float = 10.0
    host_collectors: tuple[str, ...] = ("HostMemory",)
    guest_collectors: tuple[str, ...] = ("GuestQemuProc", "GuestMemory")
    collector_settings: dict[str, dict[str, str]] = field(default_factory=dict)
    controller_settings: dict[str, dict[str, str]] = field(default_factory=dict)
    controllers: tuple[str, ...] = ("Balloon",)
    proc_root: str = "/proc"
    sys_root: str = "/sys"


@dataclass
class GuestState:
    info: GuestInfo
    history: collections.deque
    ready: bool = False
    variables: dict[str, Any] = field(default_factory=dict)
    pending: Future | None = None  # a collection call still running (hung guest)
    merging: Future | None = None  # blocking collectors still running for this guest


@dataclass
class ControlCall:
    """A controller's planned call handed to the pool."""

    controller: str
    call: PlannedCall
    future: Future


@dataclass
class TickRecord:
    """What one policy tick saw, decided and did (for the recorder, RPC, metrics)."""

    number: int
    time: float
    snapshot: Snapshot
    decisions: Decisions
    actions: list[Action]
    eval_seconds: float
    # The policy's variables and functions behind the decisions (mom.daemon.explain.tick_trace),
    # when the daemon traced the tick (it does for the flight recorder).
    trace: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"tick": self.number, "time": self.time, **self.snapshot.to_json()}
        out.update(self.decisions.to_json())
        out["actions"] = [a.to_json() for a in self.actions]
        if self.trace is not None:
            out["trace"] = self.trace
        return out


def _split_fields(collectors: list[Collector]) -> tuple[set[str], set[str]]:
    mandatory: set[str] = set()
    optional: set[str] = set()
    for c in collectors:
        mandatory |= c.mandatory
        optional |= c.optional
    return mandatory, optional - mandatory


class Engine:
    """Runs MOM's pipeline against one hypervisor interface."""

    def __init__(self, settings: EngineSettings, hypervisor: HypervisorInterface, policies: PolicySet,
                 clock: Clock | None = None, on_tick: Callable[[TickRecord], None] | None = None,
                 on_sample: Callable[[str, float, dict[str, Any]], None] | None = None) -> None:
        self.s = settings
        self.hv = hypervisor
        self.policies = policies
        self.clock = clock or Clock()
        self.on_tick = on_tick or (lambda record: None)
        self.on_sample = on_sample or (lambda entity, t, row: None)
        self.on_step: Callable[[str, float], None] | None = None  # (step, seconds) after each step, for metrics
        self.on_guest_gone: Callable[[str], None] = lambda name: None  # outputs drop a gone guest's state
        self.faults = FaultLog(logging.getLogger("mom.faults"), self.clock.time)
        ctx = CollectorContext(proc_root=settings.proc_root, sys_root=settings.sys_root, hypervisor=hypervisor,
                               interval=settings.host_interval, clock=self.clock.time, guests=self.known_guests)
        gctx = CollectorContext(proc_root=settings.proc_root, sys_root=settings.sys_root, hypervisor=hypervisor,
                                interval=settings.guest_interval, clock=self.clock.time)
        cs = settings.collector_settings
        self.host_collectors = [COLLECTORS[n](ctx, cs.get(n)) for n in settings.host_collectors]
        self.guest_collectors = [COLLECTORS[n](gctx, cs.get(n)) for n in settings.guest_collectors]
        self.host_fields = _split_fields(self.host_collectors)
        self.guest_fields = _split_fields(self.guest_collectors)
        self.sections = set().union(*(c.sections for c in self.guest_collectors)) if self.guest_collectors else set()
        self._blocking = any(c.blocking for c in self.guest_collectors)
        cctx = ControllerContext(hypervisor=hypervisor, sys_root=settings.sys_root, clock=self.clock.time)
        self.controllers = [CONTROLLERS[n](cctx, settings.controller_settings.get(n)) for n in settings.controllers]

        self.host_history: collections.deque = collections.deque(maxlen=settings.history_length)
        self.host_ready = False
        self.host_variables: dict[str, Any] = {}
        self.guests: dict[str, GuestState] = {}  # by uuid
        self.recent_actions: collections.deque[Action] = collections.deque(maxlen=1000)
        self.last_tick: TickRecord | None = None
        self.tick_count = 0
        self.last_run: dict[str, float] = {}  # component -> clock time of its last success
        self.lock = threading.RLock()  # guards the state RPC and metrics read
        self.pool = CallPool(POOL_SIZE)
        self._inflight: dict[str, Future] = {}  # call name -> its last future
        # (controller, target) -> a control call that missed its deadline and has not returned
        self._controls_inflight: dict[tuple[str, str], ControlCall] = {}
        self._event = threading.Event()
        self._stopping = False
        self._reload: Callable[[], None] | None = None
        self._next_reload = 0.0  # time.monotonic() before which a requested reload waits
        self._discover_soon = False
        listen = getattr(hypervisor, "set_change_listener", None)  # interfaces with guest start/stop events
        if listen is not None:
            listen(self.discover_soon)

    def known_guests(self) -> list[GuestInfo]:
        """The guests discovery knows, without a hypervisor call."""
        with self.lock:
            return [s.info for s in self.guests.values()]

    # -- control from outside (signals, RPC) ------------------------------------------
    def stop(self) -> None:
        self._stopping = True
        self._event.set()

    def discover_soon(self) -> None:
        """Run discovery at the scheduler's next wake-up (the hypervisor saw a guest start or stop)."""
        self._discover_soon = True
        self._event.set()

    def request(self, action: Callable[[], None]) -> None:
        """Run ``action`` on the scheduler thread soon (a reload): requests made
        before it runs replace each other, and it runs at most once per
        RELOAD_MIN_INTERVAL."""
        self._reload = action
        self._event.set()  # cheap; the scheduler runs the reload when its turn comes

    # -- the scheduler ---------------------------------------------------------------
    def run(self) -> None:
        """Run until stop(). Each task runs when due, in pipeline order."""
        tasks: list[tuple[str, float, Callable[[], None]]] = [
            ("discovery", self.s.discovery_interval, self.discover),
            ("host", self.s.host_interval, self.collect_host),
            ("guests", self.s.guest_interval, self.collect_guests),
            ("policy", self.s.policy_interval, self.run_policy),
        ]
        now = self.clock.time()
        due = {name: now for name, _, _ in tasks}
        try:
            while not self._stopping:
                now = self.clock.time()
                for name, interval, task in tasks:
                    if now >= due[name] and not self._stopping:
                        self._guarded(name, task)
                        due[name] = max(due[name] + interval, now + interval * 0.5)
                if self._stopping:
                    break
                if self._reload is not None and time.monotonic() >= self._next_reload and not self._stopping:
                    # Requests that came meanwhile are one reload: a SIGHUP storm cannot starve the ticks.
                    action, self._reload = self._reload, None
                    self._next_reload = time.monotonic() + RELOAD_MIN_INTERVAL
                    self._guarded("reload", action)
                sleep = min(due.values()) - self.clock.time()
                if self._reload is not None:  # a reload is waiting for its turn
                    sleep = min(sleep, (self._next_reload - time.monotonic()) * self.clock.speed)
                if self.clock.wait(sleep, self._event):
                    self._event.clear()
                    if self._discover_soon:
                        self._discover_soon = False
                        due["discovery"] = self.clock.time()
        finally:
            self.pool.shutdown()

    def _guarded(self, name: str, task: Callable[[], None]) -> None:
        t0 = time.perf_counter()
        try:
            task()
        except Exception as e:  # noqa: BLE001 - a bug in one step must not stop the daemon
            log.exception("%s step failed", name)
            self.faults.report(f"engine {name}", f"{type(e).__name__}: {e}", "engine", logging.ERROR)
        if self.on_step is not None:
            try:
                self.on_step(name, time.perf_counter() - t0)
            except Exception:  # noqa: BLE001
                log.exception("on_step failed")

    def _call(self, what: str, fn: Callable[[], Any]) -> tuple[bool, Any]:
        """Run a hypervisor call on the pool with the deadline; (ok, result)."""
        previous = self._inflight.get(what)
        if previous is not None and not previous.done():
            # The last call is still running (hung): do not queue another behind it,
            # or the pool fills up and stale calls (old controls) run later.
            if not self._stopping:
                self.faults.report(f"hypervisor {what}", "the previous call has not returned yet", "hypervisor")
            return False, None
        future = self._inflight[what] = self.pool.submit(fn)
        if not self._wait([future]):
            if not self._stopping:
                self.faults.report(f"hypervisor {what}", f"no answer within {self.s.call_timeout:g} s", "hypervisor")
            return False, None
        try:
            result = future.result()
        except HypervisorUnavailable as e:  # the interface logs its outage itself
            self.faults.report(f"hypervisor {what}", str(e), "hypervisor", logging.DEBUG)
            return False, None
        except Exception as e:  # noqa: BLE001 - any interface error is one logged fault
            self.faults.report(f"hypervisor {what}", str(e) or type(e).__name__, "hypervisor")
            return False, None
        self.faults.clear(f"hypervisor {what}")
        return True, result

    def _wait(self, futures: list[Future]) -> set[Future]:
        """Wait for futures up to the call deadline, returning early on stop."""
        deadline = time.monotonic() + self.s.call_timeout
        pending = set(futures)
        while pending and not self._stopping:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            _, pending = wait(pending, timeout=min(left, 0.2))  # all done, or a slice passed
        return set(futures) - pending

    # -- steps -------------------------------------------------------------------------
    def discover(self) -> None:
        ok, guests = self._call("list_guests", self.hv.list_guests)
        if not ok:
            return  # keep the guests we know
        seen = {g.uuid: g for g in guests}
        with self.lock:
            for uuid in [u for u in self.guests if u not in seen]:
                state = self.guests.pop(uuid)
                log.info("guest %s (%s) is gone", state.info.name, uuid)
                self.on_guest_gone(state.info.name)
                self.faults.clear_prefix(f"guest {state.info.name} ")
                for key in [k for k in self._inflight if k.endswith(f" {state.info.name}")]:
                    del self._inflight[key]
                for c in self.guest_collectors:
                    forget = getattr(c, "forget", None)
                    if forget:
                        forget(uuid)
            new = [g for uuid, g in seen.items() if uuid not in self.guests]
            for g in new:
                self.guests[g.uuid] = GuestState(g, collections.deque(maxlen=self.s.history_length))
            for uuid, g in seen.items():
                self.guests[uuid].info = g  # pid or name may change
        for g in new:
            log.info("guest %s (%s) found, pid %s", g.name, g.uuid, g.pid)
        if new:  # one call, one deadline for all new guests
            self._call("guest_added", lambda: [self.hv.guest_added(g, self.s.guest_interval) for g in new])
        self.last_run["discovery"] = self.clock.time()

    def _merge(self, key: str, collectors: list[Collector], subject: GuestSubject | None,
               fields: tuple[set[str], set[str]]) -> dict[str, Any] | None:
        """Run collectors and merge their rows; None when mandatory fields are missing."""
        row: dict[str, Any] = {}
        failed = False
        for c in collectors:
            fkey = f"{key} collector {c.name}"
            try:
                data = c.collect(subject)
            except CollectionError as e:
                # When its data section failed, that failure was already logged: one fault, one line.
                if subject is None or not any(sec in subject.data.errors for sec in c.sections):
                    self.faults.report(fkey, str(e), "collector")
                failed = True
                continue
            except Exception as e:  # noqa: BLE001 - a broken collector is a fault, not a crash
                self.faults.report(fkey, f"{type(e).__name__}: {e}", "collector", logging.ERROR)
                failed = True
                continue
            self.faults.clear(fkey)
            row.update(data)
        mandatory, optional = fields
        missing = sorted(mandatory - row.keys())
        if missing:
            # A failed collector was just reported: one fault, one log line.
            if not failed:
                self.faults.report(f"{key} statistics", f"missing {', '.join(missing)}; left out of the policy",
                                   "collector")
            return None
        self.faults.clear(f"{key} statistics")
        for name in optional:
            row.setdefault(name, None)
        return row

    def collect_host(self) -> None:
        row = self._merge("host", self.host_collectors, None, self.host_fields)
        now = self.clock.time()
        with self.lock:
            self.host_ready = row is not None
            if row is not None:
                self.host_history.append(row)
        if row is not None:
            self.last_run["host"] = now
            self.on_sample("host", now, row)

    def collect_guests(self) -> None:
        with self.lock:
            states = [s for s in self.guests.values()]
        if not states:
            self.last_run["guests"] = self.clock.time()
            return
        data = self._collect_data(states)
        now = self.clock.time()
        for state in states:
            gd = data.get(state.info.uuid)
            if gd is None:
                state.ready = False
                continue
            for section in self.sections:
                message = gd.errors.get(section)
                if message is None:
                    self.faults.clear(f"guest {state.info.name} {section}")
                else:
                    self.faults.report(f"guest {state.info.name} {section}", message, "hypervisor")
        rows = self._merge_guests(states, data)
        for state in states:
            if state.info.uuid not in data:
                continue
            row = rows.get(state.info.uuid)
            with self.lock:
                state.ready = row is not None
                if row is not None:
                    state.history.append(row)
            if row is not None:
                self.on_sample(state.info.name, now, row)
        self.last_run["guests"] = now

    def _merge_guests(self, states: list[GuestState], data: dict[str, GuestData]) -> dict[str, dict[str, Any] | None]:
        """Each guest's merged row. Collectors that block (the guest agent) run on the
        pool under the deadline, so a hung guest cannot hold up the scheduler."""
        def merge(state: GuestState) -> dict[str, Any] | None:
            return self._merge(f"guest {state.info.name}", self.guest_collectors,
                               GuestSubject(state.info, data[state.info.uuid]), self.guest_fields)

        todo = [s for s in states if s.info.uuid in data]
        if not self._blocking:
            return {s.info.uuid: merge(s) for s in todo}
        futures: dict[str, Future] = {}
        for s in todo:
            if s.merging is not None and not s.merging.done():
                continue  # its collectors are still busy from an earlier round
            s.merging = futures[s.info.uuid] = self.pool.submit(merge, s)
        done = self._wait(list(futures.values()))
        rows: dict[str, dict[str, Any] | None] = {}
        for s in todo:
            key = f"guest {s.info.name} collectors"
            f = futures.get(s.info.uuid)
            if f is None or f not in done:
                if not self._stopping:
                    self.faults.report(key, f"no answer within {self.s.call_timeout:g} s", "collector")
                continue
            self.faults.clear(key)
            rows[s.info.uuid] = f.result()  # _merge never raises
        return rows

    def _collect_data(self, states: list[GuestState]) -> dict[str, GuestData]:
        if not self._call("refresh", self.hv.refresh)[0]:
            return {}
        sections = self.sections
        if not sections:
            return {s.info.uuid: GuestData() for s in states}
        if self.hv.bulk:
            ok, result = self._call("collect_all", lambda: self.hv.collect_all([s.info for s in states], sections))
            return result if ok else {}
        # Per guest, in parallel, with one deadline: a hung guest only loses its own data.
        futures: dict[str, Future] = {}
        for s in states:
            if s.pending is not None and not s.pending.done():
                continue  # its last call is still hanging; do not pile up more
            s.pending = futures[s.info.uuid] = self.pool.submit(self.hv.collect_all, [s.info], sections)
        done = self._wait(list(futures.values()))
        result: dict[str, GuestData] = {}
        for s in states:
            key = f"guest {s.info.name} collection"
            f = s.pending
            if f is None or f not in done:
                if f is not None and not self._stopping:  # on stop, _wait returns before the deadline
                    self.faults.report(key, f"no answer within {self.s.call_timeout:g} s", "hypervisor")
                continue
            try:
                result.update(f.result())
                self.faults.clear(key)
            except HypervisorUnavailable as e:  # logged by the interface
                self.faults.report(key, str(e), "hypervisor", logging.DEBUG)
            except Exception as e:  # noqa: BLE001
                self.faults.report(key, str(e) or type(e).__name__, "hypervisor")
        return result

    def snapshot(self) -> Snapshot:
        """The plain value the policy sees: host and ready guests with their history."""
        with self.lock:
            host = EntityData({}, list(self.host_history), dict(self.host_variables))
            guests = [EntityData({"name": s.info.name, "uuid": s.info.uuid, "pid": s.info.pid},
                                 list(s.history), dict(s.variables))
                      for s in self.guests.values() if s.ready and s.history]
        return Snapshot(host, guests)

    def run_policy(self) -> None:
        if not self.host_ready:
            self.faults.report("policy", "host statistics are not complete; policy not run", "policy")
            return
        self.faults.clear("policy")
        if not self.policies.names():
            # In health; logged once at start already (preflight), so not again here.
            self.faults.report("policy none", "no policy in force: statistics are collected, nothing is controlled",
                               "policy", logging.DEBUG)
        else:
            self.faults.clear("policy none")
        snap = self.snapshot()
        t0 = time.perf_counter()
        decisions = self.policies.run(snap)
        eval_seconds = time.perf_counter() - t0
        now = self.clock.time()
        actions: list[Action] = []
        if not decisions.ok:
            err = decisions.policy_error
            # Logged once while it lasts, rendered: file:line:col, the source line, a caret, the call chain.
            self.faults.report("policy evaluation", err.render() if err else str(decisions.error), "policy",
                               logging.ERROR)
        else:
            self.faults.clear("policy evaluation")
            with self.lock:
                self.host_variables = dict(decisions.host_variables)
                for s in self.guests.values():
                    if s.info.name in decisions.guest_variables:
                        s.variables = dict(decisions.guest_variables[s.info.name])
            actions = self.apply(snap, decisions, now)
        with self.lock:
            self.tick_count += 1
            record = TickRecord(self.tick_count, now, snap, decisions, actions, eval_seconds)
            self.last_tick = record
            self.recent_actions.extend(a for a in actions if a.applied)
        self.last_run["policy"] = now
        self.on_tick(record)

    def apply(self, snap: Snapshot, decisions: Decisions, now: float) -> list[Action]:
        """Plan each controller's calls and make them all on the pool, in parallel under
        one deadline (hypervisor-call-timeout), as collection does: a hung call costs
        only its own target's control. Returns one Action per control: applied,
        refused while planning, refused by the call's error, refused for no answer
        in time, or refused because that target's previous call has not returned
        (never queued behind it). Calls answered after their deadline come back as
        actions of a later tick."""
        tick = self._tick_view(snap, decisions, now)
        results = self._late_results(now)  # controller -> [(action, level of its fault)]
        slots: list[tuple[str, PlannedCall, ControlCall | str]] = []  # each call: sent, or why not
        refused: list[tuple[str, Action]] = []
        for c in self.controllers:
            plan = self._plan(c, tick)
            if plan is None:
                continue
            for call in plan.calls:
                previous = self._controls_inflight.get((c.name, call.target))
                if previous is not None:
                    why = f"previous {previous.call.name} call for {call.target} has not returned"
                    slots.append((c.name, call, why))
                else:
                    slots.append((c.name, call, ControlCall(c.name, call, self.pool.submit(call.run))))
            refused.extend((c.name, a) for a in plan.refused)
        done = self._wait([sent.future for _, _, sent in slots if isinstance(sent, ControlCall)])
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

    def _late_results(self, now: float) -> dict[str, list[tuple[Action, int]]]:
        """The actions of calls that missed an earlier deadline and have returned since
        (their targets are free again); calls for guests that are gone are forgotten."""
        known = {s.info.name for s in self.guests.values()}
        results: dict[str, list[tuple[Action, int]]] = {}
        for key, sent in list(self._controls_inflight.items()):
            target = sent.call.target
            if not sent.future.done():
                if target != "host" and target not in known:
                    del self._controls_inflight[key]
                continue
            del self._controls_inflight[key]
            if target == "host" or target in known:
                error, level = self._answer(sent.future)
                note = f"answered after the {self.s.call_timeout:g} s deadline"
                results.setdefault(sent.controller, []).extend(
                    (a, level) for a in sent.call.actions(sent.controller, now, error, note))
        return results

    def _outcome(self, sent: ControlCall, done: set[Future]) -> tuple[str | None, int]:
        """A sent call's error (None: applied) and its fault's level, once the deadline
        has passed. A call still running stays in flight: its target gets no other
        call until it returns."""
        if sent.future in done:
            return self._answer(sent.future)
        if self._stopping:  # the wait ended early
            sent.future.cancel()
            return "not answered: momd is stopping", logging.DEBUG
        if sent.future.cancel():  # still queued: every worker is busy with hung calls
            return f"not sent: no free worker within {self.s.call_timeout:g} s", logging.WARNING
        self._controls_inflight[(sent.controller, sent.call.target)] = sent
        return f"no answer within {self.s.call_timeout:g} s", logging.WARNING

    def _tick_view(self, snap: Snapshot, decisions: Decisions, now: float) -> TickView:
        by_name = {s.info.name: s.info for s in self.guests.values()}
        views = []
        for g in snap.guests:
            name = g.properties["name"]
            controls = decisions.guest_controls.get(name)
            if controls and name in by_name:
                views.append(GuestView(by_name[name], g.statistics[-1], controls))
        return TickView(now, snap.host.statistics[-1] if snap.host.statistics else {},
                        decisions.host_controls, views)

    def _plan(self, controller: Controller, tick: TickView) -> Plan | None:
        """The controller's plan; None (and a fault) when it has a bug."""
        key = f"controller {controller.name}"
        try:
            plan = controller.plan(tick)
        except Exception as e:  # noqa: BLE001 - a broken controller is a fault, not a crash
            self.faults.report(key, f"{type(e).__name__}: {e}", "controller", logging.ERROR)
            return None
        self.faults.clear(key)
        self.last_run[key] = tick.time
        return plan

    @staticmethod
    def _answer(future: Future) -> tuple[str | None, int]:
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

    def _report_refused(self, controller: str, outcomes: list[tuple[Action, int]]) -> None:
        """A refused action is a fault of its target and controller: logged once (at the
        given level), until one is applied."""
        refused: dict[str, tuple[str, int]] = {}
        applied: set[str] = set()
        for a, level in outcomes:
            key = f"{'host' if a.target == 'host' else 'guest ' + a.target} controller {controller}"
            if a.applied:
                applied.add(key)
            else:
                refused.setdefault(key, (a.reason or "refused", level))
        for key, (reason, level) in refused.items():
            if not self._stopping:
                self.faults.report(key, reason, "controller", level)
        for key in applied - refused.keys():
            self.faults.clear(key)

    def reload_policies(self, load: Callable[[], None]) -> None:
        """Run a policy (re)load; a bad policy leaves the old one in force."""
        try:
            load()
        except PolicyError as e:
            log.error("policy not reloaded, the previous one stays in force: %s", e.render())
        except OSError as e:
            log.error("policy not reloaded, the previous one stays in force: %s: %s", e.filename, e.strerror)
        else:
            log.info("policy reloaded: %s", ", ".join(self.policies.names()) or "(empty)")
