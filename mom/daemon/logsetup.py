"""Logging to stdio or a rotated file, at the configured verbosity."""

from __future__ import annotations

import logging
import logging.handlers
import sys

# Log targets that are streams, not files: MOM's "stdio" and the words people
# also write for it (a file named "stdout" is never what they meant).
STREAMS = ("", "stdio", "stdout", "stderr")


def setup_logging(target: str, level: int, max_bytes: int, backup_count: int) -> None:
    """Send MOM's logs to stdio (stderr; or "stdout"/"stderr" by name) or to a
    size-rotated file ([logging] max-bytes, backup-count: no defaults here, the
    configuration schema has them). Raises OSError."""
    if target in STREAMS:
        handler: logging.Handler = logging.StreamHandler(sys.stdout if target == "stdout" else sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S"))
    else:
        handler = logging.handlers.RotatingFileHandler(target, maxBytes=max_bytes, backupCount=backup_count)
        handler.setFormatter(logging.Formatter("%(asctime)s - %(name)s - %(levelname)s - %(message)s"))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("mom.policy.debug").setLevel(level)
