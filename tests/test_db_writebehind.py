"""Write-behind: buffering, journaling and exactly-once delivery across real database outages."""

from __future__ import annotations

import asyncio
import enum
import shutil
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from pbx.db.database import Database, open_database
from pbx.db.embedded import EmbeddedPostgres, start_embedded
from pbx.db.events import event_op
from pbx.db.ops import Delete, Insert, Upsert
from pbx.db.registrations import StoredBinding, delete_op, save_op
from pbx.db.writebehind import WriteBehind
from tests.helpers.pg_state import pg_state_dir

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Mode(enum.Enum):
    NIGHT = "night"


@pytest.fixture(scope="module")
def pg_state() -> Iterator[Path]:
    with pg_state_dir() as state:
        yield state


@pytest.fixture(scope="module")
def pg(pg_state: Path) -> Iterator[EmbeddedPostgres]:
    server = start_embedded(pg_state)
    yield server
    server.stop(force=True)


@pytest.fixture
async def db(pg: EmbeddedPostgres, tmp_path: Path) -> AsyncIterator[Database]:
    database = await open_database(pg.url, tmp_path)
    await database.pool.execute("TRUNCATE events, registrations, volunteers, writebehind_batches")
    yield database
    await database.close()


def fast_writer(
    url: str, state_dir: Path, max_buffer: int = 100_000, batch_size: int = 500
) -> WriteBehind:
    return WriteBehind(
        url,
        state_dir,
        max_buffer=max_buffer,
        batch_size=batch_size,
        backoff_initial=0.02,
        backoff_max=0.3,
    )


async def wait_until(cond: Callable[[], bool], what: str, limit: float = 30.0) -> None:
    """Liveness bound only (not a speed assertion)."""
    deadline = time.monotonic() + limit
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.02)


def binding(contact: str) -> StoredBinding:
    return StoredBinding(
        aor="sip:anna@helpline",
        binding_key=contact,
        received_host="127.0.0.1",
        received_port=5060,
        transport="udp",
        expires_at=T0 + timedelta(days=3650),
        call_id="c",
        cseq=1,
    )


async def seqs(pool: asyncpg.Pool | asyncpg.Connection) -> list[int]:
    rows = await pool.fetch("SELECT (data->>'seq')::int AS seq FROM events ORDER BY id")
    return [r["seq"] for r in rows]


async def test_ops_land_in_order(db: Database, tmp_path: Path) -> None:
    wb = fast_writer(db.url, tmp_path, batch_size=7)
    wb.start()
    for i in range(40):
        wb.submit(event_op("call.answered", {"seq": i, "queue": "nl"}, T0 + timedelta(seconds=i)))
    wb.submit(save_op(binding("sip:a@x")))
    wb.submit(save_op(binding("sip:b@x")))
    wb.submit(delete_op("sip:anna@helpline", "sip:a@x"))

    async def callable_op(conn: asyncpg.Connection) -> None:
        await conn.execute("INSERT INTO events (kind) VALUES ('custom.op')")

    wb.submit(callable_op)
    assert await wb.flush(30)
    assert await seqs(db.pool) == [*range(40), None]
    contacts = await db.pool.fetch("SELECT binding_key FROM registrations")
    assert [r["binding_key"] for r in contacts] == ["sip:b@x"]
    stats = wb.stats()
    assert (stats.pending, stats.written, stats.rejected, stats.spilled) == (0, 44, 0, 0)
    assert await wb.close(5)


async def test_bad_data_is_rejected_alone_and_invalid_ops_never_raise(
    db: Database, tmp_path: Path
) -> None:
    wb = fast_writer(db.url, tmp_path)
    wb.start()
    wb.submit(event_op("call.offered", {"seq": 1}, T0))
    # Violates the username CHECK constraint: refused by the database on every retry.
    wb.submit(
        Insert(
            "volunteers",
            {"username": "no spaces allowed", "realm": "r", "ha1_md5": "x", "ha1_sha256": "y"},
        )
    )
    wb.submit(event_op("call.offered", {"seq": 2}, T0))
    # Rejected at submit without raising: bad identifiers, empty ops, wrong types.
    wb.submit(Insert("events; DROP TABLE events", {"kind": "x"}))
    wb.submit(Upsert("events", {"kind": "x"}, key=("id",)))
    wb.submit(Delete("events", {}))
    wb.submit("not an op")  # type: ignore[arg-type]
    # Values JSON cannot represent (an enum here) are stored as text, not rejected.
    wb.submit(event_op("call.offered", {"seq": 3, "mode": Mode.NIGHT}, T0.replace(tzinfo=None)))
    assert await wb.flush(30)
    assert await seqs(db.pool) == [1, 2, 3]
    assert (
        await db.pool.fetchval(
            "SELECT data->>'mode' FROM events WHERE kind='call.offered' AND (data->>'seq')::int = 3"
        )
        == "Mode.NIGHT"
    )
    assert wb.stats().rejected == 5
    await wb.close(5)


async def test_outage_buffers_spills_and_delivers_exactly_once(
    pg: EmbeddedPostgres, pg_state: Path, db: Database, tmp_path: Path
) -> None:
    url = db.url
    await db.close()
    wb = fast_writer(url, tmp_path, max_buffer=50, batch_size=20)
    wb.start()
    wb.submit(event_op("call.offered", {"seq": -1}, T0))
    assert await wb.flush(30)

    pg.stop()
    try:
        total = 300
        for i in range(total):
            wb.submit(event_op("call.offered", {"seq": i}, T0))
            if i == 10:  # in memory
                wb.submit(save_op(binding("sip:gone@x")))
            if i == 200:  # in the journal: must still run after the upsert above
                wb.submit(delete_op("sip:anna@helpline", "sip:gone@x"))
                wb.submit(save_op(binding("sip:kept@x")))
        await wait_until(lambda: wb.stats().failed_attempts >= 2, "write attempts failing")
        stats = wb.stats()
        assert stats.in_memory == 50
        assert stats.spilled == total + 3 - 50
        assert stats.pending == total + 3
        journal_lines = sum(
            len(p.read_text().splitlines()) for p in (tmp_path / "writebehind").glob("*.jsonl")
        )
        assert journal_lines == total + 3 - 50
        assert not await wb.flush(0.3)  # nothing can be written while the server is down
    finally:
        restarted = start_embedded(pg_state)
    assert restarted.url == pg.url

    assert await wb.flush(60)
    conn = await asyncpg.connect(url)
    try:
        assert await seqs(conn) == list(range(-1, total))
        contacts = await conn.fetch("SELECT binding_key FROM registrations")
        assert [r["binding_key"] for r in contacts] == ["sip:kept@x"]
    finally:
        await conn.close()
    stats = wb.stats()
    assert (stats.pending, stats.written, stats.rejected) == (0, total + 4, 0)
    assert list((tmp_path / "writebehind").glob("*.jsonl")) == []
    await wb.close(5)


async def test_shutdown_during_outage_journals_and_replays_once(
    pg: EmbeddedPostgres, pg_state: Path, db: Database, tmp_path: Path
) -> None:
    url = db.url
    await db.close()
    journal_dir = tmp_path / "writebehind"
    pg.stop()
    try:
        wb = fast_writer(url, tmp_path, max_buffer=10, batch_size=4)
        wb.start()
        for i in range(30):
            wb.submit(event_op("call.offered", {"seq": i}, T0))
        assert not await wb.close(0.3)  # gives up waiting, journals the rest
        wb.submit(event_op("call.offered", {"seq": 30}, T0))  # after close: journaled too
        assert wb.stats().journaled == 31
    finally:
        start_embedded(pg_state)
    saved = tmp_path / "saved"
    shutil.copytree(journal_dir, saved)

    # Next start of the service replays the journals in order.
    wb2 = fast_writer(url, tmp_path)
    assert wb2.stats().pending == 31
    wb2.start()
    assert await wb2.flush(60)
    await wb2.close(5)
    assert list(journal_dir.glob("*.jsonl")) == []

    # A crash after committing but before deleting the journal: replaying it adds nothing.
    for path in saved.iterdir():
        shutil.copy(path, journal_dir / path.name)
    wb3 = fast_writer(url, tmp_path)
    wb3.start()
    assert await wb3.flush(60)
    assert wb3.stats().duplicates_skipped > 0 and wb3.stats().written == 0
    await wb3.close(5)

    conn = await asyncpg.connect(url)
    try:
        assert await seqs(conn) == list(range(31))
    finally:
        await conn.close()


async def test_torn_journal_line_is_skipped(db: Database, tmp_path: Path) -> None:
    journal_dir = tmp_path / "writebehind"
    wb = fast_writer("postgresql://nobody@127.0.0.1:1/none", tmp_path, max_buffer=0)
    for i in range(3):
        wb.submit(event_op("call.offered", {"seq": i}, T0))
    await wb.close(0)
    [journal] = journal_dir.glob("*.jsonl")
    with journal.open("a") as fh:
        fh.write('{"b": "1234", "op": {"k": "ins')  # power cut mid-write
    wb2 = fast_writer(db.url, tmp_path)
    wb2.start()
    assert await wb2.flush(30)
    await wb2.close(5)
    assert await seqs(db.pool) == [0, 1, 2]
