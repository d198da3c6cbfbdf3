"""Registrar bindings, persisted so they survive a service restart.

The registrar keeps bindings in memory and submits `save_op`/`delete_op` to the write-behind;
at start it reloads the unexpired ones with `load_active`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

import asyncpg

from pbx.db.writebehind import Delete, Upsert, op_sql

TABLE = "registrations"


@dataclass(frozen=True)
class StoredBinding:
    aor: str
    contact_uri: str
    received_host: str
    received_port: int
    transport: str
    expires_at: datetime  # timezone-aware
    call_id: str
    cseq: int
    instance_id: str | None = None  # +sip.instance (RFC 5626)
    reg_id: int | None = None
    user_agent: str | None = None
    auth_algorithm: str | None = None  # digest algorithm the REGISTER authenticated with
    path: str | None = None  # RFC 3327 Path entries, one per line (None: registered directly)


def save_op(binding: StoredBinding) -> Upsert:
    return Upsert(TABLE, asdict(binding), key=("aor", "contact_uri"))


def delete_op(aor: str, contact_uri: str) -> Delete:
    return Delete(TABLE, {"aor": aor, "contact_uri": contact_uri})


def delete_aor_op(aor: str) -> Delete:
    """Remove every binding of an address-of-record (REGISTER with Contact: *)."""
    return Delete(TABLE, {"aor": aor})


_COLUMNS = (
    "aor, contact_uri, received_host, received_port, transport, expires_at, call_id, cseq,"
    " instance_id, reg_id, user_agent, auth_algorithm, path"
)


class RegistrationRepository:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def save(self, binding: StoredBinding) -> None:
        async with self.pool.acquire() as conn:
            await conn.execute(*_sql(save_op(binding)))

    async def delete(self, aor: str, contact_uri: str) -> None:
        async with self.pool.acquire() as conn:
            await conn.execute(*_sql(delete_op(aor, contact_uri)))

    async def load_active(self, now: datetime) -> list[StoredBinding]:
        """Bindings still valid at `now`, ordered by AOR and contact."""
        rows = await self.pool.fetch(
            f"SELECT {_COLUMNS} FROM {TABLE} WHERE expires_at > $1 ORDER BY aor, contact_uri", now
        )
        return [StoredBinding(**dict(r)) for r in rows]

    async def purge_expired(self, now: datetime) -> int:
        status = await self.pool.execute(f"DELETE FROM {TABLE} WHERE expires_at <= $1", now)
        return int(status.split()[-1])


def _sql(op: Upsert | Delete) -> tuple[object, ...]:
    sql, args = op_sql(op)
    return (sql, *args)
