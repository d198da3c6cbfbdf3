"""Opening the database: an external server by URL, or the embedded one; migrated on open."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import structlog

from pbx.db.embedded import EmbeddedPostgres, start_embedded
from pbx.db.migrate import migrate

log = structlog.get_logger()


async def init_connection(conn: asyncpg.Connection) -> None:
    """Per-connection setup: jsonb columns take and return Python objects."""
    await conn.set_type_codec("jsonb", encoder=_json_dumps, decoder=json.loads, schema="pg_catalog")


def _json_dumps(value: object) -> str:
    # Enums, datetimes and the like in event data become strings rather than failing the write.
    return json.dumps(value, default=str)


@dataclass
class Database:
    url: str
    pool: asyncpg.Pool
    embedded: EmbeddedPostgres | None = None

    async def close(self) -> None:
        """Close the pool; an embedded server stops unless another process still uses it."""
        await self.pool.close()
        if self.embedded is not None:
            await asyncio.to_thread(self.embedded.stop)


async def open_database(
    url: str | None, state_dir: Path, *, min_size: int = 1, max_size: int = 5
) -> Database:
    """Connect to `url`, or start the embedded server under `state_dir` when url is None."""
    embedded: EmbeddedPostgres | None = None
    if url is None:
        embedded = await asyncio.to_thread(start_embedded, state_dir)
        url = embedded.url
    pool: asyncpg.Pool | None = None
    try:
        pool = await asyncpg.create_pool(
            url, min_size=min_size, max_size=max_size, init=init_connection, timeout=10
        )
        async with pool.acquire() as conn:
            await migrate(conn)
    except BaseException:
        if pool is not None:
            await pool.close()
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)
        raise
    return Database(url=url, pool=pool, embedded=embedded)
