"""GuestBalloonOptional: the GuestBalloon fields, all optional.

Same source and meanings as :mod:`mom.collectors.guest_balloon`; never raises,
so guests without a balloon device still take part in the policy.
"""

from __future__ import annotations

from mom.collectors._common import SectionCollector
from mom.collectors.base import register
from mom.collectors.guest_balloon import BALLOON_FIELDS


@register
class GuestBalloonOptional(SectionCollector):
    """Guest balloon sizes when available."""

    name = "GuestBalloonOptional"
    section = "balloon"
    sections = frozenset({"balloon"})
    strict = False
    optional = BALLOON_FIELDS
