"""Language queues end to end: PJSIP callers and PJSIP volunteers' handsets over loopback.

Several callers and fewer volunteers, place-in-line announcements, abandonment, ring-no-answer
and auto-pause, the volunteer in two queues, the time-limit tone, a handset that vanishes
mid-call and a registration that lapses. Audio is shown to flow both ways by its content.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from ivr.loader import DEFAULT_PLAN
from queues.roster import AUTO_PAUSED, VolunteerState
from tests.helpers.audio import active_part, read_wav, tone_share
from tests.helpers.callers import CALLER_NUMBER, call_queue
from tests.helpers.ivr_helpline import ivr_helpline
from tests.helpers.logs import captured_logs, log_events
from tests.helpers.polling import until
from tests.helpers.ports import free_port
from tests.helpers.service import HANDSET_HOST, MakeHelpline
from tests.helpers.volunteers import PASSWORD, on_shift, state
from tests.peers.pjsua_phone import AsyncPjsuaPhone


async def test_two_volunteers_three_callers_in_turn(
    make_helpline: MakeHelpline, tmp_path: Path
) -> None:
    """Fewer volunteers than callers: the first two are connected, the third waits and is
    told their place in line, a fourth hangs up while waiting (abandoned, with the time
    waited), and the third gets the first volunteer who is free again."""
    async with captured_logs() as logs, ivr_helpline(make_helpline, DEFAULT_PLAN) as helpline:
        async with (
            AsyncPjsuaPhone("anna") as anna,
            AsyncPjsuaPhone("bram") as bram,
            AsyncPjsuaPhone("c1") as c1,
            AsyncPjsuaPhone("c2") as c2,
            AsyncPjsuaPhone("c3") as c3,
            AsyncPjsuaPhone("c4") as c4,
        ):
            await on_shift(helpline, anna, "anna")
            await on_shift(helpline, bram, "bram")
            await call_queue(helpline, c1)
            first = await anna.wait_incoming(timeout=15)  # longest idle: logged in first
            await anna.answer(200)
            await call_queue(helpline, c2)
            await bram.wait_incoming(timeout=15)
            await bram.answer(200)
            await call_queue(helpline, c3)
            await call_queue(helpline, c4)
            engine = helpline.service.dispatcher
            await until(lambda: engine.waiting("dutch") == 2)
            await asyncio.sleep(1.0)
            registry = helpline.service.metrics.registry
            assert registry.get_sample_value("helpline_queue_waiting", {"queue": "dutch"}) == 2
            oldest = registry.get_sample_value(
                "helpline_queue_longest_wait_seconds", {"queue": "dutch"}
            )
            assert oldest is not None and oldest >= 1.0
            await c4.hangup()  # gives up while waiting
            await until(lambda: engine.waiting("dutch") == 1)
            await c1.hangup()  # anna's call ends: the waiting caller is next
            await anna.wait_disconnected(timeout=10)
            await anna.wait_incoming(timeout=15)
            await anna.answer(200)
            # audio both ways, by content
            await c3.play_tone(1000)
            await anna.play_tone(400)
            await anna.record(tmp_path / "anna.wav")
            await c3.record(tmp_path / "c3.wav")
            await asyncio.sleep(1.5)
            anna_heard = await anna.stop_record()
            c3_heard = await c3.stop_record()
            await c3.hangup()
            await c2.hangup()
            await anna.wait_disconnected(timeout=10)
            abandoned = registry.get_sample_value(
                "helpline_queue_abandoned_wait_seconds_count", {"queue": "dutch"}
            )
            abandoned_wait = registry.get_sample_value(
                "helpline_queue_abandoned_wait_seconds_sum", {"queue": "dutch"}
            )
            answered = registry.get_sample_value(
                "helpline_queue_answered_wait_seconds_count", {"queue": "dutch"}
            )
    assert tone_share(active_part(read_wav(anna_heard)[0]), 1000) > 0.8
    assert tone_share(active_part(read_wav(c3_heard)[0]), 400) > 0.8
    assert abandoned == 1 and abandoned_wait is not None and abandoned_wait >= 1.0
    assert answered == 3
    # the waiting callers were told their place: the third "next", the fourth "number 2"
    told = {(e["call"], e["position"]) for e in log_events(logs, "queue_announcement")}
    assert {p for _, p in told} >= {1, 2}
    # the volunteer's handset shows the queue, and nothing of the caller anywhere
    assert '"Hulplijn NL"' in first.remote_uri
    assert CALLER_NUMBER not in first.invite
    assert CALLER_NUMBER not in logs.getvalue()


async def test_ring_no_answer_goes_to_the_next_volunteer_and_pauses_the_missing_one(
    make_helpline: MakeHelpline, tmp_path: Path
) -> None:
    plan = tmp_path / "dialplan.yaml"
    plan.write_text(
        DEFAULT_PLAN.read_text().replace(
            "    wrap_up: 60\n", "    wrap_up: 60\n    ring_timeout: 5\n"
        )
    )
    async with (
        captured_logs() as logs,
        ivr_helpline(make_helpline, plan, max_missed_offers=1) as helpline,
    ):
        async with (
            AsyncPjsuaPhone("away") as away,
            AsyncPjsuaPhone("here") as here,
            AsyncPjsuaPhone("caller") as caller,
        ):
            await on_shift(helpline, away, "away")  # idle longest: offered first
            await on_shift(helpline, here, "here")
            await call_queue(helpline, caller)
            await away.wait_incoming(timeout=15)  # rings 5 s, nobody picks up
            await here.wait_incoming(timeout=20)
            await here.answer(200)
            assert state(helpline, "away") is VolunteerState.PAUSED
            assert helpline.service.roster.get("away").pause_reason == AUTO_PAUSED
            await caller.hangup()
            await here.wait_disconnected(timeout=10)
            # the next time the paused volunteer dials in they hear why; *2 resumes
            assert await away.make_call(f"sip:*2@{helpline.host}:{helpline.port}") == 200
            assert await away.wait_disconnected(timeout=30) == 200
            assert state(helpline, "away") is VolunteerState.AVAILABLE
            helpline.service.drain_roster_events()
            states = log_events(logs, "volunteer_state")  # before the handsets unregister
    done = log_events(logs, "feature_code_done")
    assert done[-1]["prompts"] == ["auto_paused", "resumed"]
    kinds = [e["kind"] for e in states if e["user"] == "away"]
    assert kinds == ["login", "offer", "auto_paused", "resume"]


async def test_a_volunteer_in_two_queues_gets_the_longest_waiting_caller(
    make_helpline: MakeHelpline, tmp_path: Path
) -> None:
    """A volunteer speaking Dutch and Turkish, logging in while a Turkish caller has waited
    longer than a Dutch one, is offered the Turkish caller; then the Dutch one."""
    plan = tmp_path / "dialplan.yaml"
    text = DEFAULT_PLAN.read_text()
    plan.write_text(
        text.replace("language: tr\n    schedule: evenings", "language: tr\n    schedule: always")
    )
    async with ivr_helpline(make_helpline, plan) as helpline:
        async with (
            AsyncPjsuaPhone("defne") as defne,
            AsyncPjsuaPhone("turk") as turk,
            AsyncPjsuaPhone("dutch") as dutch,
        ):
            await call_queue(helpline, turk, "4")
            engine = helpline.service.dispatcher
            await until(lambda: engine.waiting("turkish") == 1)
            await asyncio.sleep(1.0)
            await call_queue(helpline, dutch, "1")
            await until(lambda: engine.waiting("dutch") == 1)
            await on_shift(helpline, defne, "defne", languages=["nl", "tr"])
            offered = await defne.wait_incoming(timeout=15)
            assert '"Hulplijn TR"' in offered.remote_uri
            await defne.answer(200)
            await turk.hangup()
            await defne.wait_disconnected(timeout=10)
            offered = await defne.wait_incoming(timeout=15)
            assert '"Hulplijn NL"' in offered.remote_uri
            await defne.answer(200)
            await dutch.hangup()
            await defne.wait_disconnected(timeout=10)


async def test_time_limit_tone_is_heard_by_the_volunteer_only(
    make_helpline: MakeHelpline, tmp_path: Path
) -> None:
    plan = tmp_path / "dialplan.yaml"
    plan.write_text(DEFAULT_PLAN.read_text().replace("time_limit: 2700", "time_limit: 2"))
    async with captured_logs() as logs, ivr_helpline(make_helpline, plan) as helpline:
        async with AsyncPjsuaPhone("tess") as tess, AsyncPjsuaPhone("caller") as caller:
            await on_shift(helpline, tess, "tess")
            await call_queue(helpline, caller)
            await tess.wait_incoming(timeout=15)
            await tess.answer(200)
            await tess.record(tmp_path / "volunteer.wav")
            await caller.record(tmp_path / "caller.wav")
            await until(lambda: bool(log_events(logs, "time_limit_reached")))
            await asyncio.sleep(1.5)  # the tone lasts 0.9 s
            volunteer_heard = await tess.stop_record()
            caller_heard = await caller.stop_record()
            await caller.hangup()
            await tess.wait_disconnected(timeout=10)
    tone = active_part(read_wav(volunteer_heard)[0])
    assert tone and tone_share(tone, 1400) > 0.5
    assert active_part(read_wav(caller_heard)[0]) == b""  # the caller heard nothing at all


async def test_a_vanished_handset_puts_the_caller_first_in_line_again(
    make_helpline: MakeHelpline, tmp_path: Path
) -> None:
    async with (
        captured_logs() as logs,
        ivr_helpline(make_helpline, DEFAULT_PLAN, media_timeout=2.0) as helpline,
    ):
        async with (
            AsyncPjsuaPhone("gone") as gone,
            AsyncPjsuaPhone("next") as nxt,
            AsyncPjsuaPhone("caller") as caller,
        ):
            await on_shift(helpline, gone, "gone")
            await on_shift(helpline, nxt, "next")
            await call_queue(helpline, caller)
            await gone.wait_incoming(timeout=15)
            await gone.answer(200)
            await caller.play_tone(1000)  # keeps the caller's media alive
            await gone.play_tone(400)
            await asyncio.sleep(1.0)
            await gone.kill()  # power cut: no BYE, no more RTP
            offered = await nxt.wait_incoming(timeout=20)
            await nxt.answer(200)
            await nxt.record(tmp_path / "next.wav")
            await asyncio.sleep(1.5)
            heard = await nxt.stop_record()
            assert state(helpline, "gone") is VolunteerState.AVAILABLE
            assert not helpline.service.roster.get("gone").registered  # offered nothing more
            await caller.hangup()
            await nxt.wait_disconnected(timeout=10)
    assert '"Hulplijn NL"' in offered.remote_uri
    assert tone_share(active_part(read_wav(heard)[0]), 1000) > 0.8  # the same caller
    assert [e["volunteer"] for e in log_events(logs, "volunteer_lost")] == ["gone"]


async def test_a_vanished_handset_with_volunteer_lost_goodbye_ends_the_call(
    make_helpline: MakeHelpline, tmp_path: Path
) -> None:
    """A queue configured with `volunteer_lost: goodbye`: the caller is told and the call ends;
    no other volunteer is rung."""
    plan = tmp_path / "dialplan.yaml"
    plan.write_text(
        DEFAULT_PLAN.read_text().replace(
            "    overflow: queue_full\n", "    overflow: queue_full\n    volunteer_lost: goodbye\n"
        )
    )
    async with ivr_helpline(make_helpline, plan, media_timeout=2.0) as helpline:
        async with (
            AsyncPjsuaPhone("gone") as gone,
            AsyncPjsuaPhone("next") as nxt,
            AsyncPjsuaPhone("caller") as caller,
        ):
            await on_shift(helpline, gone, "gone")
            await on_shift(helpline, nxt, "next")
            await call_queue(helpline, caller)
            await gone.wait_incoming(timeout=15)
            await gone.answer(200)
            await caller.play_tone(1000)
            await gone.play_tone(400)
            await asyncio.sleep(1.0)
            await gone.kill()
            assert await caller.wait_disconnected(timeout=20) == 200  # our BYE after the message
            assert nxt.events("incoming") == []


async def test_a_lapsed_registration_stops_offers_then_logs_out(
    make_helpline: MakeHelpline,
) -> None:
    async with (
        captured_logs() as logs,
        ivr_helpline(make_helpline, DEFAULT_PLAN, registration_grace=2.0) as helpline,
    ):
        async with AsyncPjsuaPhone("lapse") as phone, AsyncPjsuaPhone("caller") as caller:
            await on_shift(helpline, phone, "lapse")
            assert await phone.unregister() == 200
            await until(lambda: not helpline.service.roster.get("lapse").registered)
            await call_queue(helpline, caller)
            engine = helpline.service.dispatcher
            await until(lambda: engine.waiting("dutch") == 1)
            await until(lambda: state(helpline, "lapse") is VolunteerState.LOGGED_OUT)
            assert phone.events("incoming") == []
            await caller.hangup()
    lapse = [e for e in log_events(logs, "volunteer_state") if e["user"] == "lapse"]
    assert [(e["kind"], e["reason"]) for e in lapse] == [
        ("login", None), ("registration_lapsed", None), ("logout", "registration_lapsed"),
    ]  # fmt: skip


async def test_both_handsets_of_a_volunteer_ring_and_the_first_to_answer_takes_it(
    make_helpline: MakeHelpline, tmp_path: Path
) -> None:
    """A volunteer with a desk phone and a softphone: both ring, the softphone answers, the
    desk phone stops ringing (CANCEL), and the call is with the softphone."""
    async with ivr_helpline(make_helpline, DEFAULT_PLAN) as helpline:
        async with (
            AsyncPjsuaPhone("desk") as desk,
            AsyncPjsuaPhone("soft") as soft,
            AsyncPjsuaPhone("caller") as caller,
        ):
            await on_shift(helpline, desk, "duo")
            await soft.start(free_port(HANDSET_HOST), bind=HANDSET_HOST)
            assert await soft.register(helpline.host, helpline.port, "duo", PASSWORD) == 200
            await call_queue(helpline, caller)
            await desk.wait_incoming(timeout=15)
            await soft.wait_incoming(timeout=15)
            await soft.answer(200)
            assert await desk.wait_disconnected(timeout=10) == 487  # CANCELled
            await caller.play_tone(1000)
            await soft.record(tmp_path / "soft.wav")
            await asyncio.sleep(1.5)
            heard = await soft.stop_record()
            await until(lambda: state(helpline, "duo") is VolunteerState.IN_CALL)
            await caller.hangup()
            assert await soft.wait_disconnected(timeout=10) == 200
    assert tone_share(active_part(read_wav(heard)[0]), 1000) > 0.8


async def test_a_local_number_prefers_a_volunteer_of_its_region(
    make_helpline: MakeHelpline,
) -> None:
    """A caller on the Utrecht number is offered to the Utrecht volunteer first, although an
    Amsterdam colleague has been idle longer (the Dutch queue prefers local for 30 s)."""
    async with ivr_helpline(make_helpline, DEFAULT_PLAN) as helpline:
        async with (
            AsyncPjsuaPhone("amsterdam") as amsterdam,
            AsyncPjsuaPhone("utrecht") as utrecht,
            AsyncPjsuaPhone("caller") as caller,
        ):
            await on_shift(helpline, amsterdam, "ada", region="Amsterdam")  # idle longest
            await on_shift(helpline, utrecht, "ute", region="Utrecht")
            await caller.start(free_port())
            assert await caller.make_call(f"sip:030-2333444@{helpline.host}:{helpline.port}") == 200
            await caller.send_dtmf("1")
            await utrecht.wait_incoming(timeout=15)
            await utrecht.answer(200)
            await until(lambda: state(helpline, "ute") is VolunteerState.IN_CALL)
            assert amsterdam.events("incoming") == []
            await caller.hangup()
            await utrecht.wait_disconnected(timeout=10)
