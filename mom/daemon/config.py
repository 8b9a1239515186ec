"""MOM's configuration: the original oVirt MOM INI format, parsed and validated once.

:func:`load_config` reads the INI file (``key: value`` or ``key = value``; empty
values allowed; no ``%`` interpolation), applies ``section.key`` overrides from
the command line, checks everything and returns a frozen :class:`Config`. Code
below the CLI only ever sees typed values. Any problem raises
:class:`ConfigError` whose message is one line naming the file, section and key.

Sections and keys (defaults in :data:`DEFAULTS`)::

    [main]
    main-loop-interval 5, host-monitor-interval 5, guest-monitor-interval 5,
    guest-manager-interval 5, policy-engine-interval 10   seconds, > 0
    sample-history-length 10        integer >= 1
    hypervisor-interface libvirt    libvirt | sim | vdsm (aliases vdsmjsonrpcbulk,
                                    vdsmjsonrpc, vdsmjsonrpcclient)
    libvirt-hypervisor-uri ''       '' = libvirt's default URI
    controllers Balloon             comma-separated
    plot-dir ''                     '' = no plotting
    rpc-port -1                     -1 off; N = TCP port on 127.0.0.1; path = unix socket
    policy '' / policy-dir ''       a policy file or a directory of *.policy (not both)
    guest-manager-multi-thread true accepted and ignored
    record-file ''                  flight recorder (JSON lines); '' = off
    record-max-bytes 10485760       rotate the record file at this size
    record-backup-count 3           rotated record files kept
    metrics-address ''              HOST:PORT for the metrics endpoint; '' = off
    proc-root /proc, sys-root /sys  where host collectors and controllers look
    hypervisor-call-timeout 10      seconds, > 0

    [logging]  log stdio (stderr; also stdout, stderr; or a file), verbosity info (name or 1-5),
               max-bytes 2097152, backup-count 5
    [host]     collectors HostMemory
    [guest]    collectors GuestQemuProc, GuestMemory
    [vdsm]     pki-dir /etc/pki/vdsm, key-file keys/vdsmkey.pem,
               cert-file certs/vdsmcert.pem, ca-cert-file certs/cacert.pem,
               host 127.0.0.1, port 54321, request-timeout 10
    [sim]      scenario '' (file; '' = built-in default), seed '' ('' = the scenario's own),
               speed 1 (clock speed factor), tree-dir '' ('' = temporary dir)
    [Collector: NAME]   free-form settings handed to collector NAME
    [Controller: NAME]  free-form settings handed to controller NAME

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
import logging
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, TypeVar

__all__ = [
    "Config", "ConfigError", "DEFAULTS", "HostPort", "KNOWN_INTERFACES", "LoggingConfig",
    "MainConfig", "RPC_DISABLED", "RpcDisabled", "RpcEndpoint", "SimConfig", "TcpPort",
    "UnixSocket", "VdsmConfig", "add_cli_arguments", "cli_overrides", "load_config",
]


class ConfigError(Exception):
    """The configuration is unusable; the message is one line for the user."""

    def __init__(self, message: str) -> None:
        # One line, always: the CLI prints it as is.
        super().__init__(" ".join(message.split("\n")))


# --- typed values ------------------------------------------------------------

@dataclass(frozen=True)
class RpcDisabled:
    """rpc-port -1: no RPC server."""


@dataclass(frozen=True)
class TcpPort:
    """RPC over TCP on the loopback address."""

    port: int
    host: str = "127.0.0.1"


@dataclass(frozen=True)
class UnixSocket:
    """RPC over a unix socket at ``path``."""

    path: str


RpcEndpoint = RpcDisabled | TcpPort | UnixSocket
RPC_DISABLED = RpcDisabled()


@dataclass(frozen=True)
class HostPort:
    """A listening address (port 0 lets the OS pick a free port)."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class MainConfig:
    """The [main] section."""

    main_loop_interval: float = 5.0
    host_monitor_interval: float = 5.0
    guest_monitor_interval: float = 5.0
    guest_manager_interval: float = 5.0
    policy_engine_interval: float = 10.0
    sample_history_length: int = 10
    hypervisor_interface: str = "libvirt"
    libvirt_hypervisor_uri: str = ""
    controllers: tuple[str, ...] = ("Balloon",)
    plot_dir: str = ""
    rpc: RpcEndpoint = RPC_DISABLED
    policy: str = ""
    policy_dir: str = ""
    record_file: str = ""
    record_max_bytes: int = 10485760
    record_backup_count: int = 3
    metrics_address: HostPort | None = None
    proc_root: str = "/proc"
    sys_root: str = "/sys"
    hypervisor_call_timeout: float = 10.0


@dataclass(frozen=True)
class LoggingConfig:
    """The [logging] section; ``level`` is a Python logging level."""

    log: str = "stdio"
    level: int = logging.INFO
    max_bytes: int = 2097152
    backup_count: int = 5

    @property
    def to_stdio(self) -> bool:
        return self.log in ("stdio", "stdout", "stderr")


@dataclass(frozen=True)
class VdsmConfig:
    """The [vdsm] section: how to reach vdsm's JSON-RPC server."""

    pki_dir: str = "/etc/pki/vdsm"
    key_file: str = "keys/vdsmkey.pem"
    cert_file: str = "certs/vdsmcert.pem"
    ca_cert_file: str = "certs/cacert.pem"
    host: str = "127.0.0.1"
    port: int = 54321
    request_timeout: float = 10.0

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

    scenario: str = ""
    seed: int | None = None  # None: the scenario's own seed
    speed: float = 1.0
    tree_dir: str = ""


@dataclass(frozen=True)
class Config:
    """The whole validated configuration."""

    main: MainConfig = field(default_factory=MainConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    host_collectors: tuple[str, ...] = ("HostMemory",)
    guest_collectors: tuple[str, ...] = ("GuestQemuProc", "GuestMemory")
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


# --- vocabulary --------------------------------------------------------------

VDSM_ALIASES = ("vdsm", "vdsmjsonrpcbulk", "vdsmjsonrpc", "vdsmjsonrpcclient")
KNOWN_INTERFACES = ("libvirt", "sim") + VDSM_ALIASES

VERBOSITY_NAMES = {
    "debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
    "warning": logging.WARNING, "error": logging.ERROR, "critical": logging.CRITICAL,
}
VERBOSITY_NUMBERS = {
    5: logging.DEBUG, 4: logging.INFO, 3: logging.WARNING, 2: logging.ERROR, 1: logging.CRITICAL,
}

# Raw defaults, parsed by the same code as file values so they cannot disagree.
DEFAULTS: dict[str, dict[str, str]] = {
    "main": {
        "main-loop-interval": "5",
        "host-monitor-interval": "5",
        "guest-monitor-interval": "5",
        "guest-manager-interval": "5",
        "policy-engine-interval": "10",
        "sample-history-length": "10",
        "hypervisor-interface": "libvirt",
        "libvirt-hypervisor-uri": "",
        "controllers": "Balloon",
        "plot-dir": "",
        "rpc-port": "-1",
        "policy": "",
        "policy-dir": "",
        "guest-manager-multi-thread": "true",
        "record-file": "",
        "record-max-bytes": "10485760",
        "record-backup-count": "3",
        "metrics-address": "",
        "proc-root": "/proc",
        "sys-root": "/sys",
        "hypervisor-call-timeout": "10",
    },
    "logging": {
        "log": "stdio",
        "verbosity": "info",
        "max-bytes": "2097152",
        "backup-count": "5",
    },
    "host": {"collectors": "HostMemory"},
    "guest": {"collectors": "GuestQemuProc, GuestMemory"},
    "vdsm": {
        "pki-dir": "/etc/pki/vdsm",
        "key-file": "keys/vdsmkey.pem",
        "cert-file": "certs/vdsmcert.pem",
        "ca-cert-file": "certs/cacert.pem",
        "host": "127.0.0.1",
        "port": "54321",
        "request-timeout": "10",
    },
    "sim": {
        "scenario": "",
        "seed": "",
        "speed": "1",
        "tree-dir": "",
    },
}

COLLECTOR_PREFIX = "Collector:"
CONTROLLER_PREFIX = "Controller:"
OVERRIDE_ORIGIN = "command line"

_INT_RE = re.compile(r"[+-]?[0-9]+\Z")
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
    import mom.collectors  # noqa: F401  (fill the registries)
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
    """Turns the raw parser contents into a Config, failing on the first error."""

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
        return DEFAULTS[section][key]

    def get(self, section: str, key: str, convert: Callable[[str], T]) -> T:
        value = self.raw(section, key)
        try:
            return convert(value)
        except _Invalid as e:
            raise self.fail(section, key, str(e)) from None

    # building ------------------------------------------------------------
    def build(self) -> Config:
        main = self.build_main()
        cfg = Config(
            main=main,
            logging=self.build_logging(),
            host_collectors=self.build_collectors("host"),
            guest_collectors=self.build_collectors("guest"),
            collector_settings=self.settings_sections(COLLECTOR_PREFIX),
            controller_settings=self.settings_sections(CONTROLLER_PREFIX),
            vdsm=self.build_vdsm(),
            sim=self.build_sim(),
            source="" if self.source == "<defaults>" else self.source,
            warnings=tuple(self.warnings),
        )
        return cfg

    def build_main(self) -> MainConfig:
        s = "main"
        positive = _number(positive=True)
        intervals = {
            name.replace("-", "_"): self.get(s, name, positive)
            for name in ("main-loop-interval", "host-monitor-interval", "guest-monitor-interval",
                         "guest-manager-interval", "policy-engine-interval", "hypervisor-call-timeout")
        }
        policy = self.get(s, "policy", str)
        policy_dir = self.get(s, "policy-dir", str)
        if policy and policy_dir:
            key = "policy" if (s, "policy") in self.overridden else "policy-dir"
            raise self.fail(s, key, "only one of policy and policy-dir may be set")
        if policy:
            self.get(s, "policy", _readable_file)
        if policy_dir:
            self.get(s, "policy-dir", _directory)
        return MainConfig(
            **intervals,
            sample_history_length=self.get(s, "sample-history-length", _integer(minimum=1)),
            hypervisor_interface=self.get(s, "hypervisor-interface", _interface),
            libvirt_hypervisor_uri=self.get(s, "libvirt-hypervisor-uri", str),
            controllers=self.get(s, "controllers", _controllers),
            plot_dir=self.get(s, "plot-dir", str),
            rpc=self.get(s, "rpc-port", _rpc_port),
            policy=policy,
            policy_dir=policy_dir,
            record_file=self.get(s, "record-file", str),
            record_max_bytes=self.get(s, "record-max-bytes", _integer(minimum=1)),
            record_backup_count=self.get(s, "record-backup-count", _integer(minimum=0)),
            metrics_address=self.get(s, "metrics-address", _host_port),
            proc_root=self.get(s, "proc-root", _non_empty),
            sys_root=self.get(s, "sys-root", _non_empty),
        )

    def build_logging(self) -> LoggingConfig:
        s = "logging"
        return LoggingConfig(
            log=self.get(s, "log", _non_empty),
            level=self.get(s, "verbosity", _verbosity),
            max_bytes=self.get(s, "max-bytes", _integer(minimum=0)),
            backup_count=self.get(s, "backup-count", _integer(minimum=0)),
        )

    def build_collectors(self, scope: str) -> tuple[str, ...]:
        import mom.collectors  # noqa: F401  (fills the registry)
        from mom.collectors.base import REGISTRY

        def check(value: str) -> tuple[str, ...]:
            names = _name_list(value)
            for name in names:
                cls = REGISTRY.get(name)
                if cls is None:
                    known = ", ".join(sorted(n for n, c in REGISTRY.items() if c.scope == scope))
                    raise _Invalid(f"unknown collector {name!r} (known {scope} collectors: {known})")
                if cls.scope != scope:
                    raise _Invalid(f"{name} is a {cls.scope} collector, not a {scope} collector")
            return names

        return self.get(scope, "collectors", check)

    def settings_sections(self, prefix: str) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        for section in self.parser.sections():
            if section.startswith(prefix):
                name = section[len(prefix):].strip()
                if name:
                    out[name] = {k: v.strip() for k, v in self.parser.items(section)}
        return out

    def build_vdsm(self) -> VdsmConfig:
        s = "vdsm"
        return VdsmConfig(
            pki_dir=self.get(s, "pki-dir", str),
            key_file=self.get(s, "key-file", str),
            cert_file=self.get(s, "cert-file", str),
            ca_cert_file=self.get(s, "ca-cert-file", str),
            host=self.get(s, "host", _non_empty),
            port=self.get(s, "port", _integer(minimum=1, maximum=65535)),
            request_timeout=self.get(s, "request-timeout", _number(positive=True)),
        )

    def build_sim(self) -> SimConfig:
        s = "sim"
        scenario = self.get(s, "scenario", str)
        if scenario:
            self.get(s, "scenario", _readable_file)
        return SimConfig(
            scenario=scenario,
            seed=self.get(s, "seed", _optional(_integer())),
            speed=self.get(s, "speed", _number(positive=True)),
            tree_dir=self.get(s, "tree-dir", str),
        )


# --- value converters (raise _Invalid with the problem; the builder adds where) ---

class _Invalid(Exception):
    pass


def _number(positive: bool = False) -> Callable[[str], float]:
    def convert(value: str) -> float:
        try:
            x = float(value)
        except ValueError:
            x = math.nan
        if not math.isfinite(x):
            raise _Invalid(f"expected a number, got {value!r}")
        if positive and x <= 0:
            raise _Invalid(f"expected a positive number, got {value!r}")
        return x
    return convert


def _integer(minimum: int | None = None, maximum: int | None = None) -> Callable[[str], int]:
    def convert(value: str) -> int:
        if not _INT_RE.match(value):
            raise _Invalid(f"expected an integer, got {value!r}")
        x = int(value)
        if minimum is not None and x < minimum:
            raise _Invalid(f"expected an integer >= {minimum}, got {value!r}")
        if maximum is not None and x > maximum:
            raise _Invalid(f"expected an integer <= {maximum}, got {value!r}")
        return x
    return convert


def _optional(convert: Callable[[str], Any]) -> Callable[[str], Any]:
    """An empty value means "not given" (None); anything else is converted."""
    def optional(value: str) -> Any:
        return None if value == "" else convert(value)
    return optional


def _non_empty(value: str) -> str:
    if not value:
        raise _Invalid("must not be empty")
    return value


def _readable_file(value: str) -> str:
    if os.path.isdir(value):
        raise _Invalid(f"{value!r} is a directory, not a file")
    try:
        with open(value, "rb") as f:
            f.read(1)
    except OSError as e:
        raise _Invalid(f"cannot read {value!r}: {e.strerror or e}") from None
    return value


def _directory(value: str) -> str:
    if not os.path.isdir(value):
        what = "does not exist" if not os.path.exists(value) else "is not a directory"
        raise _Invalid(f"{value!r} {what}")
    try:
        os.listdir(value)
    except OSError as e:
        raise _Invalid(f"cannot read directory {value!r}: {e.strerror or e}") from None
    return value


def _name_list(value: str) -> tuple[str, ...]:
    names: list[str] = []
    for part in value.split(","):
        name = part.strip()
        if name and name not in names:
            names.append(name)
    return tuple(names)


def _interface(value: str) -> str:
    name = value.lower()
    if name in VDSM_ALIASES:
        return "vdsm"
    if name not in KNOWN_INTERFACES:
        raise _Invalid(f"unknown hypervisor interface {value!r} (known: {', '.join(KNOWN_INTERFACES)})")
    return name


def _controllers(value: str) -> tuple[str, ...]:
    import mom.controllers  # noqa: F401  (fills the registry)
    from mom.controllers.base import REGISTRY

    known = set(REGISTRY)
    names = _name_list(value)
    for name in names:
        if name not in known:
            raise _Invalid(f"unknown controller {name!r} (known: {', '.join(sorted(known))})")
    return names


def parse_verbosity(value: str | int) -> int | None:
    """A Python logging level from MOM's verbosity (a name or 1-5); None when invalid."""
    if isinstance(value, int) and not isinstance(value, bool):
        return VERBOSITY_NUMBERS.get(value)
    if not isinstance(value, str):
        return None
    value = value.strip()
    level = VERBOSITY_NAMES.get(value.lower())
    if level is None and _INT_RE.match(value):
        level = VERBOSITY_NUMBERS.get(int(value))
    return level


def _verbosity(value: str) -> int:
    level = parse_verbosity(value)
    if level is None:
        raise _Invalid(f"expected debug, info, warn, error, critical or 1-5, got {value!r}")
    return level


def _rpc_port(value: str) -> RpcEndpoint:
    if value in ("", "-1"):
        return RPC_DISABLED
    if _INT_RE.match(value):
        port = int(value)
        if 1 <= port <= 65535:
            return TcpPort(port)
        raise _Invalid(f"expected -1, a TCP port 1-65535 or a socket path, got {value!r}")
    if "/" in value:
        return UnixSocket(value)
    # A bare word is more likely a typo than a socket in the current directory.
    raise _Invalid(f"expected -1, a TCP port 1-65535 or a socket path containing '/', got {value!r}")


def _host_port(value: str) -> HostPort | None:
    if not value:
        return None
    bad = _Invalid(f"expected HOST:PORT (e.g. 127.0.0.1:9100), got {value!r}")
    m = re.fullmatch(r"\[([^\]]+)\]:([0-9]+)|([^:\[\]\s]+):([0-9]+)", value)
    if not m:
        raise bad
    host = m.group(1) or m.group(3)
    port = int(m.group(2) or m.group(4))
    if port > 65535:
        raise _Invalid(f"port must be 0-65535, got {value!r}")
    return HostPort(host, port)


# --- command line --------------------------------------------------------------

def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """Add momd's configuration options (-c, -r, -P, -p, -l, -v, -d, --pid-file)."""
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
