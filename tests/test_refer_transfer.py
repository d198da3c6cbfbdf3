"""Transfers from the volunteer's handset (SIP REFER, RFC 3515) and with a destination's keys:
a PJSIP caller from the trunk address, a PJSIP volunteer on 127.0.0.2 and sipp as the info line
(a destination the plan allows volunteers, `volunteer_keys: "*7"`). A REFER to anything else
is refused with 403 and the call goes on."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.helpers.audio import loud_part, tone_share
from tests.helpers.handover_call import (
    CALLER_NUMBER,
    INFO_LINE_URI,
    PROFESSIONAL_HZ,
    answering,
    pcm,
    volunteer_talking,
)
from tests.helpers.logs import log_events
from tests.helpers.ports import free_port
from tests.helpers.service import MakeHelpline
from tests.peers.pjsua_phone import PhoneEvent


def final(e: PhoneEvent) -> bool:
    return bool(e.data["final"])


async def test_blind_refer_to_the_info_line(make_helpline: MakeHelpline, tmp_path: Path) -> None:
    port = free_port()
    with answering(port, tmp_path) as sipp:
        async with volunteer_talking(make_helpline, tmp_path, port, at=INFO_LINE_URI) as call:
            await call.volunteer.xfer(f"sip:info-line@{call.service_uri}")
            done = await call.volunteer.wait_event("xfer_status", timeout=20, pred=final)
            assert await call.volunteer.wait_disconnected(timeout=10) == 200  # we BYE them
            await asyncio.sleep(0.3)
            connected = await call.heard(call.caller, "connected", 1.5)
            await call.caller.hangup()
            result = await asyncio.to_thread(sipp.wait, 20)
            statuses = [e.data["status"] for e in call.volunteer.events("xfer_status")]
            steps = call.steps()
            finished = [e["outcome"] for e in log_events(call.logs, "call_finished")]
    result.assert_ok()
    assert done.data["status"] == 200 and statuses[0] == 100  # NOTIFYs: trying, then 200
    assert steps == [("answered", "completed")]
    assert tone_share(loud_part(pcm(connected)), PROFESSIONAL_HZ) > 0.7  # caller <-> info line
    assert not any(CALLER_NUMBER in m for _, m in result.messages())
    assert finished == ["handed_over"]


async def test_refer_to_a_number_not_allowed_gets_403(
    make_helpline: MakeHelpline, tmp_path: Path
) -> None:
    port = free_port()  # nothing listens: nothing may be dialled anyway
    async with volunteer_talking(make_helpline, tmp_path, port, at=INFO_LINE_URI) as call:
        await call.volunteer.xfer(f"sip:0612345678@{call.service_uri}")
        refused = await call.volunteer.wait_event("xfer_status", timeout=10, pred=final)
        await call.caller.play_tone(1000)
        await asyncio.sleep(0.5)
        back = await call.heard(call.volunteer, "still", 1.5)  # the call goes on
        await call.caller.hangup()
        assert await call.volunteer.wait_disconnected(timeout=10) == 200
        steps = call.steps()
    assert refused.data["status"] == 403
    assert steps == []
    assert tone_share(loud_part(pcm(back)), 1000) > 0.7


async def test_attended_refer_with_replaces_to_the_info_line(
    make_helpline: MakeHelpline, tmp_path: Path
) -> None:
    """The handset's attended transfer: the volunteer calls the info line through the service
    (their own call), talks to it, then REFERs the caller there with Replaces naming that
    call: caller and info line talk, both of the volunteer's calls end."""
    port = free_port()
    with answering(port, tmp_path) as sipp:
        async with volunteer_talking(make_helpline, tmp_path, port, at=INFO_LINE_URI) as call:
            first = call.volunteer_call
            assert await call.volunteer.make_call(f"sip:info-line@{call.service_uri}") == 200
            second = await call.volunteer.call_handle()
            consult = await call.heard(call.volunteer, "consult", 1.0)
            await call.volunteer.xfer_replaces(second, call=first)
            done = await call.volunteer.wait_event("xfer_status", timeout=20, pred=final)
            assert await call.volunteer.wait_disconnected(timeout=10, call=first) == 200
            assert await call.volunteer.wait_disconnected(timeout=10, call=second) == 200
            await asyncio.sleep(0.3)
            connected = await call.heard(call.caller, "connected", 1.5)
            await call.caller.hangup()
            result = await asyncio.to_thread(sipp.wait, 20)
            finished = [e["outcome"] for e in log_events(call.logs, "call_finished")]
    result.assert_ok()  # one call at the info line: the volunteer's, handed to the caller
    assert done.data["status"] == 200
    assert tone_share(loud_part(pcm(consult)), PROFESSIONAL_HZ) > 0.7
    assert tone_share(loud_part(pcm(connected)), PROFESSIONAL_HZ) > 0.7
    assert not any(CALLER_NUMBER in m for _, m in result.messages())
    assert "handed_over" in finished


async def test_info_line_keys_hand_over_warm(make_helpline: MakeHelpline, tmp_path: Path) -> None:
    port = free_port()
    with answering(port, tmp_path) as sipp:
        async with volunteer_talking(make_helpline, tmp_path, port, at=INFO_LINE_URI) as call:
            await call.volunteer.send_dtmf("*7")
            await call.until_step("consulting")
            consult = await call.heard(call.volunteer, "consult", 1.0)
            await call.volunteer.send_dtmf("*1")
            assert await call.volunteer.wait_disconnected(timeout=10) == 200
            await asyncio.sleep(0.3)
            connected = await call.heard(call.caller, "connected", 1.5)
            await call.caller.hangup()
            result = await asyncio.to_thread(sipp.wait, 20)
            steps = call.steps()
    result.assert_ok()
    assert steps == [("answered", "consulting"), ("complete_key", "completed")]
    assert tone_share(loud_part(pcm(consult)), PROFESSIONAL_HZ) > 0.7
    assert tone_share(loud_part(pcm(connected)), PROFESSIONAL_HZ) > 0.7
