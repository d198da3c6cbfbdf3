"""Schema migrations and the volunteer/registration repositories, on a real embedded PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from pbx.db.database import Database, open_database
from pbx.db.embedded import EmbeddedPostgres, start_embedded
from pbx.db.migrate import MIGRATIONS, migrate
from pbx.db.registrations import RegistrationRepository, StoredBinding
from pbx.db.volunteers import (
    DuplicateUser,
    InvalidValue,
    UnknownUser,
    VolunteerRepository,
    WeakPassword,
    verify_pin,
)
from pbx.sip.digest import Algorithm, Credential, ha1
from tests.helpers.pg_state import pg_state_dir


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture(scope="module")
def pg() -> Iterator[EmbeddedPostgres]:
    with pg_state_dir() as state:
        server = start_embedded(state)
        yield server
        server.stop(force=True)


@pytest.fixture
async def fresh_url(pg: EmbeddedPostgres) -> str:
    """An empty database of its own for each test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(pg.url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_database(pg.url, name)


@pytest.fixture
async def db(fresh_url: str, tmp_path: Path) -> AsyncIterator[Database]:
    database = await open_database(fresh_url, tmp_path)
    yield database
    await database.close()


async def test_migrations_are_idempotent_and_versioned(fresh_url: str) -> None:
    newest = MIGRATIONS[-1][0]
    conns = [await asyncpg.connect(fresh_url) for _ in range(2)]
    try:
        # Two processes migrating at once (service and CLI) must not collide.
        assert await asyncio.gather(*(migrate(c) for c in conns)) == [newest, newest]
        assert await migrate(conns[0]) == newest
        rows = await conns[0].fetch("SELECT version FROM schema_version ORDER BY version")
        assert [r["version"] for r in rows] == [v for v, _ in MIGRATIONS]
        tables = {
            r["tablename"]
            for r in await conns[0].fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname='public'"
            )
        }
        assert {"volunteers", "registrations", "events", "schema_version"} <= tables
    finally:
        for c in conns:
            await c.close()


async def test_no_column_can_hold_a_caller_number(db: Database) -> None:
    columns = [
        r["column_name"]
        for r in await db.pool.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public'"
        )
    ]
    suspicious = ("caller", "number", "phone", "msisdn", "ani", "cli", "from_")
    assert not [c for c in columns if any(s in c for s in suspicious)], columns


async def test_volunteer_lifecycle(db: Database) -> None:
    repo = VolunteerRepository(db.pool)
    created = await repo.create(
        "anna",
        "correct horse battery",
        "helpline",
        display_name="Anna",
        languages=["NL", "ar", "nl"],
        region="Utrecht",
        skills=["113"],
        pin="4321",
    )
    assert created.languages == ("nl", "ar") and created.skills == ("113",)
    assert created.has_pin and not created.disabled
    with pytest.raises(DuplicateUser):
        await repo.create("anna", "another fine password", "helpline")
    with pytest.raises(UnknownUser):
        await repo.get("nobody")
    with pytest.raises(UnknownUser):
        await repo.disable("nobody")
    with pytest.raises(WeakPassword):
        await repo.create("bob", "short", "helpline")
    with pytest.raises(WeakPassword):
        await repo.create("bob", "", "helpline")
    with pytest.raises(WeakPassword):
        await repo.create("bob", "xxbobxxbobxx", "helpline")
    with pytest.raises(InvalidValue):
        await repo.create("bob smith", "correct horse battery", "helpline")
    with pytest.raises(InvalidValue):
        await repo.set_languages("anna", ["dutch"])

    creds = await repo.load_credentials()
    assert creds == {"anna": Credential.from_password("anna", "helpline", "correct horse battery")}
    assert creds["anna"].ha1_sha256 == ha1(
        Algorithm.SHA256, "anna", "helpline", "correct horse battery"
    )

    await repo.disable("anna")
    assert (await repo.load_credentials())["anna"].disabled
    assert not await repo.check_pin("anna", "4321")  # disabled accounts cannot log in
    await repo.enable("anna")
    assert await repo.check_pin("anna", "4321")
    assert not await repo.check_pin("anna", "1234")

    await repo.set_password("anna", "a much better passphrase")
    new = (await repo.load_credentials())["anna"]
    assert new == Credential.from_password("anna", "helpline", "a much better passphrase")

    await repo.set_pin("anna", None)
    assert not (await repo.get("anna")).has_pin
    with pytest.raises(InvalidValue):
        await repo.set_pin("anna", "12ab")

    await repo.create("bob", "a different long password", "helpline")
    await repo.set_region("bob", "Noord")
    await repo.set_skills("bob", ["113", "info"])
    listed = await repo.list()
    assert [v.username for v in listed] == ["anna", "bob"]
    assert listed[1].region == "Noord" and listed[1].skills == ("113", "info")


async def test_pin_is_stored_salted_not_plain(db: Database) -> None:
    repo = VolunteerRepository(db.pool)
    await repo.create("p1", "first good password", "helpline", pin="2468")
    await repo.create("p2", "second good password", "helpline", pin="2468")
    hashes = [r["pin_hash"] for r in await db.pool.fetch("SELECT pin_hash FROM volunteers")]
    assert all("2468" not in h for h in hashes)
    assert hashes[0] != hashes[1]  # salted
    assert all(verify_pin("2468", h) for h in hashes)


async def test_registrations_survive_and_expire(db: Database) -> None:
    repo = RegistrationRepository(db.pool)
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    live = StoredBinding(
        aor="sip:anna@helpline",
        binding_key="<urn:uuid:00000000-0000-0000-0000-000000000001>",
        received_host="127.0.0.2",
        received_port=5062,
        transport="udp",
        expires_at=now + timedelta(seconds=600),
        call_id="abc@h",
        cseq=7,
        contact="sip:anna@192.0.2.10:5060",
        reg_id=1,
        user_agent="Yealink",
    )
    expired = StoredBinding(
        aor="sip:bob@helpline",
        binding_key="sip:bob@192.0.2.11",
        received_host="127.0.0.1",
        received_port=5070,
        transport="tcp",
        expires_at=now - timedelta(seconds=1),
        call_id="def@h",
        cseq=1,
    )
    await repo.save(live)
    await repo.save(expired)
    refreshed = StoredBinding(
        **{**live.__dict__, "cseq": 8, "expires_at": now + timedelta(hours=1)}
    )
    await repo.save(refreshed)  # same (aor, contact): updated in place
    assert await repo.load_active(now) == [refreshed]
    assert await repo.purge_expired(now) == 1
    await repo.delete(live.aor, live.binding_key)
    assert await repo.load_active(now) == []
