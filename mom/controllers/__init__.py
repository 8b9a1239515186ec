"""Controllers: apply the policy's decisions; importing this package registers
Balloon, KSM, CpuTune, IoTune and VirtioMem in :data:`mom.controllers.base.REGISTRY`."""

from mom.controllers import balloon, cpu_tune, io_tune, ksm, virtio_mem  # noqa: F401  (registration)
from mom.controllers.base import REGISTRY

__all__ = ["REGISTRY"]
