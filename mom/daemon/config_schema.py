"""Every mom.conf setting, written once: section, key, parser, default and help.

:data:`SCHEMA` is the one place a setting is described. From it come the
built-in defaults (:data:`DEFAULTS`, raw strings parsed by the same code as a
file's values, so they cannot disagree), the typed parsing and the set of known
sections and keys (:mod:`mom.daemon.config`), ``momd --help-config``
(:func:`help_text`) and the tables of doc/configuration.md
(:func:`update_reference`; a test keeps the page equal to it, and mom.conf(5) is
generated from that page).

A parser takes the stripped raw text and returns the typed value, or raises
:class:`Invalid` with the problem (the loader adds file, section and key). Parsers
never touch the filesystem: whether a policy file is readable is checked by the
loader after all values parse, so the mutually exclusive policy and policy-dir
are reported as such first.

Regenerate the page's tables after changing the schema::

    python -m mom.daemon.config_schema doc/configuration.md
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from mom.core.errors import MomError
from mom.core.host_paths import PROC_ROOT, SYS_ROOT
from mom.core.verbosity import parse_verbosity
from mom.hypervisors import REGISTRY, canonical_name, known_names
from mom.hypervisors.base import InterfaceUnavailable

__all__ = [
    "DEFAULTS", "HostPort", "Invalid", "RPC_DISABLED", "RpcDisabled", "RpcEndpoint",
    "SCHEMA", "SECTIONS", "Setting", "TcpPort", "UnixSocket", "help_text",
    "parsed_default", "reference_table", "setting", "update_reference",
]


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


_INT_RE = re.compile(r"[+-]?[0-9]+\Z")


# --- parsers (raise Invalid with the problem; the loader adds where) ---------

class Invalid(MomError):
    """A value that does not parse; the message is the problem, without its place."""


def number(positive: bool = False) -> Callable[[str], float]:
    def parse(value: str) -> float:
        try:
            x = float(value)
        except ValueError:
            x = math.nan
        if not math.isfinite(x):
            raise Invalid(f"expected a number, got {value!r}")
        if positive and x <= 0:
            raise Invalid(f"expected a positive number, got {value!r}")
        return x
    return parse


def integer(minimum: int | None = None, maximum: int | None = None) -> Callable[[str], int]:
    def parse(value: str) -> int:
        if not _INT_RE.match(value):
            raise Invalid(f"expected an integer, got {value!r}")
        x = int(value)
        if minimum is not None and x < minimum:
            raise Invalid(f"expected an integer >= {minimum}, got {value!r}")
        if maximum is not None and x > maximum:
            raise Invalid(f"expected an integer <= {maximum}, got {value!r}")
        return x
    return parse


def optional(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An empty value means "not given" (None); anything else is parsed."""
    def parse_optional(value: str) -> Any:
        return None if value == "" else parse(value)
    return parse_optional


def text(value: str) -> str:
    return value


def non_empty(value: str) -> str:
    if not value:
        raise Invalid("must not be empty")
    return value


def ignored(value: str) -> None:
    """Keys of the original's files that change nothing here: any value is accepted."""
    return None


def name_list(value: str) -> tuple[str, ...]:
    names: list[str] = []
    for part in value.split(","):
        name = part.strip()
        if name and name not in names:
            names.append(name)
    return tuple(names)


def interface(value: str) -> str:
    """The registered name of a hypervisor interface (the registry in mom.hypervisors
    owns the names and the original's aliases)."""
    try:
        return canonical_name(value)
    except InterfaceUnavailable:
        raise Invalid(f"unknown hypervisor interface {value!r} (known: {', '.join(known_names())})") from None


def _vdsm_aliases() -> str:
    """The original's other names of the vdsm interface, for the help: "`a`, `b` and `c`"."""
    names = [f"`{alias}`" for alias in REGISTRY["vdsm"].aliases]
    return ", ".join(names[:-1]) + " and " + names[-1]


def controllers(value: str) -> tuple[str, ...]:
    import mom.controllers  # noqa: F401  (fills the registry)
    from mom.controllers.base import REGISTRY

    known = set(REGISTRY)
    names = name_list(value)
    for name in names:
        if name not in known:
            raise Invalid(f"unknown controller {name!r} (known: {', '.join(sorted(known))})")
    return names


def collectors(scope: str) -> Callable[[str], tuple[str, ...]]:
    """Collector names of ``scope`` ("host" or "guest")."""
    def parse(value: str) -> tuple[str, ...]:
        import mom.collectors  # noqa: F401  (fills the registry)
        from mom.collectors.base import REGISTRY

        names = name_list(value)
        for name in names:
            cls = REGISTRY.get(name)
            if cls is None:
                known = ", ".join(sorted(n for n, c in REGISTRY.items() if c.scope == scope))
                raise Invalid(f"unknown collector {name!r} (known {scope} collectors: {known})")
            if cls.scope != scope:
                raise Invalid(f"{name} is a {cls.scope} collector, not a {scope} collector")
        return names
    return parse


def verbosity(value: str) -> int:
    level = parse_verbosity(value)
    if level is None:
        raise Invalid(f"expected debug, info, warn, error, critical or 1-5, got {value!r}")
    return level


def rpc_port(value: str) -> RpcEndpoint:
    if value in ("", "-1"):
        return RPC_DISABLED
    if _INT_RE.match(value):
        port = int(value)
        if 1 <= port <= 65535:
            return TcpPort(port)
        raise Invalid(f"expected -1, a TCP port 1-65535 or a socket path, got {value!r}")
    if "/" in value:
        return UnixSocket(value)
    # A bare word is more likely a typo than a socket in the current directory.
    raise Invalid(f"expected -1, a TCP port 1-65535 or a socket path containing '/', got {value!r}")


def host_port(value: str) -> HostPort | None:
    if not value:
        return None
    bad = Invalid(f"expected HOST:PORT (e.g. 127.0.0.1:9100), got {value!r}")
    m = re.fullmatch(r"\[([^\]]+)\]:([0-9]+)|([^:\[\]\s]+):([0-9]+)", value)
    if not m:
        raise bad
    host = m.group(1) or m.group(3)
    port = int(m.group(2) or m.group(4))
    if port > 65535:
        raise Invalid(f"port must be 0-65535, got {value!r}")
    return HostPort(host, port)


# --- the table ---------------------------------------------------------------

KEEP = "="  # Setting.attr: the key with '-' as '_' (most keys)


@dataclass(frozen=True)
class Setting:
    """One key of mom.conf.

    ``default`` is raw text, as a file would write it; ``kind`` and ``help`` are
    the reference page's Type and Meaning cells (Markdown: `code`, *emphasis*).
    ``attr`` names the field the parsed value fills: of the section's dataclass
    for [main], [logging], [vdsm] and [sim], of Config for [host] and [guest];
    None for a key that is accepted and stored nowhere.
    """

    section: str
    key: str
    parse: Callable[[str], Any]
    default: str
    kind: str
    help: str
    attr: str | None = KEEP

    @property
    def field(self) -> str | None:
        return self.key.replace("-", "_") if self.attr == KEEP else self.attr


_SECONDS = "seconds > 0"


def _main() -> tuple[Setting, ...]:
    def s(key: str, parse: Callable[[str], Any], default: str, kind: str, help: str,
          attr: str | None = KEEP) -> Setting:
        return Setting("main", key, parse, default, kind, help, attr)

    positive = number(positive=True)
    return (
        s("hypervisor-interface", interface, "libvirt", "`libvirt`, `vdsm`, `qmp` or `sim`",
          f"How momd sees and controls the guests. {_vdsm_aliases()} "
          "(vdsm's own mom.conf) name the vdsm interface. `qmp` talks to QEMU's QMP sockets directly "
          "(`qmp-socket-glob`). `sim` is the simulated host (`[sim]`)."),
        s("libvirt-hypervisor-uri", text, "", "URI",
          "libvirt's connection URI; empty: libvirt's default (`qemu:///system` as root)."),
        s("qmp-socket-glob", non_empty, "/run/mom/qmp/*.qmp", "glob pattern",
          "The `qmp` interface's guests: one QMP socket of its own per QEMU (a QMP socket serves one client "
          "at a time; see `qmp.md`); sockets that appear or vanish are picked up at each guest look."),
        s("host-monitor-interval", positive, "5", _SECONDS, "How often host statistics are collected."),
        s("guest-monitor-interval", positive, "5", _SECONDS,
          "How often guest statistics are collected; also the balloon statistics period set on each new "
          "libvirt guest."),
        s("guest-manager-interval", positive, "5", _SECONDS,
          "How often to look for new and departed guests (libvirt's lifecycle events also trigger a look at "
          "once)."),
        s("policy-engine-interval", positive, "10", _SECONDS,
          "How often the policy runs and its controls are applied (a \"tick\")."),
        s("main-loop-interval", positive, "5", _SECONDS,
          "Accepted for the original's files and checked; each task above has its own interval, so it "
          "changes nothing."),
        s("sample-history-length", integer(minimum=1), "10", "integer >= 1",
          "Samples kept per host and guest; the policy's `StatAvg` averages over them."),
        s("controllers", controllers, "Balloon", "comma-separated names",
          "What the policy may control: `Balloon`, `KSM`, `CpuTune`, `IoTune`, `VirtioMem` (the requested "
          "size of guests' virtio-mem devices). Their controls are in doc/policy-language.md (Statistics and "
          "controls)."),
        s("policy", text, "", "file", "One policy file. Not together with `policy-dir`."),
        s("policy-dir", text, "", "directory",
          "A directory of `*.policy` files, evaluated in name order. Not together with `policy`. With "
          "neither, momd collects statistics and controls nothing (a warning says so)."),
        s("rpc-port", rpc_port, "-1", "`-1`, port or path",
          "The XML-RPC control API (`momctl`): `-1` off; a number is a TCP port on 127.0.0.1 only; a path "
          "(containing `/`) is a unix socket, mode 0600, removed on exit. momctl's default is "
          "`/run/mom/mom.sock`.", attr="rpc"),
        s("metrics-address", host_port, "", "`HOST:PORT`",
          "Serve Prometheus metrics at `http://HOST:PORT/metrics` (see `metrics.md`); empty: off."),
        s("record-file", text, "", "file",
          "The flight recorder: one JSON line per tick (what momd saw, decided and did); empty: off. "
          "Replay it with `momctl policy run POLICY --snapshots FILE`."),
        s("record-max-bytes", integer(minimum=1), "10485760", "integer >= 1",
          "Rotate the record file when it reaches this size."),
        s("record-backup-count", integer(minimum=0), "3", "integer >= 0",
          "Rotated record files kept (`FILE.1` ...)."),
        s("plot-dir", text, "", "directory",
          "Write tab-separated data per host and guest under `momplot-NNN` folders here; empty: off."),
        s("hypervisor-call-timeout", positive, "10", _SECONDS,
          "The deadline of one call to libvirt or vdsm; a call that misses it is refused for its target "
          "until it returns, the others go on. The qmp interface gives a third of it (at most 5 s) to one "
          "QMP call, one connection attempt and one guest's collection."),
        s("proc-root", non_empty, PROC_ROOT, "directory",
          "Where host collectors read `/proc` (tests and containers point it elsewhere)."),
        s("sys-root", non_empty, SYS_ROOT, "directory",
          "Where host collectors and the KSM controller find `/sys` (`kernel/mm/ksm`)."),
        s("guest-manager-multi-thread", ignored, "true", "boolean",
          "Accepted for the original's files and ignored: momd uses a fixed pool of threads whatever the "
          "number of guests.", attr=None),
    )


def _logging() -> tuple[Setting, ...]:
    return (
        Setting("logging", "log", non_empty, "stdio", "`stdio`, `stdout`, `stderr` or file",
                "Where the log goes. `stdio` is standard error (the journal under systemd, as the packaged "
                "file has it); a file is rotated by momd itself."),
        Setting("logging", "verbosity", verbosity, "info", "level",
                "`debug`, `info`, `warn`, `error`, `critical`, or 5 to 1. `momctl verbosity LEVEL` changes "
                "it while momd runs.", attr="level"),
        Setting("logging", "max-bytes", integer(minimum=0), "2097152", "integer >= 0",
                "Rotate the log file at this size (0: never)."),
        Setting("logging", "backup-count", integer(minimum=0), "5", "integer >= 0", "Rotated log files kept."),
    )


def _collector_lists() -> tuple[Setting, ...]:
    return (
        Setting("host", "collectors", collectors("host"), "HostMemory", "comma-separated names",
                "Host statistics to collect: `HostMemory`, `HostKSM`, `HostCpu`, `HostPressure`, `HostTime`. "
                "A policy that reads `Host.ksm_*` needs `HostKSM`.", attr="host_collectors"),
        Setting("guest", "collectors", collectors("guest"), "GuestQemuProc, GuestMemory", "comma-separated names",
                "Guest statistics to collect: `GuestQemuProc`, `GuestMemory`, `GuestBalloon`, `GuestCpuTune`, "
                "`GuestIoTune`, `GuestQemuAgent`, `GuestVirtioMem`, and `GuestMemoryOptional`, "
                "`GuestBalloonOptional`, `GuestCpuTuneOptional`, `GuestIoTuneOptional`, "
                "`GuestVirtioMemOptional` (their fields may be missing without making the guest incomplete). "
                "The fields of each are in doc/policy-language.md (Statistics and controls).",
                attr="guest_collectors"),
    )


def _vdsm() -> tuple[Setting, ...]:
    def s(key: str, parse: Callable[[str], Any], default: str, kind: str, help: str) -> Setting:
        return Setting("vdsm", key, parse, default, kind, help)

    return (
        s("host", non_empty, "127.0.0.1", "host name or address", "Where vdsm listens."),
        s("port", integer(minimum=1, maximum=65535), "54321", "port 1-65535", "vdsm's port."),
        s("pki-dir", text, "/etc/pki/vdsm", "directory", "The base of the three files below when they are relative."),
        s("key-file", text, "keys/vdsmkey.pem", "file", "momd's private key."),
        s("cert-file", text, "certs/vdsmcert.pem", "file", "momd's certificate."),
        s("ca-cert-file", text, "certs/cacert.pem", "file", "The CA that signed vdsm's certificate."),
        s("request-timeout", number(positive=True), "10", _SECONDS, "How long one call to vdsm may take."),
    )


def _sim() -> tuple[Setting, ...]:
    return (
        Setting("sim", "scenario", text, "", "file", "A scenario file (TOML); empty: the built-in scenario."),
        Setting("sim", "seed", optional(integer()), "", "integer",
                "The random seed: the same seed, the same run; empty: the scenario file's own `seed`."),
        Setting("sim", "speed", number(positive=True), "1", "number > 0",
                "How much faster than real time the simulated clock runs."),
        Setting("sim", "tree-dir", text, "", "directory",
                "Where the simulated `/proc` and `/sys` are written; empty: a temporary directory, removed "
                "on exit."),
    )


SCHEMA: tuple[Setting, ...] = _main() + _logging() + _collector_lists() + _vdsm() + _sim()

SECTIONS: tuple[str, ...] = tuple(dict.fromkeys(s.section for s in SCHEMA))

# Raw defaults, section -> key -> text, in the table's order.
DEFAULTS: dict[str, dict[str, str]] = {
    section: {s.key: s.default for s in SCHEMA if s.section == section} for section in SECTIONS
}

_BY_NAME: dict[tuple[str, str], Setting] = {(s.section, s.key): s for s in SCHEMA}

# Sections whose keys are free-form, handed to the plugin NAME.
PLUGIN_SECTIONS = ("Collector: NAME", "Controller: NAME")


def setting(section: str, key: str) -> Setting:
    """The Setting of [section] key; KeyError for an unknown one."""
    return _BY_NAME[(section, key)]


def settings_of(section: str) -> Iterator[Setting]:
    return (s for s in SCHEMA if s.section == section)


def parsed_default(section: str, key: str) -> Any:
    """The typed built-in value of [section] key."""
    s = setting(section, key)
    return s.parse(s.default)


def default_factory(section: str, key: str) -> Callable[[], Any]:
    """For a dataclass field whose default is the table's (parsed when needed: the
    collector and controller parsers import their registries)."""
    return lambda: parsed_default(section, key)


# --- rendering ---------------------------------------------------------------

TABLE_HEADER = ("| Key | Type | Default | Meaning |", "| --- | --- | --- | --- |")


def _markdown_default(s: Setting) -> str:
    return f"`{s.default}`" if s.default else "*(empty)*"


def reference_table(section: str) -> list[str]:
    """The Markdown table of [section] on doc/configuration.md, one line per key."""
    rows = [f"| `{s.key}` | {s.kind} | {_markdown_default(s)} | {s.help} |" for s in settings_of(section)]
    return [*TABLE_HEADER, *rows]


def update_reference(page: str) -> str:
    """``page`` with the table under each ``## [section]`` heading replaced by the
    schema's (the prose around the tables is the page's own)."""
    lines = page.splitlines()
    out: list[str] = []
    section: str | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        heading = re.fullmatch(r"## \[([a-z]+)\]", line.strip())
        if line.startswith("## "):
            section = heading.group(1) if heading else None
        if section in SECTIONS and line.startswith("|"):
            while i < len(lines) and lines[i].startswith("|"):
                i += 1
            out.extend(reference_table(section))
            section = None  # one table per section
            continue
        out.append(line)
        i += 1
    return "\n".join(out) + ("\n" if page.endswith("\n") else "")


def _plain(markdown: str) -> str:
    """Cell text for a terminal: `code` and *emphasis* marks dropped."""
    return re.sub(r"`([^`]*)`|\*([^*]+)\*", lambda m: m.group(1) if m.group(1) is not None else m.group(2),
                  markdown)


def help_text(width: int = 79) -> str:
    """``momd --help-config``: every section and key with its type, default and meaning."""
    import textwrap

    out = ["Keys of mom.conf (reference: doc/configuration.md, mom.conf(5)).", ""]
    for section in SECTIONS:
        out.append(f"[{section}]")
        for s in settings_of(section):
            default = s.default if s.default else "(empty)"
            out.append(f"  {s.key} = {default}    ({_plain(s.kind)})")
            out.extend(textwrap.wrap(_plain(s.help), width, initial_indent=" " * 6, subsequent_indent=" " * 6))
        out.append("")
    for plugin in PLUGIN_SECTIONS:
        out.append(f"[{plugin}]")
        out.append(f"      Free-form settings handed to the {plugin.split(':')[0].lower()} NAME.")
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    """Rewrite the tables of the reference page(s) named in argv from the schema."""
    if len(argv) < 2:
        print("usage: python -m mom.daemon.config_schema doc/configuration.md", file=sys.stderr)
        return 2
    for path in argv[1:]:
        with open(path, encoding="utf-8") as f:
            page = f.read()
        with open(path, "w", encoding="utf-8") as f:
            f.write(update_reference(page))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
