"""MOM's error hierarchy: one root, so a caller can catch everything MOM raises.

::

    MomError
    ├── ConfigError              mom.conf or a command line value is wrong (file:line)     daemon.config
    ├── Invalid                  a config value that does not parse (its place added        daemon.config_schema
    │                            by the caller, as a ConfigError)
    ├── PolicyError              a policy does not parse, check or evaluate (file:line:col) policy.errors
    │   └── PolicyRejected       a policy change refused by the validation gate
    ├── RuntimeFault             a policy built-in refused its arguments (the compiler      policy.runtime
    │   └── BudgetExceeded       turns it into a PolicyError at the node); over budget      policy.compiler
    ├── SnapshotError+           a policy snapshot file is not in the snapshot format       policy.snapshot
    ├── ScenarioError+           a simulator scenario file is wrong                         sim.scenario
    ├── TreeClosed (OSError)     a write to the simulator's tree after it closed            sim.proctree
    ├── DiskLimitError+          an io_tune value an interface cannot apply                 core.disks
    ├── HypervisorError          the hypervisor interface failed                            hypervisors.base
    │   ├── HypervisorUnavailable
    │   │   └── ConnectionLost   libvirt's connection is down (it reconnects)               hypervisors.libvirt
    │   ├── GuestGone, NotSupported, InterfaceUnavailable
    │   └── VdsmError            the vdsm client's own failures                             hypervisors.vdsm
    │       ├── VdsmUnavailable
    │       │   └── VdsmTimeout
    │       ├── VdsmCallError
    │       └── VdsmConfigError
    ├── CollectionError          a collector could not read its source                      collectors.base
    ├── AgentError               the QEMU guest agent failed or refused                     collectors.guest_qemu_agent
    ├── DaemonError              momd cannot be built from its configuration                daemon.daemon
    ├── ExplainError+            nothing to explain for that guest or tick                  engine.explain
    ├── RpcServerError           the control API cannot listen where it is told             rpc.server
    ├── Refusal                  a request refused on its headers (an HTTP answer)          rpc.server
    ├── NestingError+            an XML-RPC request nested too deep                         rpc.server
    ├── LabError, RunFailed      a lab run's bad input; a run that raised                   lab
    └── the commands' own:       StartupError (momd), UsageError, RequestTooLarge,         cli
                                 NotRpcEndpoint, HungUp, PlotError (momctl)

``+``: also a ValueError, which its callers catch. Internal ones (RuntimeFault,
Refusal, NestingError, TreeClosed) are caught inside MOM and told in a MomError
of their own or an answer; none reaches a caller as a bare Exception.

Each subclass lives with the code that raises it and derives from the class
named here; this module holds only the root, so importing it costs nothing.
"""

from __future__ import annotations


class MomError(Exception):
    """Root of every error MOM raises on purpose. ``str(error)`` is one line
    fit for an operator: what failed and where, never a traceback."""
