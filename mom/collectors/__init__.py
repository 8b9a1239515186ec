"""MOM's collectors; importing this package registers all of them in
:data:`mom.collectors.base.REGISTRY`. A guest collector's "Optional" twin
(GuestMemoryOptional ...) is made and registered by
:func:`mom.collectors.base.optional_variant` in the strict collector's module."""

from mom.collectors import (  # noqa: F401  (imported to register)
    guest_balloon,
    guest_cpu_tune,
    guest_io_tune,
    guest_memory,
    guest_qemu_agent,
    guest_qemu_proc,
    guest_virtio_mem,
    host_cpu,
    host_ksm,
    host_memory,
    host_pressure,
    host_time,
)
