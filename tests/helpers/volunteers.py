"""Volunteers in tests: their SIP password, logging in to a shift from a handset, their state."""

from __future__ import annotations

import asyncpg

from queues.roster import VolunteerState
from tests.helpers.ports import free_port
from tests.helpers.service import HANDSET_HOST, Running
from tests.peers.pjsua_phone import AsyncPjsuaPhone

PASSWORD = "correct-horse-battery"  # every test volunteer's SIP password


async def on_shift(helpline: Running, phone: AsyncPjsuaPhone, name: str, **profile: object) -> None:
    """A volunteer's handset registers and the volunteer logs in to a shift with *1."""
    await helpline.add_volunteer(name, PASSWORD, **profile)
    await phone.start(free_port(HANDSET_HOST), bind=HANDSET_HOST)
    assert await phone.register(helpline.host, helpline.port, name, PASSWORD) == 200
    await dial_feature_code(helpline, phone, "*1")


async def dial_feature_code(helpline: Running, phone: AsyncPjsuaPhone, code: str) -> None:
    """Dial a feature code; the service answers, confirms with a prompt and hangs up."""
    status = await phone.make_call(f"sip:{code}@{helpline.host}:{helpline.port}")
    assert status == 200, f"{code} answered {status}"
    assert await phone.wait_disconnected(timeout=20) == 200  # our BYE after the confirmation
    helpline.service.drain_roster_events()


def state(helpline: Running, user: str) -> VolunteerState:
    return helpline.service.roster.get(user).state


async def on_shift_in_database(pg_url: str, username: str = "vera") -> bool:
    """The volunteer's shift (available) and their one handset's binding are in the database
    (written behind)."""
    conn = await asyncpg.connect(pg_url)
    try:
        state = await conn.fetchval("select state from shifts where username = $1", username)
        bindings = await conn.fetchval(
            "select count(*) from registrations where aor = $1", username
        )
    finally:
        await conn.close()
    return bool(state == "available" and bindings == 1)
