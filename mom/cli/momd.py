"""momd: the MOM daemon.

    momd -c FILE [-r POLICY_FILE | -P POLICY_DIR] [-p PLOT_DIR] [-l stdio|FILE]
         [-v LEVEL] [-d --pid-file FILE] [--check]

Exit status: 0 after a clean stop (SIGTERM, SIGINT), 2 for a bad configuration
or policy (one line on stderr), 1 for a failure while running.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from typing import Any

from mom.daemon.config import Config, ConfigError, add_cli_arguments, cli_overrides, load_config
from mom.daemon.preflight import check_outputs
from mom.policy.errors import PolicyError

log = logging.getLogger("mom")


class StartupError(Exception):
    """A problem found before the daemon starts: one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="momd", description="MOM, the Memory Overcommitment Manager daemon.")
    add_cli_arguments(parser)
    parser.add_argument("--check", action="store_true",
                        help="check the configuration and the policy, then exit (0 when good)")
    return parser


def _fail(message: str) -> int:
    print(f"momd: {message}", file=sys.stderr)
    return 2


def load_policies(config: Config) -> Any:
    """A PolicySet loaded from the configured file or directory. Raises StartupError."""
    from mom.policy.policy import PolicySet

    policies = PolicySet()
    try:
        policies.load_paths(config.main.policy or None, config.main.policy_dir or None)
    except PolicyError as e:
        raise StartupError(f"policy error: {e}") from None
    except OSError as e:
        raise StartupError(f"cannot read policy {e.filename}: {e.strerror}") from None
    return policies


def make_daemon(config: Config) -> Any:
    """Build the Daemon for a configuration. Raises StartupError."""
    from mom.daemon.daemon import Daemon, DaemonError

    policies = load_policies(config)
    try:
        return Daemon(config, policies)
    except DaemonError as e:
        raise StartupError(str(e)) from None


def check(config: Config, daemonize: bool) -> int:
    """momd --check: everything a start runs, short of starting. Exit status 0 or 2."""
    from mom.daemon.clock import Clock
    from mom.daemon.daemon import DaemonError, make_hypervisor

    found = check_outputs(config, daemonize=daemonize)
    try:
        load_policies(config)
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


def _daemonize() -> None:
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    # No chdir("/"): relative paths in the configuration stay valid for reloads.
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)


def _write_pid_file(path: str) -> None:
    with open(path, "w") as f:
        f.write(f"{os.getpid()}\n")


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
HANDLED_SIGNALS = {*STOP_SIGNALS, signal.SIGHUP}


def serve(daemon: Any) -> int:
    """Run the daemon on its own thread; this (main) thread waits for signals.

    The signals are blocked and taken with sigtimedwait, so no handler ever
    runs in the middle of the scheduler, a log write or a lock: a storm of
    SIGHUPs only sets the reload request, which the scheduler coalesces.
    """
    failed: list[BaseException] = []

    def run() -> None:
        try:
            daemon.run()
        except Exception as e:  # noqa: BLE001 - reported by the main thread
            failed.append(e)
            log.exception("momd failed")

    runner = threading.Thread(target=run, name="mom-engine")
    runner.start()
    stopping = False
    while runner.is_alive():
        info = signal.sigtimedwait(HANDLED_SIGNALS, 0.5)
        if info is None:
            continue
        if info.si_signo == signal.SIGHUP:
            if not stopping:
                daemon.reload_policies()
        elif not stopping:  # Ctrl-C in a terminal may deliver SIGINT twice (process and group)
            stopping = True
            log.info("%s received, stopping", signal.Signals(info.si_signo).name)
            daemon.stop()
    runner.join()
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Before any thread exists, so every thread inherits the mask: only serve()
    # takes these signals, synchronously.
    signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
    try:
        config = load_config(args.config_file, cli_overrides(args))
    except ConfigError as e:
        return _fail(str(e))
    if args.check:
        return check(config, args.daemonize)
    found = check_outputs(config, daemonize=args.daemonize)
    if found.errors:
        return _fail(found.errors[0])
    try:
        daemon = make_daemon(config)
    except StartupError as e:
        return _fail(str(e))

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

    if args.daemonize:
        _daemonize()
    if args.pid_file:
        try:
            _write_pid_file(args.pid_file)
        except OSError as e:
            daemon.close()
            log.error("cannot write the pid file %s: %s", args.pid_file, e.strerror)
            return 2
    try:
        status = serve(daemon)
    finally:
        daemon.close()
        if args.pid_file:
            try:
                os.unlink(args.pid_file)
            except OSError:
                pass
    log.info("momd stopped")
    logging.shutdown()
    return status


if __name__ == "__main__":
    sys.exit(main())
