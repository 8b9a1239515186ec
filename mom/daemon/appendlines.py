"""Append whole lines to a file, or nothing: what the flight recorder and the
plot files need so that a full disk never leaves a cut line for the next line
to be glued to.

One call is one write on an O_APPEND descriptor (more only when the kernel
takes part of it, e.g. the disk fills up midway); when the rest cannot be
written the file is truncated back to where it ended, on a line boundary.
"""

from __future__ import annotations

import errno
import os

TAIL_CHUNK = 64 * 1024


def append_lines(path: str, data: bytes, *, header: bytes = b"", mode: int = 0o644) -> int:
    """Append data (whole lines, ending in a newline) to path, creating it.

    When the file is empty, header goes first, in the same write. A cut last
    line found in the file (left by a crash) is removed first. Returns the
    file's size after the write. Raises OSError; the file then ends where it
    ended before (or, if even the truncation failed, the next call cuts the rest)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, mode)
        readable = True
    except PermissionError:  # a write-only file: appended to without the tail check
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, mode)
        readable = False
    try:
        start = end_of_last_line(fd) if readable else os.fstat(fd).st_size
        if start == 0 and header:
            data = header + data
        _write_all(fd, data, start)
        return start + len(data)
    finally:
        os.close(fd)


def end_of_last_line(fd: int) -> int:
    """The offset just after the file's last newline (0 if none), truncating a
    cut line after it. fd must be readable and writable. Raises OSError."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return size
    end = size
    while end > 0:
        begin = max(0, end - TAIL_CHUNK)
        chunk = os.pread(fd, end - begin, begin)
        at = chunk.rfind(b"\n")
        if at >= 0:
            good = begin + at + 1
            os.ftruncate(fd, good)
            return good
        end = begin
    os.ftruncate(fd, 0)
    return 0


def _write_all(fd: int, data: bytes, start: int) -> None:
    """Write data at the end; on failure truncate back to start and raise."""
    done = 0
    try:
        while done < len(data):
            n = os.write(fd, data[done:])  # once, unless the kernel took only part of it
            if n <= 0:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            done += n
    except OSError:
        if done:
            try:
                os.ftruncate(fd, start)
            except OSError:
                pass  # the next append removes the cut line (end_of_last_line)
        raise
