"""MOM's configuration: the original oVirt MOM INI format, parsed and validated once.

:func:`load_config` reads the INI file (``key: value`` or ``key = value``; empty
values allowed; no ``%`` interpolation), applies ``section.key`` overrides from
the command line, checks everything and returns a frozen :class:`Config`. Code
below the CLI only ever sees typed values. Any problem raises
:class:`ConfigError` whose message is one line naming the file, section and key.

Every section and key, with its parser, default and help, is in
:data:`mom.daemon.config_schema.SCHEMA` (``momd --help-config`` prints it;
doc/configuration.md's tables are generated from it). This module turns a file
into the dataclasses below along that table; the dataclasses' defaults are the
table's. Besides the table's sections, ``[Collector: NAME]`` and
``[Controller: NAME]`` hold free-form settings handed to that plugin.

An unknown section or key is an error with a "did you mean" suggestion: a typo
such as ``polcy-dir`` or ``[loging]`` must not leave momd running without a
policy or logging somewhere unexpected. Relative paths are relative to momd's
working directory, as in the original.
"""

from __future__ import annotations

import argparse
import ast
import configparser
import difflib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from mom.core.errors import MomError
from mom.daemon.config_schema import (
    DEFAULTS,
    RPC_DISABLED,
    SECTIONS,
    HostPort,
    Invalid,
    RpcDisabled,
    RpcEndpoint,
    TcpPort,
    UnixSocket,
    default_factory,
    help_text,
    setting,
    settings_of,
)

__all__ = [
    "Config", "ConfigError", "DEFAULTS", "HostPort", "LoggingConfig",
    "MainConfig", "RPC_DISABLED", "RpcDisabled", "RpcEndpoint", "SimConfig", "TcpPort",
    "UnixSocket", "VdsmConfig", "add_cli_arguments", "cli_overrides", "load_config",
]


class ConfigError(MomError):
    """The configuration is unusable; the message is one line for the user."""

    def __init__(self, message: str) -> None:
        # One line, always: the CLI prints it as is.
        super().__init__(" ".join(message.split("\n")))


# --- typed configuration (field defaults: the schema's, parsed) -----------------

def _default(section: str, key: str) -> Any:
    return field(default_factory=default_factory(section, key))


@dataclass(frozen=True)
class MainConfig:
    """The [main] section."""

    main_loop_interval: float = _default("main", "main-loop-interval")
    host_monitor_interval: float = _default("main", "host-monitor-interval")
    guest_monitor_interval: float = _default("main", "guest-monitor-interval")
    guest_manager_interval: float = _default("main", "guest-manager-interval")
    policy_engine_interval: float = _default("main", "policy-engine-interval")
    sample_history_length: int = _default("main", "sample-history-length")
    hypervisor_interface: str = _default("main", "hypervisor-interface")
    libvirt_hypervisor_uri: str = _default("main", "libvirt-hypervisor-uri")
    qmp_socket_glob: str = _default("main", "qmp-socket-glob")
    controllers: tuple[str, ...] = _default("main", "controllers")
    plot_dir: str = _default("main", "plot-dir")
    rpc: RpcEndpoint = _default("main", "rpc-port")
    policy: str = _default("main", "policy")
    policy_dir: str = _default("main", "policy-dir")
    record_file: str = _default("main", "record-file")
    record_max_bytes: int = _default("main", "record-max-bytes")
    record_backup_count: int = _default("main", "record-backup-count")
    metrics_address: HostPort | None = _default("main", "metrics-address")
    proc_root: str = _default("main", "proc-root")
    sys_root: str = _default("main", "sys-root")
    hypervisor_call_timeout: float = _default("main", "hypervisor-call-timeout")


@dataclass(frozen=True)
class LoggingConfig:
    """The [logging] section; ``level`` is a Python logging level."""

    log: str = _default("logging", "log")
    level: int = _default("logging", "verbosity")
    max_bytes: int = _default("logging", "max-bytes")
    backup_count: int = _default("logging", "backup-count")

    @property
    def to_stdio(self) -> bool:
        return self.log in ("stdio", "stdout", "stderr")


@dataclass(frozen=True)
class VdsmConfig:
    """The [vdsm] section: how to reach vdsm's JSON-RPC server."""

    pki_dir: str = _default("vdsm", "pki-dir")
    key_file: str = _default("vdsm", "key-file")
    cert_file: str = _default("vdsm", "cert-file")
    ca_cert_file: str = _default("vdsm", "ca-cert-file")
    host: str = _default("vdsm", "host")
    port: int = _default("vdsm", "port")
    request_timeout: float = _default("vdsm", "request-timeout")

    # Relative file names are relative to pki-dir (an absolute one stays as is).
    @property
    def key_path(self) -> str:
        return os.path.join(self.pki_dir, self.key_file)

    @property
    def cert_path(self) -> str:
        return os.path.join(self.pki_dir, self.cert_file)

    @property
    def ca_cert_path(self) -> str:
        return os.path.join(self.pki_dir, self.ca_cert_file)


@dataclass(frozen=True)
class SimConfig:
    """The [sim] section: the simulated host."""

    scenario: str = _default("sim", "scenario")
    seed: int | None = _default("sim", "seed")  # None: the scenario's own seed
    speed: float = _default("sim", "speed")
    tree_dir: str = _default("sim", "tree-dir")


@dataclass(frozen=True)
class Config:
    """The whole validated configuration."""

    main: MainConfig = field(default_factory=MainConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    host_collectors: tuple[str, ...] = _default("host", "collectors")
    guest_collectors: tuple[str, ...] = _default("guest", "collectors")
    # name -> settings of every [Collector: NAME] section, enabled or not.
    collector_settings: dict[str, dict[str, str]] = field(default_factory=dict, hash=False)
    controller_settings: dict[str, dict[str, str]] = field(default_factory=dict, hash=False)
    vdsm: VdsmConfig = field(default_factory=VdsmConfig)
    sim: SimConfig = field(default_factory=SimConfig)
    source: str = ""  # the file read; "" when only defaults (and overrides) were used
    warnings: tuple[str, ...] = ()

    @property
    def controllers(self) -> tuple[str, ...]:
        return self.main.controllers


# The sections whose values fill a dataclass of their own; the others' ([host],
# [guest]) fill fields of Config itself.
SECTION_TYPES: dict[str, type] = {
    "main": MainConfig, "logging": LoggingConfig, "vdsm": VdsmConfig, "sim": SimConfig,
}

COLLECTOR_PREFIX = "Collector:"
CONTROLLER_PREFIX = "Controller:"
OVERRIDE_ORIGIN = "command line"

T = TypeVar("T")


# --- loading -----------------------------------------------------------------

def load_config(path: str | None, overrides: Mapping[str, str] | None = None) -> Config:
    """Read ``path`` (None: defaults only), apply ``section.key`` overrides, validate.

    Overriding ``main.policy`` with a non-empty value clears the file's
    ``policy-dir`` and vice versa, as momd's -r and -P do.
    Raises ConfigError with a one-line message.
    """
    parser = _new_parser()
    source = ""
    lines: dict[tuple[str, str], int] = {}
    if path is not None:
        source = path
        lines = _read_file(parser, path)
    warnings = _check_names(parser, source, lines)
    overridden = _apply_overrides(parser, dict(overrides or {}))
    builder = _Builder(parser, source or "<defaults>", overridden)
    builder.warnings.extend(warnings)
    return builder.build()


def suggest(name: str, candidates: list[str], template: str = "{}") -> str:
    """' (did you mean X?)' for the closest candidate (shown through template), or ''."""
    close = difflib.get_close_matches(name.lower(), [c.lower() for c in candidates], n=1, cutoff=0.6)
    if not close:
        return ""
    original = next(c for c in candidates if c.lower() == close[0])
    return f" (did you mean {template.format(original)}?)"


def _check_names(parser: configparser.ConfigParser, source: str, lines: dict[tuple[str, str], int]) -> list[str]:
    """Unknown sections and keys are errors: a typo must not silently run momd
    on defaults (no policy, the wrong hypervisor). Returns warnings. Raises ConfigError."""
    def where(section: str, key: str = "") -> str:
        line = lines.get((section, key))
        return f"{source}:{line}" if line else source

    warnings: list[str] = []
    for section in parser.sections():
        if section.startswith((COLLECTOR_PREFIX, CONTROLLER_PREFIX)):
            warning = _check_plugin_section(section, where(section))
            if warning:
                warnings.append(warning)
            continue
        known = DEFAULTS.get(section)
        if known is None:
            hint = suggest(section, list(DEFAULTS) + [COLLECTOR_PREFIX + " NAME", CONTROLLER_PREFIX + " NAME"],
                           "[{}]")
            raise ConfigError(f"{where(section)}: unknown section [{section}]{hint}")
        for key in parser.options(section):
            if key not in known:
                raise ConfigError(f"{where(section, key)}: [{section}] {key}: unknown key{suggest(key, list(known))}")
    return warnings


def _new_parser() -> configparser.ConfigParser:
    # Values contain '%' (e.g. "%(name)s.agent"), so no interpolation. A [DEFAULT]
    # section has no special meaning in MOM, so the default section is disabled.
    return configparser.ConfigParser(
        interpolation=None, default_section="\0no-default", strict=True,
        delimiters=(":", "="), comment_prefixes=("#", ";"), inline_comment_prefixes=None,
    )


def _key_lines(text: str) -> dict[tuple[str, str], int]:
    """(section, key) -> line number, and (section, "") -> its header's line, for messages."""
    out: dict[tuple[str, str], int] = {}
    section = ""
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped[0] in "#;" or line[0].isspace():
            continue
        if stripped.startswith("[") and "]" in stripped:
            section = stripped[1:stripped.index("]")]
            out.setdefault((section, ""), number)
            continue
        key = re.split(r"[:=]", stripped, maxsplit=1)[0].strip().lower()
        out.setdefault((section, key), number)
    return out


def _check_plugin_section(section: str, where: str) -> str | None:
    """[Collector: NAME] and [Controller: NAME] must name a collector or
    controller that exists: settings for a misspelled one would be ignored.
    A name close to a known one is a typo (ConfigError); any other unknown name
    (a plugin of the original MOM's that this one does not have, such as
    GuestNetworkDaemon in its sample configurations) is a warning."""
    import mom.collectors
    import mom.controllers  # noqa: F401
    from mom.collectors.base import REGISTRY as COLLECTORS
    from mom.controllers.base import REGISTRY as CONTROLLERS

    prefix, registry = ((COLLECTOR_PREFIX, COLLECTORS) if section.startswith(COLLECTOR_PREFIX)
                        else (CONTROLLER_PREFIX, CONTROLLERS))
    name = section[len(prefix):].strip()
    if name in registry:
        return None
    what = prefix.rstrip(":").lower()
    hint = suggest(name, sorted(registry), "[" + prefix + " {}]")
    if hint:
        raise ConfigError(f"{where}: [{section}]: unknown {what} {name!r}{hint}")
    return f"{where}: [{section}]: no {what} {name!r} here; its settings are ignored"


def _read_file(parser: configparser.ConfigParser, path: str) -> dict[tuple[str, str], int]:
    """Read the file into parser; return where each section and key is. Raises ConfigError."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read configuration file: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: cannot read configuration file: not UTF-8 text ({e.reason})") from None
    try:
        parser.read_string(text, source=path)
    except configparser.MissingSectionHeaderError as e:
        raise ConfigError(f"{path}:{e.lineno}: expected a [section] header, got {e.line.strip()!r}") from None
    except configparser.DuplicateSectionError as e:
        raise ConfigError(f"{path}:{e.lineno}: [{e.section}] appears twice") from None
    except configparser.DuplicateOptionError as e:
        raise ConfigError(f"{path}:{e.lineno}: [{e.section}] {e.option}: set twice") from None
    except configparser.ParsingError as e:
        lineno, line = e.errors[0]
        # configparser stores the offending line as its repr().
        try:
            line = ast.literal_eval(line)
        except (ValueError, SyntaxError):
            pass
        raise ConfigError(f"{path}:{lineno}: expected 'key: value', got {str(line).strip()!r}") from None
    except configparser.Error as e:
        raise ConfigError(f"{path}: {e.message}") from None
    return _key_lines(text)


def _apply_overrides(parser: configparser.ConfigParser, overrides: dict[str, str]) -> set[tuple[str, str]]:
    """Write overrides into the parsed file; return the (section, key) pairs overridden."""
    done: set[tuple[str, str]] = set()
    for name, value in overrides.items():
        section, dot, key = name.rpartition(".")
        key = key.strip().lower()
        if not dot or not section or not key:
            raise ConfigError(f"{OVERRIDE_ORIGIN}: {name}: expected 'section.key'")
        free_form = section.startswith((COLLECTOR_PREFIX, CONTROLLER_PREFIX))
        if not free_form and section not in DEFAULTS:
            raise ConfigError(f"{OVERRIDE_ORIGIN}: {name}: unknown section [{section}]")
        if not free_form and key not in DEFAULTS[section]:
            raise ConfigError(f"{OVERRIDE_ORIGIN}: [{section}] {key}: unknown key"
                              f"{suggest(key, list(DEFAULTS[section]))}")
        if not parser.has_section(section):
            parser.add_section(section)
        parser.set(section, key, str(value))
        done.add((section, key))
    # -r and -P: the policy named on the command line replaces the file's choice.
    for key, other in (("policy", "policy-dir"), ("policy-dir", "policy")):
        if ("main", key) in done and ("main", other) not in done and parser.get("main", key).strip():
            parser.set("main", other, "")
    return done


class _Builder:
    """Turns the raw parser contents into a Config along the schema, failing on the first error."""

    def __init__(self, parser: configparser.ConfigParser, source: str,
                 overridden: set[tuple[str, str]]) -> None:
        self.parser = parser
        self.source = source
        self.overridden = overridden
        self.warnings: list[str] = []

    # raw access ----------------------------------------------------------
    def origin(self, section: str, key: str) -> str:
        return OVERRIDE_ORIGIN if (section, key) in self.overridden else self.source

    def fail(self, section: str, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.origin(section, key)}: [{section}] {key}: {problem}")

    def raw(self, section: str, key: str) -> str:
        if self.parser.has_option(section, key):
            return self.parser.get(section, key).strip()
        return setting(section, key).default

    def get(self, section: str, key: str, convert: Callable[[str], T]) -> T:
        value = self.raw(section, key)
        try:
            return convert(value)
        except Invalid as e:
            raise self.fail(section, key, str(e)) from None

    # building ------------------------------------------------------------
    def build(self) -> Config:
        parts: dict[str, Any] = {}
        for section in SECTIONS:
            values = self.parse_section(section)
            section_type = SECTION_TYPES.get(section)
            if section_type is None:
                parts.update(values)
            else:
                parts[section] = section_type(**values)
        return Config(
            **parts,
            collector_settings=self.settings_sections(COLLECTOR_PREFIX),
            controller_settings=self.settings_sections(CONTROLLER_PREFIX),
            source="" if self.source == "<defaults>" else self.source,
            warnings=tuple(self.warnings),
        )

    def parse_section(self, section: str) -> dict[str, Any]:
        """field -> value of every key of [section], then the section's checks
        that span keys or look at files."""
        values: dict[str, Any] = {}
        for s in settings_of(section):
            value = self.get(section, s.key, s.parse)
            if s.field is not None:
                values[s.field] = value
        if section == "main":
            self.check_policy(values["policy"], values["policy_dir"])
        elif section == "sim" and values["scenario"]:
            self.get(section, "scenario", _readable_file)
        return values

    def check_policy(self, policy: str, policy_dir: str) -> None:
        s = "main"
        if policy and policy_dir:
            key = "policy" if (s, "policy") in self.overridden else "policy-dir"
            raise self.fail(s, key, "only one of policy and policy-dir may be set")
        if policy:
            self.get(s, "policy", _readable_file)
        if policy_dir:
            self.get(s, "policy-dir", _directory)

    def settings_sections(self, prefix: str) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        for section in self.parser.sections():
            if section.startswith(prefix):
                name = section[len(prefix):].strip()
                if name:
                    out[name] = {k: v.strip() for k, v in self.parser.items(section)}
        return out


# --- checks on the filesystem (raise Invalid; the builder adds where) ------------
# Here rather than in the schema: whether a file is readable is checked after the
# values parse, and tests stand in for open() in this module.

def _readable_file(value: str) -> str:
    if os.path.isdir(value):
        raise Invalid(f"{value!r} is a directory, not a file")
    try:
        with open(value, "rb") as f:
            f.read(1)
    except OSError as e:
        raise Invalid(f"cannot read {value!r}: {e.strerror or e}") from None
    return value


def _directory(value: str) -> str:
    if not os.path.isdir(value):
        what = "does not exist" if not os.path.exists(value) else "is not a directory"
        raise Invalid(f"{value!r} {what}")
    try:
        os.listdir(value)
    except OSError as e:
        raise Invalid(f"cannot read directory {value!r}: {e.strerror or e}") from None
    return value


# --- command line --------------------------------------------------------------

class _HelpConfigAction(argparse.Action):
    """--help-config: print every mom.conf key (the schema) and exit, as --help does."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        print(help_text(), end="")  # on stdout, as --help and --version
        parser.exit()


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """Add momd's configuration options (-c, -r, -P, -p, -l, -v, -d, --pid-file, --help-config)."""
    parser.add_argument("-c", "--config-file", dest="config_file", metavar="FILE",
                        help="configuration file (default: the first of /etc/mom/mom.conf, /etc/mom.conf, "
                             "/etc/momd.conf that exists, else built-in defaults)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-r", "--rules-file", dest="rules_file", metavar="POLICY_FILE",
                       help="load the policy from this file (replaces policy and policy-dir)")
    group.add_argument("-P", "--policy-dir", dest="policy_dir", metavar="DIR",
                       help="load *.policy files from this directory (replaces policy and policy-dir)")
    parser.add_argument("-p", "--plot-dir", dest="plot_dir", metavar="DIR",
                        help="write plot data under this directory")
    parser.add_argument("-l", "--log", dest="log", metavar="stdio|FILE", help="log destination")
    parser.add_argument("-v", "--verbose", dest="verbosity", metavar="LEVEL",
                        help="log level: debug, info, warn, error, critical or 5-1")
    parser.add_argument("-d", "--daemon", dest="daemonize", action="store_true",
                        help="detach and run in the background")
    parser.add_argument("--pid-file", dest="pid_file", metavar="FILE",
                        help="write momd's pid here (removed on exit); with -d, the detached process's")
    parser.add_argument("--help-config", action=_HelpConfigAction,
                        help="list every configuration key with its type, default and meaning, then exit")


def cli_overrides(args: argparse.Namespace) -> dict[str, str]:
    """The ``section.key`` overrides given by options from :func:`add_cli_arguments`."""
    mapping = {
        "rules_file": "main.policy", "policy_dir": "main.policy-dir", "plot_dir": "main.plot-dir",
        "log": "logging.log", "verbosity": "logging.verbosity",
    }
    out: dict[str, str] = {}
    for attr, key in mapping.items():
        value = getattr(args, attr, None)
        if value is not None:
            out[key] = value
    # -r replaces a policy-dir and -P a policy file, whatever the file says.
    if "main.policy" in out:
        out["main.policy-dir"] = ""
    elif "main.policy-dir" in out:
        out["main.policy"] = ""
    return out
