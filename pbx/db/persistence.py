"""The service's database and its write-behind, opened at start and reconnected when it was away.

Live calls never depend on the database: when it cannot be opened at start the service runs on
(from snapshots), records are journaled by the write-behind (external database) and written once
it is back, and `reconnect` is tried again at every credentials refresh.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import structlog

from pbx.db.database import Database, open_database
from pbx.db.ops import Op
from pbx.db.writebehind import WriteBehind

log = structlog.get_logger("pbx.db.persistence")

OPEN_TIMEOUT = 60.0  # at start: the embedded server may be initialising its data directory
RECONNECT_TIMEOUT = 10.0


class Persistence:
    def __init__(self, database_url: str | None, state_dir: Path) -> None:
        self.database_url = database_url  # None: the embedded server under state_dir
        self.state_dir = state_dir
        self.db: Database | None = None
        self.writer: WriteBehind | None = None

    async def open(self) -> bool:
        """Connect (or start the embedded server) and start writing behind; False when the
        database is unreachable (the service runs on without it)."""
        try:
            self.db = await asyncio.wait_for(
                open_database(self.database_url, self.state_dir), OPEN_TIMEOUT
            )
        except Exception as exc:
            log.error("database_unavailable", error=str(exc)[:200])
            if self.database_url is not None:
                # records are journaled and written once the database is back
                self.writer = WriteBehind(self.database_url, self.state_dir)
                self.writer.start()
            return False
        self.writer = WriteBehind(self.db.url, self.state_dir)
        self.writer.start()
        return True

    async def reconnect(self) -> Database | None:
        """The database, connecting to it again if it was away at start (raises if it still
        is); None when there is none to reach (embedded, failed at start)."""
        if self.db is None:
            if self.database_url is None:
                return None
            self.db = await asyncio.wait_for(
                open_database(self.database_url, self.state_dir), RECONNECT_TIMEOUT
            )
            log.info("database_reconnected")
        return self.db

    def submit(self, op: Op) -> None:
        if self.writer is not None:
            self.writer.submit(op)

    @property
    def pending(self) -> int:
        return self.writer.pending if self.writer is not None else 0

    async def close(self) -> None:
        if self.writer is not None:
            await self.writer.close(timeout=5.0)
        if self.db is not None:
            await self.db.close()
