"""Transfers to a colleague's queue with real peers: a PJSIP caller from the trunk address, the
PJSIP volunteer vera (Dutch) on 127.0.0.2 talking to them, and a PJSIP colleague amal, who
serves the Arabic queue (`volunteer_keys: "#2"` in the default plan; REFER target
`sip:queue-arabic@<service>`). Who hears whom is checked by content: vera talks 400 Hz, amal
700 Hz, the caller 1000 Hz."""

from __future__ import annotations

import asyncio
from pathlib import Path

from queues.roster import VolunteerState
from tests.helpers.audio import loud_part, tone_share
from tests.helpers.handover_call import CALLER_NUMBER, Call, pcm, volunteer_talking
from tests.helpers.logs import log_events
from tests.helpers.polling import until
from tests.helpers.ports import free_port
from tests.helpers.service import MakeHelpline
from tests.helpers.volunteers import on_shift, state
from tests.peers.pjsua_phone import AsyncPjsuaPhone, PhoneEvent

COLLEAGUE_HZ = 700


def final(e: PhoneEvent) -> bool:
    return bool(e.data["final"])


def transfers(call: Call, result: str) -> float:
    """The metric: volunteers' transfers to a colleague's queue that ended as `result`."""
    registry = call.helpline.service.metrics.registry
    labels = {"kind": "queue", "result": result}
    return registry.get_sample_value("helpline_volunteer_transfers_total", labels) or 0.0


async def amal_on_shift(call: Call, amal: AsyncPjsuaPhone) -> None:
    """The Arabic-speaking colleague logs in (after the caller reached vera: the Dutch call
    was never hers to take)."""
    await on_shift(call.helpline, amal, "amal", languages=["ar"])


async def test_warm_transfer_to_a_colleagues_queue_completed(
    make_helpline: MakeHelpline, tmp_path: Path
) -> None:
    async with (
        volunteer_talking(make_helpline, tmp_path, free_port(), wrap_up=True) as call,
        AsyncPjsuaPhone("amal") as amal,
    ):  # with the queues' wrap-up times: the caller became amal's call, not vera's
        await amal_on_shift(call, amal)
        await call.volunteer.send_dtmf("#2")
        incoming = await amal.wait_incoming(timeout=15)
        await amal.answer(200)
        await amal.play_tone(COLLEAGUE_HZ)
        await call.until_step("consulting")
        await amal.record(tmp_path / "amal_consult.wav")
        consult = await call.heard(call.volunteer, "consult", 1.5)  # vera and amal talk
        amal_consult = await amal.stop_record()
        await call.volunteer.send_dtmf("*1")
        assert await call.volunteer.wait_disconnected(timeout=10) == 200  # vera is free
        await call.caller.play_tone(1000)
        await asyncio.sleep(0.3)
        await amal.record(tmp_path / "amal_connected.wav")
        connected = await call.heard(call.caller, "connected", 1.5)
        amal_connected = await amal.stop_record()
        await call.caller.hangup()
        assert await amal.wait_disconnected(timeout=10) == 200
        helpline = call.helpline
        await until(lambda: state(helpline, "amal") is VolunteerState.WRAP_UP, 5)
        assert state(helpline, "vera") is VolunteerState.WRAP_UP
        steps = call.steps()
        finished = [e["outcome"] for e in log_events(call.logs, "call_finished")]
        counted = transfers(call, "completed")
    assert steps == [("answered", "consulting"), ("complete_key", "completed")]
    assert incoming.display == "Hulplijn AR" and CALLER_NUMBER not in incoming.invite
    assert tone_share(loud_part(pcm(consult)), COLLEAGUE_HZ) > 0.7  # vera hears amal
    assert tone_share(loud_part(pcm(amal_consult)), 400) > 0.7  # ... and amal hears vera
    assert tone_share(loud_part(pcm(connected)), COLLEAGUE_HZ) > 0.7  # caller <-> amal
    assert tone_share(loud_part(pcm(amal_connected)), 1000) > 0.7
    assert finished == ["handed_over"] and counted == 1


async def test_warm_transfer_to_a_colleagues_queue_cancelled(
    make_helpline: MakeHelpline, tmp_path: Path
) -> None:
    async with (
        volunteer_talking(make_helpline, tmp_path, free_port(), wrap_up=True) as call,
        AsyncPjsuaPhone("amal") as amal,
    ):  # with the queues' wrap-up times: only consulted, amal has none
        await amal_on_shift(call, amal)
        await call.volunteer.send_dtmf("#2")
        await amal.wait_incoming(timeout=15)
        await amal.answer(200)
        await call.until_step("consulting")
        await call.volunteer.send_dtmf("*0")
        await call.until_step("returned")
        assert await amal.wait_disconnected(timeout=10) == 200  # our BYE
        await call.caller.play_tone(1000)
        await asyncio.sleep(0.5)
        back = await call.heard(call.volunteer, "back", 1.5)
        await call.caller.hangup()
        assert await call.volunteer.wait_disconnected(timeout=10) == 200
        amal_after = state(call.helpline, "amal")  # consulted, not a call of hers: free again
        steps = call.steps()
        counted = transfers(call, "returned")
    assert steps == [("answered", "consulting"), ("cancel_key", "returned")]
    assert tone_share(loud_part(pcm(back)), 1000) > 0.7  # vera is back with the caller
    assert amal_after is VolunteerState.AVAILABLE and counted == 1


async def test_nobody_available_in_the_queue_returns_the_volunteer(
    make_helpline: MakeHelpline, tmp_path: Path
) -> None:
    """vera presses the Dutch queue's keys (#1): she serves it herself but is never her own
    colleague, and nobody else is on shift, so she hears why and stays with the caller."""
    async with volunteer_talking(make_helpline, tmp_path, free_port()) as call:
        await call.volunteer.record(tmp_path / "reason.wav")
        await call.volunteer.send_dtmf("#1")
        await until(lambda: bool(log_events(call.logs, "colleague_nobody_free")), 10)
        seconds = call.prompt_seconds("handover_nobody_available")
        await asyncio.sleep(seconds + 0.3)
        reason = await call.volunteer.stop_record()
        await call.caller.play_tone(1000)
        await asyncio.sleep(0.5)
        back = await call.heard(call.volunteer, "back", 1.5)
        await call.caller.hangup()
        assert await call.volunteer.wait_disconnected(timeout=10) == 200
        steps = call.steps()
        counted = transfers(call, "returned")
    assert steps == []  # nobody was rung
    assert len(loud_part(pcm(reason))) / 16000 > 0.5 * seconds  # the reason, spoken
    assert tone_share(loud_part(pcm(back)), 1000) > 0.7
    assert counted == 1


async def test_blind_refer_to_a_colleagues_queue(
    make_helpline: MakeHelpline, tmp_path: Path
) -> None:
    """The handset's transfer key to `sip:queue-arabic@<service>`: vera is free at once, the
    caller is told and waits first in line of the Arabic queue, amal is offered the call."""
    async with (
        volunteer_talking(
            make_helpline, tmp_path, free_port(), volunteer_whisper=""
        ) as call,
        AsyncPjsuaPhone("amal") as amal,
    ):  # fmt: skip
        await amal_on_shift(call, amal)
        await call.volunteer.xfer(f"sip:queue-arabic@{call.service_uri}")
        done = await call.volunteer.wait_event("xfer_status", timeout=10, pred=final)
        assert await call.volunteer.wait_disconnected(timeout=10) == 200  # we BYE her
        incoming = await amal.wait_incoming(timeout=20)  # after "we connect you..."
        await amal.answer(200)
        await amal.play_tone(COLLEAGUE_HZ)
        await call.caller.play_tone(1000)
        await asyncio.sleep(0.3)
        await amal.record(tmp_path / "amal.wav")
        connected = await call.heard(call.caller, "connected", 1.5)
        amal_heard = await amal.stop_record()
        await call.caller.hangup()
        assert await amal.wait_disconnected(timeout=10) == 200
        finished = [e["outcome"] for e in log_events(call.logs, "call_finished")]
        queued = log_events(call.logs, "transferred_to_queue")
        counted = transfers(call, "queued")
    assert done.data["status"] == 200
    assert queued[0]["queue"] == "arabic" and queued[0]["refer"] is True
    assert incoming.display == "Hulplijn AR" and CALLER_NUMBER not in incoming.invite
    assert tone_share(loud_part(pcm(connected)), COLLEAGUE_HZ) > 0.7
    assert tone_share(loud_part(pcm(amal_heard)), 1000) > 0.7
    assert finished == ["answered"] and counted == 1


async def test_refer_to_a_queue_not_open_to_transfers_gets_403(
    make_helpline: MakeHelpline, tmp_path: Path
) -> None:
    """The 113 night queue has no `volunteer_keys`: a REFER to it is refused like any
    other target the plan does not allow, and the call goes on."""
    async with volunteer_talking(make_helpline, tmp_path, free_port()) as call:
        await call.volunteer.xfer(f"sip:queue-night_113@{call.service_uri}")
        refused = await call.volunteer.wait_event("xfer_status", timeout=10, pred=final)
        await call.caller.play_tone(1000)
        await asyncio.sleep(0.5)
        back = await call.heard(call.volunteer, "still", 1.5)
        await call.caller.hangup()
        assert await call.volunteer.wait_disconnected(timeout=10) == 200
        steps = call.steps()
    assert refused.data["status"] == 403
    assert steps == []
    assert tone_share(loud_part(pcm(back)), 1000) > 0.7
