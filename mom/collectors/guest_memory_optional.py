"""GuestMemoryOptional: the GuestMemory fields, all optional.

Same source and field meanings as :mod:`mom.collectors.guest_memory`; it
returns whatever the hypervisor had and never raises, so the policy still runs
for a guest without memory statistics (its fields are then nil).
"""

from __future__ import annotations

from mom.collectors._common import SectionCollector
from mom.collectors.base import register
from mom.collectors.guest_memory import MEMORY_MANDATORY, MEMORY_OPTIONAL


@register
class GuestMemoryOptional(SectionCollector):
    """Guest memory statistics when available."""

    name = "GuestMemoryOptional"
    section = "memory"
    sections = frozenset({"memory"})
    strict = False
    optional = MEMORY_MANDATORY | MEMORY_OPTIONAL
