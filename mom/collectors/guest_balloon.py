"""GuestBalloon: a guest's balloon state from the hypervisor.

Reads the "balloon" section of the tick's GuestData; raises CollectionError when
it is missing.

Fields (all KiB):

- balloon_cur: the guest's current memory size (balloon target in effect).
- balloon_max: the guest's maximum memory (the size it was started with).
- balloon_min: the guaranteed minimum the balloon must not go below.
"""

from __future__ import annotations

from mom.collectors._common import SectionCollector
from mom.collectors.base import optional_variant, register

BALLOON_FIELDS = frozenset({"balloon_cur", "balloon_max", "balloon_min"})


@register
class GuestBalloon(SectionCollector):
    """Guest balloon sizes; the guest is skipped when they are missing."""

    name = "GuestBalloon"
    section = "balloon"
    sections = frozenset({"balloon"})
    mandatory = BALLOON_FIELDS


# MOM's GuestBalloonOptional: the same fields, all optional; never raises.
GuestBalloonOptional = optional_variant(GuestBalloon)
