"""MOM's collectors; importing this package registers all of them in
:data:`mom.collectors.base.REGISTRY`."""

from mom.collectors import (  # noqa: F401  (imported to register)
    guest_balloon,
    guest_balloon_optional,
    guest_cpu_tune,
    guest_cpu_tune_optional,
    guest_io_tune,
    guest_io_tune_optional,
    guest_memory,
    guest_memory_optional,
    guest_qemu_agent,
    guest_qemu_proc,
    host_cpu,
    host_ksm,
    host_memory,
    host_pressure,
    host_time,
)
