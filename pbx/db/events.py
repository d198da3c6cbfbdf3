"""Anonymous call/queue/volunteer events for statistics, written behind.

`data` holds anonymous indicators only (queue, language, durations, outcome, partner line):
never a caller's number or anything else identifying a caller.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pbx.db.writebehind import Insert

KIND_RE = re.compile(r"^[a-z][a-z0-9_.]{0,63}$")  # e.g. call.answered, queue.abandoned


def event_op(kind: str, data: Mapping[str, Any], at: datetime) -> Insert:
    """An events-row insert for `WriteBehind.submit`; `at` must be timezone-aware."""
    if not KIND_RE.match(kind):
        raise ValueError(f"invalid event kind {kind!r}")
    if at.tzinfo is None:
        raise ValueError("event time must be timezone-aware")
    return Insert("events", {"at": at, "kind": kind, "data": dict(data)})
