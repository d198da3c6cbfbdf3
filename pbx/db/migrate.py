"""Versioned, idempotent schema migrations (table schema_version)."""

from __future__ import annotations

from importlib import resources

import asyncpg
import structlog

log = structlog.get_logger()

# (version, SQL file in this package). Append new versions; never edit an applied one.
MIGRATIONS: tuple[tuple[int, str], ...] = (
    (1, "schema.sql"),
    (2, "digest_algorithms.sql"),
    (3, "shifts.sql"),
    (4, "registrations_columns.sql"),
    (5, "registration_path.sql"),
    (8, "call_records.sql"),
    (12, "console_accounts.sql"),
    (13, "call_daily_answered.sql"),
)

# Serialises concurrent migrators (service and CLI starting at once); any constant will do.
_LOCK_KEY = 0x68656C70  # "help"


def _sql(name: str) -> str:
    return resources.files("pbx.db").joinpath(name).read_text(encoding="utf-8")


async def current_version(conn: asyncpg.Connection) -> int:
    exists = await conn.fetchval("SELECT to_regclass('schema_version') IS NOT NULL")
    if not exists:
        return 0
    version = await conn.fetchval("SELECT max(version) FROM schema_version")
    return int(version or 0)


async def migrate(conn: asyncpg.Connection) -> int:
    """Bring the schema up to the newest version; returns the version now in place.

    Each migration runs in its own transaction together with its schema_version row, so a
    failure leaves the previous version intact and a rerun is a no-op.
    """
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_version (
                   version    integer PRIMARY KEY,
                   applied_at timestamptz NOT NULL DEFAULT now()
               )"""
        )
    # Every listed version not applied yet, in order: not just those above the newest applied,
    # so a migration merged in from a branch after a later one was applied is never skipped.
    for number, name in MIGRATIONS:
        if number in await _applied(conn):
            continue
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
            # Another process may have applied it while we waited for the lock.
            if number in await _applied(conn):
                continue
            await conn.execute(_sql(name))
            await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", number)
        log.info("db.migrated", version=number)
    return await current_version(conn)


async def _applied(conn: asyncpg.Connection) -> set[int]:
    return {int(r["version"]) for r in await conn.fetch("SELECT version FROM schema_version")}
