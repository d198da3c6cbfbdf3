"""The leadership lease's dedicated connection: a session advisory lock in PostgreSQL.

One connection per node, used for nothing else, so the lock lives exactly as long as the
session: when the node dies, PostgreSQL closes the session and the lock is free for the next
`pg_try_advisory_lock`. The connection's application_name names the node, so
`pg_stat_activity` (and `leader()`) tell which node holds the lease. A node that drains gives
the lock back but keeps the session, renamed `helpline-draining:<node>`: the node taking over
sees (`draining_nodes`) that the calls it carries are still going on.
"""

from __future__ import annotations

from collections.abc import Callable

import asyncpg

# "HELPLINE" in ASCII: one fixed key for every node of a deployment (a bigint).
LEASE_KEY = 0x48454C504C494E45
APPLICATION_PREFIX = "helpline-lease:"
DRAINING_PREFIX = "helpline-draining:"
KEEPALIVES = {"tcp_keepalives_idle": "2", "tcp_keepalives_interval": "1",
              "tcp_keepalives_count": "3"}  # fmt: skip

_HELD = (
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
    " AND pid = pg_backend_pid() AND ((classid::bigint << 32) | objid::bigint) = $1"
)
_LEADER = (
    "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
    " WHERE l.locktype = 'advisory' AND l.granted"
    " AND ((l.classid::bigint << 32) | l.objid::bigint) = $1 LIMIT 1"
)


class LeaseConnection:
    def __init__(self, url: str, node: str, on_closed: Callable[[], None]) -> None:
        self.url = url
        self.node = node
        self.on_closed = on_closed  # the connection ended without our asking
        self._conn: asyncpg.Connection | None = None

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    async def try_lock(self, timeout: float) -> bool:
        """Connect if needed; take the lock if nobody holds it. Raises on a broken connection."""
        conn = await self._connection(timeout)
        return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", LEASE_KEY,
                                        timeout=timeout))  # fmt: skip

    async def held(self, timeout: float) -> bool:
        """Whether this session still holds the lock (a round trip: the session is alive)."""
        if self._conn is None or self._conn.is_closed():
            return False
        return bool(await self._conn.fetchval(_HELD, LEASE_KEY, timeout=timeout))

    async def leader(self, timeout: float) -> str | None:
        """The node holding the lease now, as it named itself; None if nobody does."""
        conn = await self._connection(timeout)
        name = await conn.fetchval(_LEADER, LEASE_KEY, timeout=timeout)
        if not isinstance(name, str):
            return None
        return name.removeprefix(APPLICATION_PREFIX)

    async def retire(self, timeout: float) -> None:
        """Give the lock back and say so in the session's name; the session stays."""
        if self._conn is None or self._conn.is_closed():
            return
        await self._conn.execute("SELECT pg_advisory_unlock_all()", timeout=timeout)
        name = (DRAINING_PREFIX + self.node)[:63]
        await self._conn.execute(f"SET application_name = '{_quoted(name)}'", timeout=timeout)

    def drop(self) -> None:
        """Close at once, without a goodbye that could hang: the server ends the session (and
        releases the lock) when the socket closes."""
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            conn.terminate()

    async def _connection(self, timeout: float) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            conn = await asyncpg.connect(
                self.url, timeout=timeout,
                server_settings={
                    "application_name": (APPLICATION_PREFIX + self.node)[:63],
                    # the server notices a node cut off (not closed) within ~5 s: its lock goes
                    **KEEPALIVES,
                },
            )  # fmt: skip
            conn.add_termination_listener(self._terminated)
            self._conn = conn
        return self._conn

    def _terminated(self, conn: asyncpg.Connection) -> None:
        if conn is self._conn:  # not one we dropped ourselves
            self._conn = None
            self.on_closed()


def _quoted(text: str) -> str:
    return text.replace("'", "''")


async def draining_nodes(pool: asyncpg.Pool, timeout: float) -> list[str]:
    """Nodes that gave the lease up to drain and are still alive (finishing their calls)."""
    rows = await pool.fetch(
        "SELECT application_name FROM pg_stat_activity WHERE application_name LIKE $1",
        DRAINING_PREFIX + "%", timeout=timeout,
    )  # fmt: skip
    return [str(r["application_name"]).removeprefix(DRAINING_PREFIX) for r in rows]
