"""Runs the real helpline service in the test's event loop, on loopback, with the real database.

Peers (sipp, pjsua2) are driven through asyncio.to_thread so the service keeps serving while a
blocking peer talks to it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from pbx.app import build_service
from pbx.config import Settings
from pbx.db.volunteers import VolunteerRepository
from pbx.service import HelplineService
from pbx.sip.peer import TransportKind
from tests.helpers.ports import free_port

# The service under test trusts 127.0.0.1 as its carrier trunk (the default trunk_sources); the
# volunteers' handsets register from another address, as in real life: a REGISTER from a trunk
# address is refused, and an INVITE from it is a carrier call whatever credentials it carries.
TRUNK_HOST = "127.0.0.1"
HANDSET_HOST = "127.0.0.2"
# For tests that aim many varied requests at the request path from one address (fuzzing,
# bursts): admission control and authentication lockouts would soon refuse that source before
# parsing (their own tests cover that), so here they stay out of the way.
UNLIMITED_SOURCE: dict[str, Any] = {
    "admission_requests_per_second": 1e9, "admission_request_burst": 1e9,
    "admission_bytes_per_second": 1e12, "admission_byte_burst": 1e12,
    "auth_source_failures": 10**9, "auth_user_failures": 10**9,
}  # fmt: skip


@dataclass
class Running:
    service: HelplineService
    settings: Settings

    @property
    def host(self) -> str:
        return self.settings.sip_host

    @property
    def port(self) -> int:
        return self.service.stack.port(TransportKind.UDP)

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    async def add_volunteer(self, username: str, password: str, **kwargs: Any) -> None:
        assert self.service.db is not None
        repo = VolunteerRepository(self.service.db.pool)
        await repo.create(username, password, self.settings.realm, **kwargs)
        await self.service.reload_credentials()


# the `make_helpline` fixture (tests/conftest.py): the service with setting overrides
MakeHelpline = Callable[..., AbstractAsyncContextManager[Running]]


@asynccontextmanager
async def running_service(
    state_dir: Path, database_url: str | None, **overrides: Any
) -> AsyncIterator[Running]:
    # a private RTP range per service instance, below the kernel's ephemeral ports (32768 and
    # up), so a peer's socket bound to port 0 never lands in it
    base = 20000 + (free_port() % 120) * 100
    settings = Settings(
        sip_host="127.0.0.1",
        sip_port=free_port(),
        tls_port=free_port(),
        metrics_port=None,
        web_port=None,  # the wallboard's tests give it a free port
        database_url=database_url,
        state_dir=state_dir,
        rtp_port_min=base,
        rtp_port_max=base + 98,
        log_format="console",
    )
    for key, value in overrides.items():
        setattr(settings, key, value)
    service = build_service(settings)
    await service.start()
    try:
        yield Running(service, settings)
    finally:
        await service.stop()


async def clean_database(url: str) -> None:
    """Empties the tables a test fills, keeping the schema (one database for the session)."""
    conn = await asyncpg.connect(url)
    try:
        exists = await conn.fetchval("select to_regclass('volunteers') is not null")
        if exists:
            await conn.execute(
                "truncate volunteers, registrations, events, shifts, call_records,"
                " call_daily_counts, console_accounts restart identity cascade"
            )
    finally:
        await conn.close()
