"""The daemon: builds the engine and its outputs from a Config and runs it.

The daemon is where momd is put together, so it is the one place in
mom.daemon that builds the RPC server and the metrics endpoint (mom.rpc): it
binds them at construction, so that a port or socket that cannot be had is a
DaemonError before anything starts. They get the engine's status (a callable
returning the newest EngineStatus) and the daemon's :class:`Commands`, never
the engine.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mom.core.clock import Clock, FastClock
from mom.core.errors import MomError
from mom.core.faults import FaultLog
from mom.core.host_paths import PROC_ROOT, SYS_ROOT
from mom.daemon.config import Config, RpcDisabled, UnixSocket
from mom.daemon.plot import Plotter
from mom.daemon.recorder import FlightRecorder
from mom.daemon.status import TickLog
from mom.engine.engine import Engine, EngineSettings, StepListener
from mom.engine.explain import tick_trace
from mom.engine.status import EngineStatus, TickRecord
from mom.hypervisors import build_interface
from mom.hypervisors.base import HypervisorError, HypervisorInterface
from mom.policy.compiled import CompiledPolicy
from mom.policy.generate import trial_snapshot as generated_trial_snapshot
from mom.policy.policy import PolicySet
from mom.policy.snapshot import Snapshot
from mom.policy.trace import trace_run

if TYPE_CHECKING:
    from mom.rpc.metrics import Metrics, MetricsServer
    from mom.rpc.server import RpcServer

log = logging.getLogger("mom.daemon")
tick_log = logging.getLogger("mom.tick")


class DaemonError(MomError):
    """The daemon cannot be built from this configuration (one line)."""


def make_hypervisor(config: Config, clock: Clock) -> HypervisorInterface:
    """The configured hypervisor interface. Raises DaemonError."""
    from mom.sim.scenario import ScenarioError
    try:
        return build_interface(config, clock)
    except ScenarioError as e:
        raise DaemonError(str(e)) from None
    except HypervisorError as e:  # unknown name, missing library, vdsm's files, the simulator's tree: one line
        raise DaemonError(str(e)) from None


def make_outputs(config: Config, faults: FaultLog | None = None) -> tuple[Plotter | None, FlightRecorder | None]:
    """The plotter and the flight recorder, checked writable now: an output that
    cannot be written at start stops momd, as one that fails later is a fault in
    health (faults: the engine's). Creates nothing. Raises DaemonError."""
    main = config.main
    plotter = Plotter(main.plot_dir, faults) if main.plot_dir else None
    recorder = (FlightRecorder(main.record_file, main.record_max_bytes, main.record_backup_count, faults)
                if main.record_file else None)
    for output, option, where in ((plotter, "plot-dir", main.plot_dir), (recorder, "record-file", main.record_file)):
        if output is None:
            continue
        try:
            output.check()
        except OSError as e:
            raise DaemonError(f"[main] {option}: cannot write {where}: {e.strerror or e}") from None
    return plotter, recorder


class Commands:
    """What the RPC may change, and read of the policies (mom.rpc.api.DaemonControl)."""

    def __init__(self, policies: PolicySet, reset: Callable[[], None]) -> None:
        self.policies = policies
        self.reset = reset

    def policy_text(self) -> str:
        return self.policies.text()

    def policy_texts(self) -> dict[str, str]:
        return self.policies.texts()

    def policy_names(self) -> list[str]:
        return self.policies.names()

    def compiled_policy(self) -> CompiledPolicy | None:
        return self.policies.compiled

    def replace_policies(self, texts: dict[str, str]) -> None:
        self.policies.replace_all(texts)

    def set_policy(self, name: str, text: str | None) -> None:
        self.policies.set(name, text)

    def reset_policies(self) -> None:
        self.reset()

    def set_verbosity(self, level: int) -> None:
        logging.getLogger().setLevel(level)
        logging.getLogger("mom.policy.debug").setLevel(level)


class Daemon:
    def __init__(self, config: Config, policies: PolicySet, clock: Clock | None = None) -> None:
        """clock: the time source (default: real time, or FastClock for a sped-up simulator)."""
        self.config = config
        self.policies = policies
        main = config.main
        sim = main.hypervisor_interface == "sim"
        if clock is None:
            clock = FastClock(config.sim.speed) if sim and config.sim.speed != 1 else Clock()
        self.clock = clock
        self.tick_log = TickLog(tick_log)  # a line per tick that changed something, quiet ticks summarised
        self.faults = FaultLog(logging.getLogger("mom.faults"), clock.time)  # on the engine's clock
        # First: a refused start makes no simulator tree.
        self.plotter, self.recorder = make_outputs(config, self.faults)
        self.hypervisor = make_hypervisor(config, self.clock)
        proc_root, sys_root = main.proc_root, main.sys_root
        if sim:  # the simulated host is seen through its own tree, unless the config names another
            if proc_root == PROC_ROOT:
                proc_root = self.hypervisor.proc_root  # type: ignore[attr-defined]
            if sys_root == SYS_ROOT:
                sys_root = self.hypervisor.sys_root
        settings = EngineSettings.from_config(config, proc_root=proc_root, sys_root=sys_root)
        self.engine = Engine(settings, self.hypervisor, policies, self.clock, faults=self.faults,
                             on_tick=self._on_tick,
                             on_sample=self.plotter.sample if self.plotter else None,
                             on_guest_gone=self.plotter.forget if self.plotter else None,
                             trace=self._trace if self.recorder else None)
        self.commands = Commands(policies, self.reset_policies)
        # Every later policy change (SIGHUP, RPC) has its trial run on the newest statistics.
        self._generated_snapshot = policies.checks.trial_snapshot or (
            lambda: generated_trial_snapshot(*self.engine.fields()))
        policies.configure(checks=dataclasses.replace(policies.checks, trial_snapshot=self._trial_snapshot))
        self.rpc: RpcServer | None = None
        self.metrics: Metrics | None = None
        self.metrics_server: MetricsServer | None = None
        try:
            self._listen()
        except DaemonError:
            self.close()
            raise

    def _listen(self) -> None:
        """Bind the RPC server and the metrics endpoint (served from run()). Raises DaemonError."""
        main = self.config.main
        if not isinstance(main.rpc, RpcDisabled):
            from mom.rpc.api import MomApi
            from mom.rpc.server import Dispatcher, RpcServer, RpcServerError
            dispatcher = MomApi(self.engine.status, self.commands, self.clock.time).register(Dispatcher())
            try:
                if isinstance(main.rpc, UnixSocket):
                    self.rpc = RpcServer(dispatcher, path=main.rpc.path)
                else:
                    self.rpc = RpcServer(dispatcher, port=main.rpc.port)
            except RpcServerError as e:
                raise DaemonError(str(e)) from None
        if main.metrics_address is not None:
            from mom.rpc.metrics import Metrics, MetricsServer
            self.metrics = Metrics(self.engine.status)
            self.engine.add_step_listener(self.metrics.on_step)
            try:
                self.metrics_server = MetricsServer(self.metrics, main.metrics_address.host,
                                                    main.metrics_address.port)
            except OSError as e:
                raise DaemonError(f"metrics-address {main.metrics_address}: cannot listen: "
                                  f"{e.strerror or e}") from None

    def _trial_snapshot(self) -> Snapshot:
        """The newest statistics, or generated ones before the first collection."""
        snap = self.engine.snapshot()
        return snap if snap.host.statistics else self._generated_snapshot()

    def add_step_listener(self, listener: StepListener) -> None:
        """Called with (step, seconds) after each engine step (the watchdog)."""
        self.engine.add_step_listener(listener)

    def _on_tick(self, status: EngineStatus) -> None:
        self.tick_log.log_tick(status)
        if self.recorder is not None:
            self.recorder.write_tick(status)
        if self.metrics is not None:
            self.metrics.on_tick(status)

    def _trace(self, record: TickRecord) -> dict[str, Any] | None:
        """The policy's variables behind this tick's decisions, for the flight recorder:
        the host's, and those of the guests that got a control (so `momctl explain`
        works offline). The policy runs again, traced; a policy that failed is not."""
        if not record.decisions.ok:
            return None
        touched = set(record.decisions.guest_controls) | {a.target for a in record.actions if a.target != "host"}
        try:
            return tick_trace(trace_run(self.policies.compiled, record.snapshot), touched)
        except Exception:
            log.debug("tracing tick %d failed", record.number, exc_info=True)
            return None

    def run(self) -> None:
        log.info("momd running: interface %s, policy %s, controllers %s",
                 self.config.main.hypervisor_interface, ", ".join(self.policies.names()) or "(none)",
                 ", ".join(self.config.main.controllers) or "(none)")
        if self.rpc is not None:
            self.rpc.start()
        if self.metrics_server is not None:
            self.metrics_server.start()
        self.engine.run()

    def stop(self) -> None:
        self.engine.stop()

    def reset_policies(self) -> None:
        """Reload the configured policy file or directory; a bad one is rejected. Raises
        PolicyError or OSError."""
        self.policies.load_paths(self.config.main.policy or None, self.config.main.policy_dir or None)

    def reload_policies(self) -> None:
        """Reload on the scheduler thread (from a signal handler); errors are logged."""
        self.engine.request(lambda: self.engine.reload_policies(self.reset_policies))

    def close(self) -> None:
        for server in (getattr(self, "rpc", None), getattr(self, "metrics_server", None)):
            if server is not None:
                try:
                    server.close()  # the RPC server removes its socket file
                except Exception:
                    log.exception("closing %s failed", type(server).__name__)
        self.rpc = self.metrics_server = None
        self.engine.close()  # its pool's idle workers end
        self.hypervisor.close()
