"""Registrar bindings, persisted so they survive a service restart.

The registrar keeps bindings in memory and submits `save_op`/`delete_op` to the write-behind;
at start it reloads the unexpired ones with `load_active`. `binding_to_row` and
`binding_from_row` map between the registrar's `Binding` and a row.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import asyncpg

from pbx.db.ops import Delete, Upsert, op_sql
from pbx.sip.peer import Peer, TransportKind
from pbx.sip.registrar import Binding
from pbx.sip.uri import parse_sip_uri

TABLE = "registrations"


@dataclass(frozen=True)
class StoredBinding:
    aor: str
    binding_key: str  # the binding within its AOR: the +sip.instance (RFC 5626), else the contact
    received_host: str
    received_port: int
    transport: str
    expires_at: datetime  # timezone-aware
    call_id: str
    cseq: int
    contact: str | None = None  # the Contact URI as registered (None: the key is the contact)
    reg_id: int | None = None
    user_agent: str | None = None
    auth_algorithm: str | None = None  # digest algorithm the REGISTER authenticated with
    path: str | None = None  # RFC 3327 Path entries, one per line (None: registered directly)


def save_op(binding: StoredBinding) -> Upsert:
    return Upsert(TABLE, asdict(binding), key=("aor", "binding_key"))


def delete_op(aor: str, binding_key: str) -> Delete:
    return Delete(TABLE, {"aor": aor, "binding_key": db_text(binding_key)})


def delete_aor_op(aor: str) -> Delete:
    """Remove every binding of an address-of-record (REGISTER with Contact: *)."""
    return Delete(TABLE, {"aor": aor})


_COLUMNS = (
    "aor, binding_key, received_host, received_port, transport, expires_at, call_id, cseq,"
    " contact, reg_id, user_agent, auth_algorithm, path"
)


class RegistrationRepository:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def save(self, binding: StoredBinding) -> None:
        async with self.pool.acquire() as conn:
            await conn.execute(*_sql(save_op(binding)))

    async def delete(self, aor: str, binding_key: str) -> None:
        async with self.pool.acquire() as conn:
            await conn.execute(*_sql(delete_op(aor, binding_key)))

    async def load_active(self, now: datetime) -> list[StoredBinding]:
        """Bindings still valid at `now`, ordered by AOR and contact."""
        rows = await self.pool.fetch(
            f"SELECT {_COLUMNS} FROM {TABLE} WHERE expires_at > $1 ORDER BY aor, binding_key", now
        )
        return [StoredBinding(**dict(r)) for r in rows]

    async def purge_expired(self, now: datetime) -> int:
        status = await self.pool.execute(f"DELETE FROM {TABLE} WHERE expires_at <= $1", now)
        return int(status.split()[-1])


def _sql(op: Upsert | Delete) -> tuple[object, ...]:
    sql, args = op_sql(op)
    return (sql, *args)


def db_text(text: str) -> str:
    """PostgreSQL text holds neither NUL nor lone surrogates, which a handset may have sent."""
    return text.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")


def binding_to_row(b: Binding) -> StoredBinding:
    return StoredBinding(
        aor=b.username,
        binding_key=db_text(b.key),
        received_host=b.source.host,
        received_port=b.source.port,
        transport=b.source.transport.value,
        expires_at=datetime.fromtimestamp(b.expires_at, UTC),
        call_id=db_text(b.call_id),
        cseq=b.cseq,
        contact=db_text(str(b.contact)),
        user_agent=None if b.user_agent is None else db_text(b.user_agent),
        auth_algorithm=b.algorithm,
        path="\n".join(db_text(p) for p in b.path) or None,
    )


def binding_from_row(row: StoredBinding) -> Binding:
    """Raises ValueError for a row whose contact is no SIP URI (or transport is unknown)."""
    contact = parse_sip_uri(row.contact or row.binding_key)
    instance = row.binding_key if row.contact and row.binding_key != row.contact else None
    return Binding(
        username=row.aor,
        contact=contact,
        source=Peer(TransportKind(row.transport), row.received_host, row.received_port),
        expires_at=row.expires_at.timestamp(),
        call_id=row.call_id,
        cseq=row.cseq,
        instance=instance if instance and not instance.startswith("sip") else None,
        user_agent=row.user_agent,
        algorithm=row.auth_algorithm,
        path=tuple(row.path.split("\n")) if row.path else (),
    )
