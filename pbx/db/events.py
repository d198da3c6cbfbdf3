"""Anonymous call/queue/volunteer events for statistics, written behind.

`data` holds anonymous indicators only (queue, language, durations, outcome, partner line):
never a caller's number or anything else identifying a caller.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pbx.db.ops import Insert


def event_op(kind: str, data: Mapping[str, Any], at: datetime) -> Insert:
    """An events-row insert for `WriteBehind.submit`; e.g. kind "call.answered".

    Never raises (it is called on live call paths); a naive `at` is taken as UTC. Values in
    `data` that JSON cannot represent are stored as their str().
    """
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return Insert("events", {"at": at, "kind": kind, "data": dict(data)})
