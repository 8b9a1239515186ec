"""The one disk rule as a table: every interface (libvirt, vdsm, the simulator)
and the IoTune controller are run against these same cases.

Each interface under test has one disk, target ``vda`` at path ``PATH`` (the
tests fill it in); an entry is (name, path) with the placeholders below.
"""

from __future__ import annotations

import math

THE_PATH = "<the disk's path>"
ELSEWHERE = "/no/such/disk.img"

# (name, path) of an entry -> whether it means the one disk vda at THE_PATH.
MATCH_CASES = [
    (("vda", THE_PATH), True),     # both agree
    (("vda", ELSEWHERE), True),    # a path no disk has: the name is the fall-back (a live snapshot moved it)
    (("vdz", THE_PATH), True),     # the path names the storage itself: it wins over a wrong name
    ((None, THE_PATH), True),
    (("vda", None), True),
    (("vdz", ELSEWHERE), False),
    ((None, None), False),
]

# limits sent -> the limits applied (a dict), or the error's words (a str).
VALUE_CASES = [
    ({"total_iops_sec": 300}, {"total_iops_sec": 300}),
    ({"total_iops_sec": 300.0}, {"total_iops_sec": 300}),  # a policy's whole float is that integer
    ({"total_bytes_sec": 0}, {"total_bytes_sec": 0}),
    ({"total_bytes_sec": 5, "total_iops_sec": None}, {"total_bytes_sec": 5}),  # None: left as it is
    ({"total_iops_sec": None}, {}),  # nothing to change
    ({"total_iops_sec": 1.5}, "must be a whole number >= 0"),  # not rounded
    ({"total_iops_sec": -1}, "must be a whole number >= 0"),
    ({"total_iops_sec": True}, "must be a whole number >= 0"),
    ({"total_iops_sec": "300"}, "must be a whole number >= 0"),
    ({"total_iops_sec": math.nan}, "must be a whole number >= 0"),
    ({"total_iops_sec": math.inf}, "must be a whole number >= 0"),
    ({"bogus_iops": 1}, "unknown IO limit bogus_iops"),
]


def entry(case: tuple[str | None, str | None], path: str) -> tuple[str | None, str | None]:
    """A MATCH_CASES entry with THE_PATH replaced by the disk's real path."""
    name, where = case
    return name, (path if where == THE_PATH else where)
