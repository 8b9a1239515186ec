"""momd: the MOM daemon.

    momd [-c FILE] [-r POLICY_FILE | -P POLICY_DIR] [-p PLOT_DIR] [-l stdio|FILE]
         [-v LEVEL] [-d --pid-file FILE] [--check]

Without -c, momd reads the first of DEFAULT_CONFIG_FILES that exists (the
package's /etc/mom/mom.conf, then the original MOM's /etc/mom.conf and
/etc/momd.conf), else runs
on the built-in defaults with a warning.

Exit status: 0 after a clean stop (SIGTERM, SIGINT), 2 for a bad configuration
or policy (one line on stderr), 1 for a failure while running.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mom import __version__
from mom.core.errors import MomError
from mom.daemon import sdnotify
from mom.daemon.config import Config, ConfigError, add_cli_arguments, cli_overrides, load_config
from mom.daemon.preflight import check_outputs
from mom.policy.errors import PolicyError

if TYPE_CHECKING:  # imported when a daemon is made: --help and --check stay light
    from mom.daemon.daemon import Daemon

log = logging.getLogger("mom")


# Where momd looks without -c: the package's path first, then the original MOM's
# (/etc/mom.conf; its RPM installed /etc/momd.conf).
DEFAULT_CONFIG_FILES = ("/etc/mom/mom.conf", "/etc/mom.conf", "/etc/momd.conf")


class StartupError(MomError):
    """A problem found before the daemon starts: one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="momd", description="MOM, the Memory Overcommitment Manager daemon.")
    add_cli_arguments(parser)
    parser.add_argument("--check", action="store_true",
                        help="check the configuration and the policy, then exit (0 when good)")
    parser.add_argument("--version", action="version", version=f"momd {__version__}")
    return parser


def default_config_file(candidates: tuple[str, ...] = DEFAULT_CONFIG_FILES) -> str | None:
    """The first configuration file that exists, or None (then the built-in defaults apply)."""
    return next((path for path in candidates if os.path.exists(path)), None)


def read_config(args: argparse.Namespace) -> Config:
    """The configuration from -c, else from the default files, else the defaults. Raises ConfigError."""
    path = args.config_file if args.config_file is not None else default_config_file()
    config = load_config(path, cli_overrides(args))
    if path is None:
        # Said, not silent: a momd started by hand on defaults has no policy and no socket.
        missing = f"no configuration file (-c FILE; none of {', '.join(DEFAULT_CONFIG_FILES)} exists): " \
                  "running on the built-in defaults"
        config = dataclasses.replace(config, warnings=(missing, *config.warnings))
    return config


def _fail(message: str) -> int:
    print(f"momd: {message}", file=sys.stderr)
    return 2


def load_policies(config: Config) -> tuple[Any, list[str]]:
    """A PolicySet loaded from the configured file or directory, validated as
    every later change is (parse, static checks, a trial run on generated
    statistics), and its warnings. Raises StartupError."""
    from mom.daemon.policy_checks import policy_checks
    from mom.policy.policy import PolicySet

    policies = PolicySet(checks=policy_checks(config))
    try:
        warnings = policies.load_paths(config.main.policy or None, config.main.policy_dir or None)
    except PolicyError as e:
        raise StartupError(f"policy error: {e}") from None
    except OSError as e:
        raise StartupError(f"cannot read policy {e.filename}: {e.strerror}") from None
    return policies, [str(w) for w in warnings]


def make_daemon(config: Config) -> tuple[Daemon, list[str]]:
    """Build the Daemon for a configuration; also the policy's warnings. Raises StartupError."""
    from mom.daemon.daemon import Daemon, DaemonError

    policies, warnings = load_policies(config)
    try:
        return Daemon(config, policies), warnings
    except DaemonError as e:
        raise StartupError(str(e)) from None


def check(config: Config, daemonize: bool, pid_file: str | None = None) -> int:
    """momd --check: everything a start runs, short of starting. Exit status 0 or 2."""
    from mom.core.clock import Clock
    from mom.daemon.daemon import DaemonError, make_hypervisor

    found = check_outputs(config, daemonize=daemonize, pid_file=pid_file)
    try:
        found.warnings.extend(load_policies(config)[1])
    except StartupError as e:
        found.errors.append(str(e))
    try:
        make_hypervisor(config, Clock()).close()
    except DaemonError as e:
        found.errors.append(str(e))
    for warning in (*config.warnings, *found.warnings):
        print(f"momd: warning: {warning}", file=sys.stderr)
    for error in found.errors:
        print(f"momd: {error}", file=sys.stderr)
    if found.errors:
        return 2
    print(f"momd: {config.source or 'defaults'}: configuration and policy are good")
    return 0


def _daemonize(pid_file: str | None) -> Callable[[int], None]:
    """Detach (double fork, new session, stdio to /dev/null). The first process
    waits until the detached one says it started (its pid file written), so
    `momd -d` returns only then, with the detached process's status: 0, or 2
    when it could not start. Returns the function the detached process calls
    with that status."""
    read_end, write_end = os.pipe()
    if os.fork() > 0:
        os.close(write_end)
        answer = os.read(read_end, 1)
        os._exit(answer[0] if answer else 1)
    os.close(read_end)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    # No chdir("/"): relative paths in the configuration stay valid for reloads.
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1):
        os.dup2(devnull, fd)

    def started(status: int) -> None:
        os.dup2(devnull, 2)  # stderr stays the terminal's until the start is told
        try:
            os.write(write_end, bytes([status]))
        except OSError:
            pass
        os.close(write_end)

    return started


def _write_pid_file(path: str) -> None:
    """Write the pid atomically: whoever reads the file never sees it empty."""
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w") as f:
            f.write(f"{os.getpid()}\n")
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
HANDLED_SIGNALS = {*STOP_SIGNALS, signal.SIGHUP}


def make_watchdog(daemon: Daemon, notifier: sdnotify.Notifier) -> sdnotify.Watchdog | None:
    """A watchdog pinging systemd while the engine finishes steps, when the unit has WatchdogSec=."""
    timeout = sdnotify.watchdog_timeout()
    if timeout is None or not notifier.enabled:
        return None
    last_step = [time.monotonic()]

    def on_step(name: str, seconds: float) -> None:
        last_step[0] = time.monotonic()

    daemon.add_step_listener(on_step)
    main = daemon.config.main
    longest = max(main.host_monitor_interval, main.guest_monitor_interval, main.guest_manager_interval,
                  main.policy_engine_interval)
    # A step waits at most the call timeout per round of calls; twice the longest interval
    # plus three rounds is well past any healthy pause between two finished steps.
    return sdnotify.Watchdog(notifier, timeout, lambda: last_step[0],
                             stall_after=2 * longest + 3 * main.hypervisor_call_timeout)


def serve(daemon: Daemon, notifier: sdnotify.Notifier | None = None) -> int:
    """Run the daemon on its own thread; this (main) thread waits for signals.

    The signals are blocked and taken with sigtimedwait, so no handler ever
    runs in the middle of the scheduler, a log write or a lock: a storm of
    SIGHUPs only sets the reload request, which the scheduler coalesces.
    """
    failed: list[BaseException] = []

    def run() -> None:
        try:
            daemon.run()
        except Exception as e:
            failed.append(e)
            log.exception("momd failed")

    notifier = notifier or sdnotify.Notifier(None)
    watchdog = make_watchdog(daemon, notifier)
    # A daemon thread: a stop that gives up on a stuck engine must not then wait for it.
    runner = threading.Thread(target=run, name="mom-engine", daemon=True)
    runner.start()
    # The RPC socket is bound and listening since the Daemon was built: ready now.
    notifier.send("READY=1", f"STATUS=running: interface {daemon.config.main.hypervisor_interface}")
    stopping = False
    stop_by = math.inf
    while runner.is_alive():
        if watchdog is not None and not stopping:
            watchdog.poll()
        info = signal.sigtimedwait(HANDLED_SIGNALS, 0.5)
        if info is None or info.si_signo not in HANDLED_SIGNALS:  # (0 was seen with a debugger attached)
            pass
        elif info.si_signo == signal.SIGHUP:
            if not stopping:
                daemon.reload_policies()
        elif not stopping:  # Ctrl-C in a terminal may deliver SIGINT twice (process and group)
            stopping = True
            stop_by = time.monotonic() + stop_deadline(daemon)
            notifier.send("STOPPING=1")
            log.info("%s received, stopping", signal.Signals(info.si_signo).name)
            daemon.stop()
        if stopping and time.monotonic() > stop_by:
            # The engine is stuck in a call that does not return (a hung mount, a
            # blocked read): give up on it rather than ignore SIGTERM.
            log.error("the engine did not stop within %g s; exiting without it", stop_deadline(daemon))
            return STUCK
    runner.join()
    return 1 if failed else 0


STUCK = -1  # serve(): the engine did not stop in time


def stop_deadline(daemon: Daemon) -> float:
    """Seconds a stop may take: a round of calls under their deadline, and some."""
    return 2 * daemon.config.main.hypervisor_call_timeout + 5


def _not_detached(status: int) -> None:
    """Without --daemonize there is no waiting parent to tell the start-up status."""


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = read_config(args)
    except ConfigError as e:
        return _fail(str(e))
    if args.check:
        return check(config, args.daemonize, args.pid_file)
    # Before any thread exists, so every thread inherits the mask: only serve()
    # takes these signals, synchronously.
    signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
    found = check_outputs(config, daemonize=args.daemonize, pid_file=args.pid_file)
    if found.errors:
        return _fail(found.errors[0])
    try:
        daemon, policy_warnings = make_daemon(config)
    except StartupError as e:
        return _fail(str(e))
    found.warnings.extend(policy_warnings)

    from mom.daemon.logsetup import setup_logging
    try:
        setup_logging(config.logging.log, config.logging.level, config.logging.max_bytes,
                      config.logging.backup_count)
    except OSError as e:
        daemon.close()
        return _fail(f"cannot open log {config.logging.log}: {e.strerror}")
    for warning in (*config.warnings, *found.warnings):
        log.warning("%s", warning)
        if args.daemonize:  # the log may be going nowhere after detaching: say it on the terminal too
            print(f"momd: warning: {warning}", file=sys.stderr)

    started: Callable[[int], None] = _not_detached
    if args.daemonize:
        started = _daemonize(args.pid_file)
    if args.pid_file:
        try:
            _write_pid_file(args.pid_file)
        except OSError as e:
            daemon.close()
            log.error("cannot write the pid file %s: %s", args.pid_file, e.strerror)
            print(f"momd: cannot write the pid file {args.pid_file}: {e.strerror}", file=sys.stderr)
            started(2)
            return 2
    started(0)
    notifier = sdnotify.Notifier.from_environment()
    try:
        status = serve(daemon, notifier)
        if status == STUCK:  # closing might hang on what the engine hangs on: leave now
            if args.pid_file:
                _unlink(args.pid_file)
            logging.shutdown()
            os._exit(1)
    finally:
        notifier.close()
        daemon.close()
        if args.pid_file:
            _unlink(args.pid_file)
    log.info("momd stopped")
    logging.shutdown()
    return status


if __name__ == "__main__":
    sys.exit(main())
