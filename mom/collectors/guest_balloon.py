"""GuestBalloon: a guest's balloon state from the hypervisor.

Reads the "balloon" section of the tick's GuestData; raises CollectionError when
it is missing.

Fields (all KiB):

- balloon_cur: the guest's current memory size (balloon target in effect).
- balloon_max: the guest's maximum memory (the size it was started with).
- balloon_min: the guaranteed minimum the balloon must not go below.

Optional:

- balloon_free_page_reporting: 1 when the balloon device has free page
  reporting on (the guest hands its free pages back to the host by itself,
  about 2 s after they are freed), 0 when off; missing when the interface
  cannot tell (libvirt's ``freePageReporting``, QEMU's ``free-page-reporting``).
"""

from __future__ import annotations

from mom.collectors._common import SectionCollector
from mom.collectors.base import optional_variant, register

BALLOON_FIELDS = frozenset({"balloon_cur", "balloon_max", "balloon_min"})
BALLOON_OPTIONAL = frozenset({"balloon_free_page_reporting"})


@register
class GuestBalloon(SectionCollector):
    """Guest balloon sizes; the guest is skipped when they are missing."""

    name = "GuestBalloon"
    section = "balloon"
    sections = frozenset({"balloon"})
    mandatory = BALLOON_FIELDS
    optional = BALLOON_OPTIONAL


# MOM's GuestBalloonOptional: the same fields, all optional; never raises.
GuestBalloonOptional = optional_variant(GuestBalloon)
