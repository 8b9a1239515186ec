"""GuestVirtioMem: a guest's virtio-mem device from the hypervisor.

Reads the "virtio_mem" section of the tick's GuestData; raises CollectionError
when it is missing (a guest without a virtio-mem device is then left out of the
tick: configure GuestVirtioMemOptional when only some guests have one).

Fields (all KiB):

- virtio_mem_size: memory the guest has plugged now (QEMU's ``size``).
- virtio_mem_requested: what the device asks the guest to plug (QEMU's
  ``requested-size``, libvirt's ``<requested>``); the guest moves ``size``
  toward it block by block.
- virtio_mem_block: the block size; plugging and unplugging go in whole blocks.
- virtio_mem_max: the device's region, the most it can plug (QEMU's memdev
  size, libvirt's ``<size>``).

The guest sees its boot memory (what the balloon manages) plus
virtio_mem_size. The VirtioMem controller's ``mem_requested_size`` sets the
requested size.
"""

from __future__ import annotations

from mom.collectors._common import SectionCollector
from mom.collectors.base import optional_variant, register

VIRTIO_MEM_FIELDS = frozenset({"virtio_mem_size", "virtio_mem_requested", "virtio_mem_block", "virtio_mem_max"})


@register
class GuestVirtioMem(SectionCollector):
    """Guest virtio-mem sizes; the guest is skipped when it has no device."""

    name = "GuestVirtioMem"
    section = "virtio_mem"
    sections = frozenset({"virtio_mem"})
    mandatory = VIRTIO_MEM_FIELDS


# The same fields, all optional; never raises (guests without a device get nil).
GuestVirtioMemOptional = optional_variant(GuestVirtioMem)
