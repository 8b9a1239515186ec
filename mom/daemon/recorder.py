"""Flight recorder: one JSON line per policy tick, size-rotated.

Each line holds the tick number and time, the snapshot the policy saw ("host",
"guests"), the decisions ("ok", "error", "host_controls", "guest_controls") and
the controllers' "actions". A line is a snapshot for `momctl policy run`, so a
recording replays to the same decisions.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from typing import Any

from mom.policy.policy import json_value

log = logging.getLogger("mom.recorder")


class FlightRecorder:
    def __init__(self, path: str, max_bytes: int = 10 * 1024 * 1024, backup_count: int = 3) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backup_count = backup_count
        self._lock = threading.Lock()
        self._failed = False

    def write(self, record: dict[str, Any]) -> None:
        """Append one record; an I/O error is logged once and the daemon goes on."""
        line = json.dumps(json_value(record), separators=(",", ":")) + "\n"
        with self._lock:
            try:
                self._rotate_if_needed(len(line))
                with open(self.path, "a", encoding="utf-8") as f:
                    f.write(line)
            except OSError as e:
                if not self._failed:
                    log.error("flight recorder %s: %s", self.path, e.strerror or e)
                self._failed = True
                return
            if self._failed:
                log.info("flight recorder %s: writing again", self.path)
            self._failed = False

    def _rotate_if_needed(self, incoming: int) -> None:
        try:
            size = os.path.getsize(self.path)
        except FileNotFoundError:
            return
        if size == 0 or size + incoming <= self.max_bytes:
            return
        if self.backup_count <= 0:
            os.truncate(self.path, 0)
            return
        for i in range(self.backup_count - 1, 0, -1):
            src = f"{self.path}.{i}"
            if os.path.exists(src):
                os.replace(src, f"{self.path}.{i + 1}")
        os.replace(self.path, f"{self.path}.1")
