"""A volunteer's handset registration lapses during a shift (router restart, power cut, an
unregister, a service restart); after the grace period they are logged out. Whatever the
lapse, the handset's next REGISTER is answered with 200, `*1` logs them in again and the next
trunk call reaches them. PJSIP handsets over loopback, real database.
"""

from __future__ import annotations

import functools
import io
import time
from datetime import UTC, datetime, timedelta

from ivr.loader import DEFAULT_PLAN
from pbx.db.registrations import RegistrationRepository, StoredBinding
from queues.roster import VolunteerState
from tests.helpers.callers import call_queue
from tests.helpers.ivr_helpline import ivr_helpline
from tests.helpers.logs import captured_logs, log_events
from tests.helpers.polling import until
from tests.helpers.ports import free_port
from tests.helpers.service import HANDSET_HOST, MakeHelpline, Running, running_service
from tests.helpers.volunteers import PASSWORD, dial_feature_code, on_shift, state
from tests.peers.pjsua_phone import AsyncPjsuaPhone

GRACE = 1.0  # registration_grace in these tests


def registered(helpline: Running, user: str) -> bool:
    return helpline.service.roster.get(user).registered


async def logged_out_after_grace(helpline: Running, user: str) -> None:
    await until(lambda: state(helpline, user) is VolunteerState.LOGGED_OUT)
    helpline.service.drain_roster_events()


async def back_on_shift_and_called(helpline: Running, phone: AsyncPjsuaPhone, user: str) -> None:
    """The handset registers (answered 200), logs in with *1, and takes the next call."""
    assert await phone.register(helpline.host, helpline.port, user, PASSWORD) == 200
    await dial_feature_code(helpline, phone, "*1")
    assert state(helpline, user) is VolunteerState.AVAILABLE
    assert registered(helpline, user)
    async with AsyncPjsuaPhone("caller") as caller:
        await call_queue(helpline, caller)
        await phone.wait_incoming(timeout=15)
        await phone.answer(200)
        await until(lambda: state(helpline, user) is VolunteerState.IN_CALL)
        await caller.hangup()
        assert await phone.wait_disconnected(timeout=10) == 200


def logged_out_for_the_lapse(logs: io.StringIO, user: str) -> None:
    kinds = [(e["kind"], e["reason"]) for e in log_events(logs, "volunteer_state")
             if e["user"] == user]  # fmt: skip
    lapsed = kinds.index(("registration_lapsed", None))
    logout = kinds.index(("logout", "registration_lapsed"))
    assert (
        lapsed
        < logout
        < kinds.index(("login", None), logout)
        < kinds.index(("answered", None), logout)
    )  # logged in again and took the call


def no_failed_effects(logs: str) -> None:
    assert "effect_failed" not in logs and "RosterError" not in logs
    assert "registration_not_applied" not in logs


async def test_after_an_unregister_past_the_grace(make_helpline: MakeHelpline) -> None:
    async with (
        captured_logs() as logs,
        ivr_helpline(make_helpline, DEFAULT_PLAN, registration_grace=GRACE) as helpline,
    ):
        async with AsyncPjsuaPhone("handset") as phone:
            await on_shift(helpline, phone, "ulla")
            assert await phone.unregister() == 200
            await logged_out_after_grace(helpline, "ulla")
            await back_on_shift_and_called(helpline, phone, "ulla")
            helpline.service.drain_roster_events()
    logged_out_for_the_lapse(logs, "ulla")
    no_failed_effects(logs.getvalue())


async def test_an_unregister_while_logged_out_is_answered(make_helpline: MakeHelpline) -> None:
    """Off shift (logged out with *0), the handset unregisters and registers again."""
    async with (
        captured_logs() as logs,
        ivr_helpline(make_helpline, DEFAULT_PLAN, registration_grace=GRACE) as helpline,
    ):
        async with AsyncPjsuaPhone("handset") as phone:
            await on_shift(helpline, phone, "olaf")
            await dial_feature_code(helpline, phone, "*0")
            assert state(helpline, "olaf") is VolunteerState.LOGGED_OUT
            assert await phone.unregister() == 200
            await back_on_shift_and_called(helpline, phone, "olaf")
    no_failed_effects(logs.getvalue())


async def test_a_registration_back_within_the_grace_keeps_the_shift(
    make_helpline: MakeHelpline,
) -> None:
    async with ivr_helpline(make_helpline, DEFAULT_PLAN, registration_grace=60.0) as helpline:
        async with AsyncPjsuaPhone("handset") as phone, AsyncPjsuaPhone("caller") as caller:
            await on_shift(helpline, phone, "gina")
            assert await phone.unregister() == 200
            await until(lambda: not registered(helpline, "gina"))
            assert await phone.register(helpline.host, helpline.port, "gina", PASSWORD) == 200
            assert registered(helpline, "gina")  # restored: no new *1 needed
            assert state(helpline, "gina") is VolunteerState.AVAILABLE
            await call_queue(helpline, caller)
            await phone.wait_incoming(timeout=15)
            await phone.answer(200)
            await until(lambda: state(helpline, "gina") is VolunteerState.IN_CALL)
            await caller.hangup()
            assert await phone.wait_disconnected(timeout=10) == 200


async def test_after_the_registration_expired_past_the_grace(make_helpline: MakeHelpline) -> None:
    """The handset vanishes (power cut) and its short registration expires; a new handset
    process (the phone rebooted) registers again."""
    async with (
        captured_logs() as logs,
        ivr_helpline(
            make_helpline, DEFAULT_PLAN, registration_grace=GRACE, registration_min_expires=2
        ) as helpline,
    ):
        async with AsyncPjsuaPhone("handset") as phone:
            await helpline.add_volunteer("erik", PASSWORD)
            await phone.start(free_port(HANDSET_HOST), bind=HANDSET_HOST)
            assert await phone.register(helpline.host, helpline.port, "erik", PASSWORD,
                                        expires=2) == 200  # fmt: skip
            await dial_feature_code(helpline, phone, "*1")
            await phone.kill()
            await logged_out_after_grace(helpline, "erik")
            assert helpline.service.registrar.bindings.get("erik") is None  # expired
        async with AsyncPjsuaPhone("rebooted") as rebooted:
            await rebooted.start(free_port(HANDSET_HOST), bind=HANDSET_HOST)
            await back_on_shift_and_called(helpline, rebooted, "erik")
            helpline.service.drain_roster_events()
    logged_out_for_the_lapse(logs, "erik")
    changes = [e["change"] for e in log_events(logs, "registration") if e["user"] == "erik"]
    assert changes[:2] == ["added", "expired"]
    no_failed_effects(logs.getvalue())


async def test_after_the_keepalive_lost_the_handset_past_the_grace(
    make_helpline: MakeHelpline,
) -> None:
    """The handset vanishes; its keepalives go unanswered: unreachable (lapse), then removed.
    The handset comes back and registers again."""
    async with (
        captured_logs() as logs,
        ivr_helpline(
            make_helpline, DEFAULT_PLAN, registration_grace=GRACE, keepalive_interval=0.5,
            keepalive_max_misses=2, sip_t1=0.05,
        ) as helpline,
    ):  # fmt: skip
        async with AsyncPjsuaPhone("handset") as phone:
            await on_shift(helpline, phone, "kees")
            await phone.kill()
            await logged_out_after_grace(helpline, "kees")
            await until(lambda: helpline.service.registrar.bindings.get("kees") is None)
        async with AsyncPjsuaPhone("back") as back:
            await back.start(free_port(HANDSET_HOST), bind=HANDSET_HOST)
            await back_on_shift_and_called(helpline, back, "kees")
            helpline.service.drain_roster_events()
    logged_out_for_the_lapse(logs, "kees")
    changes = [e["change"] for e in log_events(logs, "registration") if e["user"] == "kees"]
    assert changes[:3] == ["added", "unreachable", "lost"]
    no_failed_effects(logs.getvalue())


async def test_after_a_service_restart(make_helpline: MakeHelpline, pg_url: str) -> None:
    """The service restarts: the bindings and the shift come back (database and snapshots),
    the handset's next REGISTER is answered, *1 keeps the volunteer on shift, a call comes."""
    async with AsyncPjsuaPhone("handset") as phone:
        async with ivr_helpline(make_helpline, DEFAULT_PLAN) as first:
            await on_shift(first, phone, "rita")
            settings = first.settings
        again = functools.partial(running_service, settings.state_dir, pg_url)
        async with (
            captured_logs() as logs,
            ivr_helpline(
                again, DEFAULT_PLAN, sip_t1=0.1, sip_port=settings.sip_port,
                tls_port=settings.tls_port,
            ) as second,
        ):  # fmt: skip
            assert second.service.registrar.contacts("rita", time.time()) != []  # from the database
            assert state(second, "rita") is VolunteerState.AVAILABLE  # restored, not logged out
            await back_on_shift_and_called(second, phone, "rita")
    no_failed_effects(logs.getvalue())


async def test_a_stored_binding_on_a_trunk_address_is_not_restored(
    make_helpline: MakeHelpline, pg_url: str
) -> None:
    """A binding stored before its address became a trunk (trunk_sources changed, or a row
    from before REGISTERs from trunks were refused) is dropped at start: ringing it would send
    an INVITE to the carrier."""
    async with make_helpline() as first:
        assert first.service.db is not None
        repo = RegistrationRepository(first.service.db.pool)
        until_ = datetime.now(UTC) + timedelta(minutes=10)
        for host, port in (("127.0.0.1", 5070), (HANDSET_HOST, 5072)):
            await repo.save(StoredBinding(
                aor="rita", binding_key=f"sip:rita@{host}:{port}", received_host=host,
                received_port=port, transport="udp", expires_at=until_, call_id=f"c{port}",
                cseq=1,
            ))  # fmt: skip
        settings = first.settings
    again = functools.partial(running_service, settings.state_dir, pg_url)
    async with captured_logs() as logs, again(sip_port=settings.sip_port) as second:
        hosts = [b.source.host for b in second.service.registrar.contacts("rita", time.time())]
    assert hosts == [HANDSET_HOST]
    (dropped,) = log_events(logs, "stored_binding_on_trunk_dropped")
    assert dropped["user"] == "rita"
