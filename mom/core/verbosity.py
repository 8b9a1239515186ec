"""MOM's verbosity: a level name or the original's 1-5, as mom.conf's
``[logging] verbosity``, ``momd -v`` and the RPC's setVerbosity take it."""

from __future__ import annotations

import logging
import re

VERBOSITY_NAMES = {
    "debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
    "warning": logging.WARNING, "error": logging.ERROR, "critical": logging.CRITICAL,
}
VERBOSITY_NUMBERS = {
    5: logging.DEBUG, 4: logging.INFO, 3: logging.WARNING, 2: logging.ERROR, 1: logging.CRITICAL,
}

_INT_RE = re.compile(r"[+-]?[0-9]+\Z")


def parse_verbosity(value: str | int) -> int | None:
    """A Python logging level from MOM's verbosity (a name or 1-5); None when invalid."""
    if isinstance(value, int) and not isinstance(value, bool):
        return VERBOSITY_NUMBERS.get(value)
    if not isinstance(value, str):
        return None
    value = value.strip()
    level = VERBOSITY_NAMES.get(value.lower())
    if level is None and _INT_RE.match(value):
        level = VERBOSITY_NUMBERS.get(int(value))
    return level
