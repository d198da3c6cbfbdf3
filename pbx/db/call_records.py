"""Reading call records for reports, and their retention: old records folded into daily counts.

Records are written by the write-behind (`pbx.call_records.record_op`); this module only reads
them and, for retention, aggregates and deletes in one transaction, so a count is never lost nor
counted twice.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import asyncpg

from pbx.db.ops import Op

COLUMNS = (
    "id", "started_at", "entry_kind", "entry_line", "region", "partner", "partner_via",
    "ivr_path", "language", "queue", "wait_seconds", "offered", "ring_no_answer", "answered_by",
    "talk_seconds", "time_limit_reached", "transfer_to", "transfer_result", "overflowed",
    "outcome", "returning_today",
)  # fmt: skip

SERVICE_LEVEL_SECONDS = 60
FOLD_EVERY = 24 * 3600.0  # seconds between retention runs of the service
_FOLD_LOCK = 0x63616C6C  # "call": serialises concurrent folds


async def fetch_records(
    conn: asyncpg.Connection | asyncpg.Pool, start: datetime, end: datetime
) -> list[dict[str, Any]]:
    """Records of calls that started in [start, end), oldest first."""
    rows = await conn.fetch(
        f"SELECT {', '.join(COLUMNS)} FROM call_records "
        "WHERE started_at >= $1 AND started_at < $2 ORDER BY started_at, id",
        start,
        end,
    )
    return [dict(r) for r in rows]


def months_before(now: datetime, months: int) -> datetime:
    """The first instant of the month `months` before now's month (UTC)."""
    now = now.astimezone(UTC)
    index = now.year * 12 + now.month - 1 - months
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


async def fold_old_records(conn: asyncpg.Connection, before: datetime) -> int:
    """Aggregate the records older than `before` into `call_daily_counts` and delete them, in
    one transaction; the number of records folded."""
    async with conn.transaction():
        # two instances (HA) folding at once must not count the same records twice
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _FOLD_LOCK)
        await conn.execute(
            """
            INSERT INTO call_daily_counts AS d (day, entry_kind, partner, language, queue,
                outcome, calls, answered, answered_60, wait_seconds, talk_seconds,
                returning_today)
            SELECT (started_at AT TIME ZONE 'UTC')::date, entry_kind, coalesce(partner, ''),
                   coalesce(language, ''), coalesce(queue, ''), outcome, count(*),
                   count(*) FILTER (WHERE answered_by IS NOT NULL),
                   count(*) FILTER (WHERE answered_by IS NOT NULL AND wait_seconds <= $2),
                   coalesce(sum(wait_seconds), 0), coalesce(sum(talk_seconds), 0),
                   count(*) FILTER (WHERE returning_today)
            FROM call_records WHERE started_at < $1
            GROUP BY 1, 2, 3, 4, 5, 6
            ON CONFLICT (day, entry_kind, partner, language, queue, outcome) DO UPDATE SET
                calls = d.calls + EXCLUDED.calls,
                answered = d.answered + EXCLUDED.answered,
                answered_60 = d.answered_60 + EXCLUDED.answered_60,
                wait_seconds = d.wait_seconds + EXCLUDED.wait_seconds,
                talk_seconds = d.talk_seconds + EXCLUDED.talk_seconds,
                returning_today = d.returning_today + EXCLUDED.returning_today
            """,
            before,
            float(SERVICE_LEVEL_SECONDS),
        )
        status = await conn.execute("DELETE FROM call_records WHERE started_at < $1", before)
    return int(status.split()[-1])


async def daily_counts(
    conn: asyncpg.Connection | asyncpg.Pool, first: date, last: date
) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT * FROM call_daily_counts WHERE day >= $1 AND day <= $2 ORDER BY day",
        first,
        last,
    )
    return [dict(r) for r in rows]


async def fold_every_day(
    submit: Callable[[Op], None],
    months: int,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> None:
    """The service's retention duty: once a day, through the write-behind (so it waits for the
    database like every other write), fold the records older than `months` months."""
    while True:
        submit(functools.partial(fold_old_records, before=months_before(now(), months)))
        await asyncio.sleep(FOLD_EVERY)
