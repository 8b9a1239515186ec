"""Where the real-world policies and configs are (the workspace's ../shared/policies).

They are test inputs only, never copied into the repository. Looked up beside
the repository first, then at /work/shared/policies; MOM_SHARED_POLICIES
overrides both. Tests that need them skip with a reason when they are absent.
"""

from __future__ import annotations

import os
from pathlib import Path

_REPO = Path(__file__).resolve().parents[2]


def _find() -> Path:
    override = os.environ.get("MOM_SHARED_POLICIES")
    if override:
        return Path(override)
    for candidate in (_REPO.parent / "shared" / "policies", Path("/work/shared/policies")):
        if candidate.is_dir():
            return candidate
    return _REPO.parent / "shared" / "policies"


SHARED_POLICIES = _find()
