"""Flight recorder: one JSON line per policy tick, size-rotated.

Each line holds the tick number and time, the snapshot the policy saw ("host",
"guests"), the decisions ("ok", "error", "host_controls", "guest_controls") and
the controllers' "actions". A line is a snapshot for `momctl policy run`, so a
recording replays to the same decisions.

A tick is written whole or not at all (mom.daemon.appendlines): a full disk
loses ticks, never the file's shape. A failure is one fault, "output
record-file", active until a tick is written again.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import threading
from typing import Any

from mom.core.clock import Clock
from mom.core.faults import FaultKey, FaultLog
from mom.daemon.appendlines import append_lines
from mom.engine.status import EngineStatus
from mom.policy.policy import json_value

log = logging.getLogger("mom.recorder")

FAULT_KEY = FaultKey("output", "record-file")
NO_ROOM = (errno.ENOSPC, errno.EDQUOT)


class FlightRecorder:
    def __init__(self, path: str, max_bytes: int = 10 * 1024 * 1024, backup_count: int = 3,
                 faults: FaultLog | None = None) -> None:
        """faults: where write failures are reported (component "output"); the
        daemon passes the engine's, so they show in health (default: this
        module's logger, on real time)."""
        self.path = path
        self.max_bytes = max_bytes
        self.backup_count = backup_count
        self.faults = faults or FaultLog(log, Clock().time)
        self._lock = threading.Lock()
        self._backups = backup_count  # backups kept: fewer once the disk had no room for them all

    def check(self) -> None:
        """Raise OSError unless the file can be appended to. Creates nothing:
        a file made to find out is removed at once."""
        try:
            os.close(os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC))
            return
        except FileNotFoundError:
            pass
        os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644))
        os.unlink(self.path)

    def write_tick(self, status: EngineStatus) -> None:
        """Append the record of the tick in the engine's status."""
        if status.last_tick is not None:
            self.write(status.last_tick.to_json())

    def write(self, record: dict[str, Any]) -> None:
        """Append one record as one line; a failure is reported, and the daemon goes on."""
        line = (json.dumps(json_value(record), separators=(",", ":")) + "\n").encode()
        with self._lock:
            try:
                self._append(line)
            except OSError as e:
                self.faults.report(FAULT_KEY, f"{self.path}: {e.strerror or e}", logging.ERROR)
                return
            self.faults.clear(FAULT_KEY)

    def _append(self, line: bytes) -> None:
        self._rotate_if_needed(len(line))
        try:
            append_lines(self.path, line)
        except OSError as e:
            # A full disk: the oldest backup is the recording worth least; give it up to go on.
            if e.errno not in NO_ROOM or not self._drop_oldest_backup():
                raise
            append_lines(self.path, line)

    def _drop_oldest_backup(self) -> bool:
        """Remove the oldest rotated file and keep one backup fewer from now on,
        so the recorder fits the disk instead of meeting it full at each
        rotation (one warning per backup given up, at most backup-count).
        Whether there was one."""
        for i in range(self._backups, 0, -1):
            try:
                os.unlink(f"{self.path}.{i}")
            except FileNotFoundError:
                continue
            self._backups = i - 1
            log.warning("flight recorder %s: disk full: removed %s.%d, keeping %d backups from now on",
                        self.path, self.path, i, self._backups)
            return True
        return False

    def _rotate_if_needed(self, incoming: int) -> None:
        try:
            size = os.path.getsize(self.path)
        except FileNotFoundError:
            return
        if size == 0 or size + incoming <= self.max_bytes:
            return
        if self._backups <= 0:
            os.truncate(self.path, 0)
            return
        for i in range(self._backups - 1, 0, -1):
            src = f"{self.path}.{i}"
            if os.path.exists(src):
                os.replace(src, f"{self.path}.{i + 1}")
        os.replace(self.path, f"{self.path}.1")
