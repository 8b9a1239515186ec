"""GuestCpuTuneOptional: the GuestCpuTune fields, all optional.

Same source and meanings as :mod:`mom.collectors.guest_cpu_tune`; never raises.
"""

from __future__ import annotations

from mom.collectors._common import SectionCollector
from mom.collectors.base import register
from mom.collectors.guest_cpu_tune import CPU_TUNE_FIELDS


@register
class GuestCpuTuneOptional(SectionCollector):
    """Guest CPU tuning when available."""

    name = "GuestCpuTuneOptional"
    section = "cpu_tune"
    sections = frozenset({"cpu_tune"})
    strict = False
    optional = CPU_TUNE_FIELDS
