"""Where momd reads the host's kernel interfaces unless told otherwise.

The one default of ``proc-root`` and ``sys-root``: the configuration schema
(mom.daemon.config_schema) and the collectors' context both take it from here,
so a collector built outside the daemon (a test, a bench) reads the same tree
as momd with no configuration.
"""

from __future__ import annotations

PROC_ROOT = "/proc"
SYS_ROOT = "/sys"
