"""MOM's error hierarchy: one root, so a caller can catch everything MOM raises.

::

    MomError
    ├── ConfigError            mom.conf or a command line value is wrong (file:line)
    ├── PolicyError            a policy does not parse, check or evaluate (file:line:col)
    │   └── PolicyRejected     a policy change refused by the validation gate
    ├── ScenarioError          a simulator scenario file is wrong
    ├── HypervisorError        the hypervisor interface failed
    │   ├── HypervisorUnavailable, InterfaceUnavailable, GuestGone, NotSupported
    │   └── VdsmError ...      the vdsm client's own failures
    ├── CollectionError        a collector could not read its source
    ├── DaemonError            momd cannot start or run (one line for the operator)
    └── RpcError               the control API refused or failed a request

Each subclass lives with the code that raises it and derives from the class
named here; this module holds only the root, so importing it costs nothing.
"""

from __future__ import annotations


class MomError(Exception):
    """Root of every error MOM raises on purpose. ``str(error)`` is one line
    fit for an operator: what failed and where, never a traceback."""
