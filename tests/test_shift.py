"""Volunteers on home handsets: log in, pause, resume and log out from the handset itself,
and only logged-in volunteers who speak the caller's language are rung."""

from __future__ import annotations

import asyncio

import asyncpg

from ivr.loader import DEFAULT_PLAN
from pbx.db.volunteers import VolunteerRepository
from queues.roster import VolunteerState
from tests.helpers.ivr_helpline import ivr_helpline, ivr_paths
from tests.helpers.logs import captured_logs
from tests.helpers.polling import until
from tests.helpers.ports import free_port
from tests.helpers.service import HANDSET_HOST, MakeHelpline
from tests.helpers.volunteers import dial_feature_code
from tests.peers.pjsua_phone import AsyncPjsuaPhone

PASSWORD = "correct-horse-battery"


async def test_login_pause_resume_logout_from_the_handset(make_helpline: MakeHelpline) -> None:
    async with ivr_helpline(make_helpline, DEFAULT_PLAN) as helpline:
        await helpline.add_volunteer("zora", PASSWORD)
        roster = helpline.service.roster
        async with AsyncPjsuaPhone("zora") as phone:
            await phone.start(free_port(HANDSET_HOST), bind=HANDSET_HOST)
            assert await phone.register(helpline.host, helpline.port, "zora", PASSWORD) == 200
            await dial_feature_code(helpline, phone, "*1")
            assert roster.get("zora").state is VolunteerState.AVAILABLE
            await dial_feature_code(helpline, phone, "*2")
            assert roster.get("zora").state is VolunteerState.PAUSED
            await dial_feature_code(helpline, phone, "*2")
            assert roster.get("zora").state is VolunteerState.AVAILABLE
            await dial_feature_code(helpline, phone, "*0")
            assert roster.get("zora").state is VolunteerState.LOGGED_OUT
            # anything else is refused: a handset cannot dial out
            assert await phone.make_call(f"sip:0201234567@{helpline.host}:{helpline.port}") == 404
            # an admin disables a volunteer on shift: logged out at the next refresh
            await dial_feature_code(helpline, phone, "*1")
            assert helpline.service.db is not None
            await VolunteerRepository(helpline.service.db.pool).disable("zora")
            await helpline.service.reload_credentials()
            assert roster.get("zora").state is VolunteerState.LOGGED_OUT
            helpline.service.drain_roster_events()
        service = helpline.service
        assert service.writer is not None and await service.writer.flush(10)
        assert service.db is not None
        conn = await asyncpg.connect(service.db.url)
        try:
            kinds = [r["kind"] for r in await conn.fetch("select kind from events order by id")]
        finally:
            await conn.close()
    shift = [k for k in kinds if k.startswith("volunteer.")]
    assert shift == [
        "volunteer.login", "volunteer.pause", "volunteer.resume", "volunteer.logout",
        "volunteer.login", "volunteer.logout",
    ]  # fmt: skip


async def test_pin_guards_the_login(make_helpline: MakeHelpline) -> None:
    async with ivr_helpline(make_helpline, DEFAULT_PLAN) as helpline:
        await helpline.add_volunteer("abel", PASSWORD, pin="4711")
        roster = helpline.service.roster
        async with AsyncPjsuaPhone("abel") as phone:
            await phone.start(free_port(HANDSET_HOST), bind=HANDSET_HOST)
            assert await phone.register(helpline.host, helpline.port, "abel", PASSWORD) == 200
            assert await phone.make_call(f"sip:*1@{helpline.host}:{helpline.port}") == 200
            # a wrong PIN first (RFC 4733, over "enter your PIN"): asked again
            await phone.send_dtmf("1234#")
            await asyncio.sleep(1.0)
            assert "abel" not in roster
            await phone.send_dtmf("4711#", method="sip_info")  # then the right one
            assert await phone.wait_disconnected(timeout=30) == 200
            assert roster.get("abel").state is VolunteerState.AVAILABLE


async def test_only_logged_in_volunteers_of_the_callers_language_ring(
    make_helpline: MakeHelpline,
) -> None:
    plan = DEFAULT_PLAN  # the Dutch queue's wrap-up: 60 s
    async with captured_logs() as logs, ivr_helpline(make_helpline, plan, wrap_up=True) as helpline:
        async with (
            AsyncPjsuaPhone("turkish") as turkish,
            AsyncPjsuaPhone("dutch") as dutch,
            AsyncPjsuaPhone("caller") as caller,
        ):
            # a Turkish-only volunteer logged in, a Dutch one registered but not logged in
            await helpline.add_volunteer("tarik", PASSWORD, languages=["tr"])
            await turkish.start(free_port(HANDSET_HOST), bind=HANDSET_HOST)
            assert await turkish.register(helpline.host, helpline.port, "tarik", PASSWORD) == 200
            await dial_feature_code(helpline, turkish, "*1")
            await helpline.add_volunteer("daan", PASSWORD)
            await dutch.start(free_port(HANDSET_HOST), bind=HANDSET_HOST)
            assert await dutch.register(helpline.host, helpline.port, "daan", PASSWORD) == 200
            await caller.start(free_port())
            assert await caller.make_call(f"sip:09000767@{helpline.host}:{helpline.port}") == 200
            await caller.send_dtmf("1")  # Dutch
            await asyncio.sleep(3.0)
            assert turkish.events("incoming") == [] and dutch.events("incoming") == []
            # the Dutch volunteer logs in: now the waiting caller reaches them
            await dial_feature_code(helpline, dutch, "*1")
            await dutch.wait_incoming(timeout=15)
            await dutch.answer(200)
            roster = helpline.service.roster
            await until(lambda: roster.get("daan").state is VolunteerState.IN_CALL)
            await caller.hangup()
            await dutch.wait_disconnected(timeout=10)
            await until(lambda: roster.get("daan").state is VolunteerState.WRAP_UP)
            assert turkish.events("incoming") == []
    assert ivr_paths(logs)[0] == ["welcome", "language_menu", "dutch"]
