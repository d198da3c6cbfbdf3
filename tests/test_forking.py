"""A volunteer's handsets ring at once and the call is connected on the first answer, however
the other branches behave: a stale binding left by a handset that vanished without
unregistering (no response at all), or one that starts ringing and even answers too late.

The stale handset is a bare UDP socket that registered and then stays silent; the live one a
PJSIP handset. SIP timers run at their RFC defaults here (T1 0.5 s): a dead branch then takes
32 s to time out, which is what the caller used to wait before being connected.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from ivr.loader import DEFAULT_PLAN
from queues.roster import VolunteerState
from tests.helpers.audio import active_part, read_wav, tone_share
from tests.helpers.callers import call_queue
from tests.helpers.ivr_helpline import ivr_helpline
from tests.helpers.logs import captured_logs, log_events
from tests.helpers.polling import until
from tests.helpers.ports import free_port
from tests.helpers.raw_handset import RawHandset
from tests.helpers.service import HANDSET_HOST, MakeHelpline, Running
from tests.helpers.volunteers import PASSWORD, on_shift, state
from tests.peers.pjsua_phone import AsyncPjsuaPhone

CONNECTED_WITHIN = 5.0  # generous: the old behaviour took 32 s (Timer B of the dead branch)


async def stale_binding(helpline: Running, user: str) -> RawHandset:
    """A handset that registered and vanished: its socket stays open but says nothing."""
    stale = RawHandset(HANDSET_HOST)
    final = await asyncio.to_thread(
        stale.register, (helpline.host, helpline.port), user, PASSWORD, contact_port=stale.port
    )
    assert final.startswith("SIP/2.0 200"), final
    return stale


async def test_a_stale_binding_does_not_delay_the_answered_call(
    make_helpline: MakeHelpline, tmp_path: Path
) -> None:
    async with (
        captured_logs() as logs,
        ivr_helpline(make_helpline, DEFAULT_PLAN, sip_t1=0.5) as helpline,
    ):
        async with AsyncPjsuaPhone("live") as live, AsyncPjsuaPhone("caller") as caller:
            await on_shift(helpline, live, "duo")
            stale = await stale_binding(helpline, "duo")
            try:
                await call_queue(helpline, caller)
                await live.wait_incoming(timeout=15)
                invite = await asyncio.to_thread(stale.recv_until, "INVITE", 5)  # both ring
                assert invite.startswith("INVITE sip:duo@")
                answered_at = time.monotonic()
                await live.answer(200)
                await until(lambda: bool(log_events(logs, "call_connected")), CONNECTED_WITHIN)
                connected_after = time.monotonic() - answered_at
                assert state(helpline, "duo") is VolunteerState.IN_CALL
                await caller.play_tone(1000)
                await live.play_tone(400)
                await live.record(tmp_path / "live.wav")
                await caller.record(tmp_path / "caller.wav")
                await asyncio.sleep(1.5)
                live_heard = await live.stop_record()
                caller_heard = await caller.stop_record()
                # the dead branch has not timed out yet: nothing waited for it
                ended = [e["reason"] for e in log_events(logs, "leg_ended")]
                assert "final_408" not in ended
                await caller.hangup()
                assert await live.wait_disconnected(timeout=10) == 200
            finally:
                stale.close()
    assert connected_after < CONNECTED_WITHIN
    assert tone_share(active_part(read_wav(live_heard)[0]), 1000) > 0.8
    assert tone_share(active_part(read_wav(caller_heard)[0]), 400) > 0.8


async def test_a_late_branch_is_cancelled_once_it_rings_and_byed_if_it_answers(
    make_helpline: MakeHelpline,
) -> None:
    """RFC 3261 9.1: a branch without a provisional response is CANCELled as soon as one
    arrives; its 200 OK coming after all is ACKed and then ended with BYE. Meanwhile the
    winner's call goes on."""
    async with ivr_helpline(make_helpline, DEFAULT_PLAN, sip_t1=0.5) as helpline:
        async with AsyncPjsuaPhone("live") as live, AsyncPjsuaPhone("caller") as caller:
            await on_shift(helpline, live, "duo")
            slow = await stale_binding(helpline, "duo")
            target = (helpline.host, helpline.port)
            try:
                await call_queue(helpline, caller)
                await live.wait_incoming(timeout=15)
                invite = await asyncio.to_thread(slow.recv_until, "INVITE", 5)
                await live.answer(200)
                await until(lambda: state(helpline, "duo") is VolunteerState.IN_CALL, 5)
                # nothing sent yet: no CANCEL may go out before a provisional response
                await asyncio.to_thread(slow.answer, invite, "180 Ringing", target)
                cancel = await asyncio.to_thread(slow.recv_until, "CANCEL", 5)
                await asyncio.to_thread(slow.answer, cancel, "200 OK", target)
                await asyncio.to_thread(slow.answer, invite, "200 OK", target)  # too late
                ack = await asyncio.to_thread(slow.recv_until, "ACK", 5)
                bye = await asyncio.to_thread(slow.recv_until, "BYE", 5)
                await asyncio.to_thread(slow.answer, bye, "200 OK", target)
                assert state(helpline, "duo") is VolunteerState.IN_CALL  # the winner talks on
                assert live.events("call_state")[-1].data["state"] == "CONFIRMED"
                await caller.hangup()
                assert await live.wait_disconnected(timeout=10) == 200
            finally:
                slow.close()
    call_id = _header(invite, "Call-ID")
    assert _header(cancel, "Call-ID") == _header(ack, "Call-ID") == _header(bye, "Call-ID")
    assert _header(bye, "Call-ID") == call_id
    assert _header(cancel, "CSeq") == "1 CANCEL" and _header(ack, "CSeq") == "1 ACK"


def _header(message: str, name: str) -> str:
    prefix = name.lower() + ":"
    line = next(x for x in message.split("\r\n") if x.lower().startswith(prefix))
    return line.split(":", 1)[1].strip()


async def test_the_direct_flow_rings_all_handsets_of_a_volunteer_at_once(
    make_helpline: MakeHelpline,
) -> None:
    """Without the IVR a trunk call rings the volunteer's handsets together too: the stale
    one does not hold up the live one."""
    async with make_helpline(call_flow="direct", sip_t1=0.5) as helpline:
        await helpline.add_volunteer("duo", PASSWORD)
        async with AsyncPjsuaPhone("live") as live, AsyncPjsuaPhone("caller") as caller:
            stale = await stale_binding(helpline, "duo")
            try:
                await live.start(free_port(HANDSET_HOST), bind=HANDSET_HOST)
                assert await live.register(helpline.host, helpline.port, "duo", PASSWORD) == 200
                await caller.start(free_port())
                uri = f"sip:09000767@{helpline.host}:{helpline.port}"
                calling = asyncio.create_task(caller.make_call(uri, timeout=20))
                await asyncio.to_thread(stale.recv_until, "INVITE", 5)
                await live.wait_incoming(timeout=5)  # rung at the same time, not 32 s later
                await live.answer(200)
                assert await calling == 200
                await caller.hangup()
                assert await live.wait_disconnected(timeout=10) == 200
            finally:
                stale.close()
