"""Engine: the gateway, inventory, rows, tick and scheduler put together.

Its public seam: the steps (``discover``, ``collect_host``, ``collect_guests``,
``run_policy``, or ``step(name)`` guarded as the scheduler runs them), the
lifecycle (``start``, ``run``, ``stop``, ``close``), ``request`` for a reload,
listeners for ticks and steps, and ``status()``: the immutable value published
after each step, the only thing readers outside take.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from mom.collectors.base import CollectorContext, GuestSubject
from mom.controllers.base import ControllerContext
from mom.core.actions import HOST, Action
from mom.core.clock import Clock
from mom.core.faults import FaultKey, FaultLog
from mom.core.pool import CallPool
from mom.engine.gateway import POOL_SIZE, Gateway, Pool
from mom.engine.inventory import GuestState, Inventory, Row
from mom.engine.rows import RowSource
from mom.engine.scheduler import Scheduler
from mom.engine.status import EMPTY_ROW, EngineStatus, GuestStatus, TickRecord
from mom.engine.tick import Ticker
from mom.hypervisors.base import Capability, GuestData, GuestInfo, HypervisorInterface
from mom.policy.errors import PolicyError
from mom.policy.policy import PolicySet
from mom.policy.snapshot import Snapshot

log = logging.getLogger("mom.engine")

RECENT_ACTIONS = 1000  # applied controls kept for getRecentActions and explainGuest

TickListener = Callable[[EngineStatus], None]  # after a tick, with the status holding its record
StepListener = Callable[[str, float], None]  # (step, seconds) after each step
Tracer = Callable[[TickRecord], dict[str, Any] | None]  # a tick's trace for its record


@dataclass
class EngineSettings:
    """The engine's part of the configuration (intervals in clock seconds).

    No defaults here: the configuration schema (mom.daemon.config_schema) owns
    them. :meth:`from_config` reads a configuration (the daemon's Config, or the
    defaults, ``load_config(None)``) as momd does."""

    host_interval: float
    guest_interval: float
    discovery_interval: float
    policy_interval: float
    history_length: int
    call_timeout: float
    host_collectors: tuple[str, ...]
    guest_collectors: tuple[str, ...]
    controllers: tuple[str, ...]
    proc_root: str
    sys_root: str
    collector_settings: dict[str, dict[str, str]] = field(default_factory=dict)
    controller_settings: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: Any, **changes: Any) -> EngineSettings:
        """The settings a configuration gives (read by attribute: the engine does not
        import the daemon's Config), with ``changes`` over them (a simulated host's
        proc_root and sys_root, a test's collectors)."""
        main = config.main
        settings = cls(
            host_interval=main.host_monitor_interval, guest_interval=main.guest_monitor_interval,
            discovery_interval=main.guest_manager_interval, policy_interval=main.policy_engine_interval,
            history_length=main.sample_history_length, call_timeout=main.hypervisor_call_timeout,
            host_collectors=config.host_collectors, guest_collectors=config.guest_collectors,
            controllers=main.controllers, proc_root=main.proc_root, sys_root=main.sys_root,
            collector_settings=config.collector_settings, controller_settings=config.controller_settings)
        return replace(settings, **changes)

    def schedule(self) -> list[tuple[str, float]]:
        """The steps in pipeline order, with their intervals."""
        return [("discovery", self.discovery_interval), ("host", self.host_interval),
                ("guests", self.guest_interval), ("policy", self.policy_interval)]


class Engine:
    """Runs MOM's pipeline against one hypervisor interface. Building one starts no
    thread: the pool starts with ``start`` (or its first call), ``close`` ends it."""

    def __init__(self, settings: EngineSettings, hypervisor: HypervisorInterface, policies: PolicySet,
                 clock: Clock | None = None, *, faults: FaultLog | None = None, pool: Pool | None = None,
                 on_tick: TickListener | None = None,
                 on_sample: Callable[[str, float, Row], None] | None = None,
                 on_guest_gone: Callable[[str], None] | None = None, trace: Tracer | None = None) -> None:
        """faults: where faults go (default: the "mom.faults" logger, on this clock);
        pool: where blocking calls run (default: CallPool(POOL_SIZE)); on_sample:
        each new row (entity, time, row); on_guest_gone: a guest's name when it
        went away; trace: computes a tick's trace for its record."""
        self.settings = settings
        self.hv = hypervisor
        self.policies = policies
        self.clock = clock or Clock()
        self.faults = faults or FaultLog(logging.getLogger("mom.faults"), self.clock.time)
        self.gateway = Gateway(pool if pool is not None else CallPool(POOL_SIZE), settings.call_timeout, self.faults)
        self.inventory = Inventory(settings.history_length)
        cs = settings.collector_settings
        ctx = CollectorContext(proc_root=settings.proc_root, sys_root=settings.sys_root, hypervisor=hypervisor,
                               interval=settings.host_interval, clock=self.clock.time,
                               guests=self.inventory.known_guests)
        gctx = CollectorContext(proc_root=settings.proc_root, sys_root=settings.sys_root, hypervisor=hypervisor,
                                interval=settings.guest_interval, clock=self.clock.time)
        self.host_rows = RowSource(ctx, settings.host_collectors, cs, self.faults)
        self.guest_rows = RowSource(gctx, settings.guest_collectors, cs, self.faults)
        cctx = ControllerContext(hypervisor=hypervisor, sys_root=settings.sys_root, clock=self.clock.time)
        self.ticker = Ticker(cctx, settings.controllers, settings.controller_settings, policies, self.inventory,
                             self.gateway, self.faults, self.clock.time)
        self.scheduler = Scheduler(self.clock, settings.schedule(), self.step)
        self._steps: dict[str, Callable[[], None]] = {
            "discovery": self.discover, "host": self.collect_host, "guests": self.collect_guests,
            "policy": self.run_policy}
        self._on_sample = on_sample
        self._on_guest_gone = on_guest_gone
        self._trace = trace
        self._tick_listeners: list[TickListener] = [on_tick] if on_tick is not None else []
        self._step_listeners: list[StepListener] = []
        self._recent: list[Action] = []  # applied controls, newest last, at most RECENT_ACTIONS
        self._last_run: dict[str, float] = {}  # step -> clock time of its last success
        # guest name -> (section, its fault key) for each section collected: made once per
        # guest, not for every section of every guest at every step.
        self._section_keys: dict[str, tuple[tuple[str, FaultKey], ...]] = {}
        self._status = EngineStatus(time=self.clock.time(), faults=self.faults.tallies())
        if hypervisor.supports(Capability.EVENTS):  # guests starting and stopping are announced
            hypervisor.set_change_listener(self.discover_soon)

    # -- what readers get ----------------------------------------------------------------
    def status(self) -> EngineStatus:
        """The newest published status (an immutable value; reading it never waits)."""
        return self._status

    def fields(self) -> tuple[set[str], set[str]]:
        """The statistics the host's and the guests' collectors give (for a generated snapshot)."""
        return self.host_rows.fields(), self.guest_rows.fields()

    def snapshot(self) -> Snapshot:
        """What the policy would see now (the newest rows of the host and ready guests)."""
        return self.inventory.snapshot()

    def add_tick_listener(self, listener: TickListener) -> None:
        self._tick_listeners.append(listener)

    def add_step_listener(self, listener: StepListener) -> None:
        self._step_listeners.append(listener)

    # -- lifecycle and control from outside (signals, RPC) ---------------------------------
    def start(self) -> None:
        """Start the call pool's threads (run() does)."""
        self.gateway.pool.start()

    def run(self) -> None:
        """Run the scheduler until stop(), then close."""
        self.start()
        try:
            self.scheduler.run(self._guarded)
        finally:
            self.close()

    def stop(self) -> None:
        self.gateway.stopping = True
        self.scheduler.stop()

    def close(self) -> None:
        """Stop, and let the pool's idle workers end (hung ones are abandoned)."""
        self.stop()
        self.gateway.pool.close()

    def discover_soon(self) -> None:
        """Run discovery at the scheduler's next wake-up (the hypervisor saw a guest start or stop)."""
        self.scheduler.discover_soon()

    def request(self, action: Callable[[], None]) -> None:
        """Run ``action`` on the scheduler thread soon (a reload): requests made
        before it runs replace each other, and it runs at most once a second."""
        self.scheduler.request(action)

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

    # -- steps -----------------------------------------------------------------------------
    def step(self, name: str) -> None:
        """Run one step by name as the scheduler does: a failure is a fault, not the end."""
        self._guarded(name, self._steps[name])

    def _guarded(self, name: str, task: Callable[[], None]) -> None:
        t0 = time.perf_counter()
        try:
            task()
        except Exception as e:
            log.exception("%s step failed", name)
            self.faults.report(FaultKey("engine", name), f"{type(e).__name__}: {e}", logging.ERROR)
            self._publish(name)
        seconds = time.perf_counter() - t0
        for listener in self._step_listeners:
            try:
                listener(name, seconds)
            except Exception:
                log.exception("step listener failed")

    def discover(self) -> None:
        ok, listed = self.gateway.call("list_guests", self.hv.list_guests)
        if ok:  # else keep the guests we know
            new, gone = self.inventory.update(listed)
            for state in gone:
                self._forget(state)
            for g in new:
                log.info("guest %s (%s) found, pid %s", g.name, g.uuid, g.pid)
            if new:  # one call, one deadline for all new guests
                self.gateway.call("guest_added", lambda: self._added(new))
            self._last_run["discovery"] = self.clock.time()
        self._publish("discovery")

    def _added(self, guests: list[GuestInfo]) -> None:
        for g in guests:
            self.hv.guest_added(g, self.settings.guest_interval)

    def _forget(self, state: GuestState) -> None:
        log.info("guest %s (%s) is gone", state.info.name, state.info.uuid)
        if self._on_guest_gone is not None:
            self._on_guest_gone(state.info.name)
        self.faults.forget_target(state.info.name)
        self.gateway.forget_guest(state.info.uuid)
        self.guest_rows.forget(state.info.uuid)
        self._section_keys.clear()  # by name: made again for the guests that remain

    def collect_host(self) -> None:
        row = self.host_rows.row(HOST, None)
        now = self.clock.time()
        self.inventory.add_host_row(row)
        if row is not None:
            self._last_run["host"] = now
            if self._on_sample is not None:
                self._on_sample(HOST, now, row)
        self._publish("host")

    def collect_guests(self) -> None:
        states = self.inventory.states()
        if states:
            self._collect_guests(states)
        self._last_run["guests"] = self.clock.time()
        self._publish("guests")

    def _collect_guests(self, states: list[GuestState]) -> None:
        sections = self.guest_rows.sections
        data = self.gateway.guest_data(self.hv, [s.info for s in states], sections)
        now = self.clock.time()
        for state in states:
            gd = data.get(state.info.uuid)
            if gd is None:
                state.ready = False
                continue
            errors = gd.errors
            for section, key in self._guest_section_keys(state.info.name, sections):
                message = errors.get(section) if errors else None
                if message is None:
                    self.faults.clear(key)
                elif section in gd.unsupported and section not in self.guest_rows.required_sections:
                    self.faults.clear(key)
                    self._note_unsupported(state, key, message)
                else:
                    self.faults.report(key, message)
        rows = self._guest_rows([s for s in states if s.info.uuid in data], data)
        for state in states:
            if state.info.uuid not in data:
                continue
            row = rows.get(state.info.uuid)
            self.inventory.add_guest_row(state, row)
            if row is not None and self._on_sample is not None:
                self._on_sample(state.info.name, now, row)

    def _guest_section_keys(self, name: str, sections: set[str]) -> tuple[tuple[str, FaultKey], ...]:
        keys = self._section_keys.get(name)
        if keys is None:
            keys = self._section_keys[name] = tuple(
                (section, FaultKey("hypervisor", section, name)) for section in sections)
        return keys

    @staticmethod
    def _note_unsupported(state: GuestState, key: FaultKey, message: str) -> None:
        """A section only optional collectors read, which this guest lacks (no
        virtio-mem device): normal, so not a fault; one info line per guest."""
        if key.what in state.unsupported_noted:
            return
        state.unsupported_noted.add(key.what)
        log.info("%s: %s (only optional collectors read it: their fields are nil)", key, message)

    def _guest_rows(self, states: list[GuestState], data: dict[str, GuestData]) -> dict[str, Row | None]:
        """Each guest's merged row. Collectors that block (the guest agent) run on the
        pool under the deadline, so a hung guest cannot hold up the scheduler."""
        by_uuid = {s.info.uuid: s for s in states}

        def merge(state: GuestState) -> Row | None:
            return self.guest_rows.row(state.info.name, GuestSubject(state.info, data[state.info.uuid]))

        if not self.guest_rows.blocking:
            return {s.info.uuid: merge(s) for s in states}
        done = self.gateway.per_guest([s.info for s in states], lambda info: merge(by_uuid[info.uuid]))
        rows: dict[str, Row | None] = {}
        for s in states:
            key = FaultKey("collector", "collectors", s.info.name)
            f = done.get(s.info.uuid)
            if f is None:
                if not self.gateway.stopping:
                    self.faults.report(key, self.gateway.timeout_message())
                continue
            self.faults.clear(key)
            rows[s.info.uuid] = f.result()  # RowSource.row never raises
        return rows

    def run_policy(self) -> None:
        record = self.ticker.tick(self._trace)
        if record is None:
            self._publish("policy")
            return
        self._last_run["policy"] = record.time
        self._recent.extend(a for a in record.actions if a.applied)
        if len(self._recent) > RECENT_ACTIONS:
            del self._recent[:-RECENT_ACTIONS]
        status = self._publish("policy", record)
        for listener in self._tick_listeners:
            listener(status)
        self._publish_faults()  # an output's failure to write the tick shows at once

    # -- publishing ------------------------------------------------------------------------
    def _publish(self, step: str, record: TickRecord | None = None) -> EngineStatus:
        """Build and publish the status after a step; the parts the step cannot have
        changed are taken from the previous status."""
        prev = self._status
        inv = self.inventory
        guests = prev.guests
        if step != "host" and step != "policy":
            guests = tuple(GuestStatus(s.info.name, s.info.uuid, s.info.pid, s.ready,
                                       MappingProxyType(s.history[-1]) if s.history else None)
                           for s in inv.guests.values())
        last_run = dict(self._last_run)
        last_run.update(self.ticker.last_run)
        self._status = status = EngineStatus(
            time=self.clock.time(),
            host=MappingProxyType(inv.host_history[-1]) if inv.host_history else EMPTY_ROW,
            guests=guests,
            tick_count=self.ticker.count,
            last_tick=record if record is not None else prev.last_tick,
            recent_actions=tuple(self._recent) if record is not None else prev.recent_actions,
            faults=self.faults.tallies(),
            last_run=MappingProxyType(last_run))
        return status

    def _publish_faults(self) -> None:
        tallies = self.faults.tallies()
        if tallies is not self._status.faults:  # the same object while nothing was reported or cleared
            self._status = replace(self._status, faults=tallies)
