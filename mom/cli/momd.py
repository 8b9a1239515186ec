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


def _daemonize(pid_file: str | None) -> None:
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    # No chdir("/"): relative paths in the configuration stay valid for reloads.
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    if pid_file:
        with open(pid_file, "w") as f:
            f.write(f"{os.getpid()}\n")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config_file, cli_overrides(args))
    except ConfigError as e:
        return _fail(str(e))
    try:
        if args.check:
            load_policies(config)
            from mom.hypervisors import interface_class
            from mom.hypervisors.base import InterfaceUnavailable
            try:
                interface_class(config.main.hypervisor_interface)
            except InterfaceUnavailable as e:
                raise StartupError(str(e)) from None
            print(f"momd: {config.source or 'defaults'}: configuration and policy are good")
            return 0
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
    for warning in config.warnings:
        log.warning("%s", warning)

    if args.daemonize:
        _daemonize(args.pid_file)

    stopping = []

    def on_stop(signum: int, frame: Any) -> None:
        if not stopping:  # Ctrl-C in a terminal may deliver SIGINT twice (process and group)
            log.info("%s received, stopping", signal.Signals(signum).name)
        stopping.append(signum)
        daemon.stop()

    def on_hup(signum: int, frame: Any) -> None:
        log.info("SIGHUP received, reloading the policy")
        daemon.reload_policies()

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, on_hup)
    try:
        daemon.run()
    except Exception:  # noqa: BLE001 - last resort: say what happened, exit 1
        log.exception("momd failed")
        return 1
    finally:
        daemon.close()
        if args.daemonize and args.pid_file:
            try:
                os.unlink(args.pid_file)
            except OSError:
                pass
    log.info("momd stopped")
    logging.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
