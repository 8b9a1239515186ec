"""GuestCpuTune: a guest's CPU bandwidth limits from the hypervisor.

Reads the "cpu_tune" section of the tick's GuestData; raises CollectionError
when it is missing.

Fields:

- vcpu_quota: CFS quota per vCPU (µs per period; -1 or 0 means unlimited),
  libvirt's <cputune><quota>.
- vcpu_period: CFS period (µs), libvirt's <cputune><period>.
- vcpu_user_limit: the CPU limit the user chose, percent of the guest's
  vCPUs (0-100).
- vcpu_count: number of vCPUs.
"""

from __future__ import annotations

from mom.collectors._common import SectionCollector
from mom.collectors.base import optional_variant, register

CPU_TUNE_FIELDS = frozenset({"vcpu_quota", "vcpu_period", "vcpu_user_limit", "vcpu_count"})


@register
class GuestCpuTune(SectionCollector):
    """Guest CPU tuning; the guest is skipped when it is missing."""

    name = "GuestCpuTune"
    section = "cpu_tune"
    sections = frozenset({"cpu_tune"})
    mandatory = CPU_TUNE_FIELDS


# MOM's GuestCpuTuneOptional: the same fields, all optional; never raises.
GuestCpuTuneOptional = optional_variant(GuestCpuTune)
