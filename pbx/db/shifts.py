"""Volunteers' shift states, persisted so that a restart costs nobody their shift.

The roster lives in memory; the service submits `save_op` to the write-behind on every change
and reads the rows back with `load_all` at start. Times are wall-clock seconds in memory and
timestamptz in the table. Nothing here names a call or a caller.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from pbx.db.ops import Upsert

TABLE = "shifts"
_TIMES = ("state_since", "idle_since", "wrap_up_until", "lapsed_since", "updated_at")


@dataclass(frozen=True)
class StoredShift:
    username: str
    state: str  # a queues.roster.VolunteerState value
    state_since: float
    idle_since: float
    consecutive_misses: int
    wrap_up_until: float | None
    pause_reason: str | None
    lapsed_since: float | None
    updated_at: float  # when this record was taken: the newer of two copies wins

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> StoredShift:
        return cls(**doc)


def _ts(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def save_op(shift: StoredShift) -> Upsert:
    values: dict[str, Any] = asdict(shift)
    for name in _TIMES:
        values[name] = _ts(values[name])
    return Upsert(TABLE, values, key=("username",))


class ShiftRepository:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def load_all(self) -> list[StoredShift]:
        rows = await self.pool.fetch(f"SELECT * FROM {TABLE} ORDER BY username")
        out = []
        for row in rows:
            doc = dict(row)
            for name in _TIMES:
                value = doc[name]
                doc[name] = None if value is None else value.timestamp()
            out.append(StoredShift(**doc))
        return out
