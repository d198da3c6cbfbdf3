"""Warm handover to 113 with real peers: a PJSIP caller from the trunk address, a PJSIP
volunteer on 127.0.0.2, and sipp as the 113 professional (talking: a tone from a pcap, so who
hears 113 when can be checked by content).

The volunteer presses *9: the caller hears a short message and then the hold melody; the
volunteer talks to 113 first, then completes (*1) or cancels (*0); a busy or unreachable 113
sends the volunteer back to the caller with the reason spoken; a carrier that challenges the
call gets the digest."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from pbx.media.hold_melody import HOLD_NOTES
from tests.helpers.audio import loud_part, rms, tone_share
from tests.helpers.handover_call import (
    CALLER_NUMBER,
    PROFESSIONAL_HZ,
    Call,
    answering,
    pcm,
    volunteer_talking,
)
from tests.helpers.logs import log_events
from tests.helpers.service import MakeHelpline
from tests.peers.sipp import find_free_port, start_sipp

FRAME = 320  # 20 ms of 16-bit PCM at 8 kHz


def melody_share(pcm: bytes) -> float:
    """Share of the 20 ms frames with much of their power at one of the hold melody's notes
    (a clean note gives ~1 per frame; frames where a note changes or the receiver's jitter
    buffer adjusts still give 0.35 or more; speech gives under 0.1)."""
    frames = [pcm[i : i + FRAME] for i in range(0, len(pcm) - FRAME + 1, FRAME)]
    frames = [f for f in frames if rms(f) >= 300]
    if not frames:
        return 0.0
    musical = [f for f in frames if max(tone_share(f, n) for n in HOLD_NOTES) > 0.3]
    return len(musical) / len(frames)


def longest_quiet(pcm: bytes) -> float:
    """Seconds of the longest run of quiet (comfort-noise level) frames."""
    longest = run = 0
    for i in range(0, len(pcm) - FRAME + 1, FRAME):
        run = run + 1 if rms(pcm[i : i + FRAME]) < 300 else 0
        longest = max(longest, run)
    return longest * 0.02


async def test_warm_handover_completed(make_helpline: MakeHelpline, tmp_path: Path) -> None:
    port = find_free_port()
    with answering(port, tmp_path) as sipp:
        async with volunteer_talking(make_helpline, tmp_path, port) as call:
            await call.caller.record(tmp_path / "hold.wav")
            loop = asyncio.get_running_loop()
            pressed = loop.time()
            await call.volunteer.send_dtmf("*9")
            await call.until_step("consulting")
            consult = await call.heard(call.volunteer, "consult", 1.5)  # 113 talking
            held_for = call.prompt_seconds("handover_hold") + 2.0  # the message, then music
            await asyncio.sleep(max(0.0, pressed + held_for - loop.time()))
            hold = await call.caller.stop_record()
            await call.volunteer.send_dtmf("*1")
            assert await call.volunteer.wait_disconnected(timeout=10) == 200
            await asyncio.sleep(0.3)
            connected = await call.heard(call.caller, "connected", 1.5)
            await call.caller.hangup()
            result = await asyncio.to_thread(sipp.wait, 20)
            finished = [e["outcome"] for e in log_events(call.logs, "call_finished")]
            steps = call.steps()
    result.assert_ok()
    assert steps == [("answered", "consulting"), ("complete_key", "completed")]
    assert tone_share(loud_part(pcm(consult)), PROFESSIONAL_HZ) > 0.7
    # on hold: the message, then the melody, and never a silent stretch
    held = pcm(hold)
    assert melody_share(held[-int(1.0 * 16000) :]) > 0.8
    assert longest_quiet(held[int(0.3 * 16000) :]) < 1.0
    assert melody_share(held) < 0.9  # the message came first
    # the caller talks to 113 now; nothing of the caller reached 113
    assert tone_share(loud_part(pcm(connected)), PROFESSIONAL_HZ) > 0.7
    assert not any(CALLER_NUMBER in m for _, m in result.messages())
    assert finished == ["handed_over"]


async def test_warm_handover_cancelled(make_helpline: MakeHelpline, tmp_path: Path) -> None:
    port = find_free_port()
    with answering(port, tmp_path) as sipp:
        async with volunteer_talking(make_helpline, tmp_path, port) as call:
            await call.volunteer.send_dtmf("*9")
            await call.until_step("consulting")
            await asyncio.sleep(0.5)
            await call.volunteer.send_dtmf("*0")
            await call.until_step("returned")
            result = await asyncio.to_thread(sipp.wait, 20)  # 113 got our BYE
            await call.caller.play_tone(1000)
            await asyncio.sleep(0.5)
            volunteer_heard = await call.heard(call.volunteer, "back", 1.5)
            caller_heard = await call.heard(call.caller, "back_caller", 1.0)
            await call.caller.hangup()
            assert await call.volunteer.wait_disconnected(timeout=10) == 200
            finished = [e["outcome"] for e in log_events(call.logs, "call_finished")]
            steps = call.steps()
    result.assert_ok()
    assert steps == [("answered", "consulting"), ("cancel_key", "returned")]
    assert tone_share(loud_part(pcm(volunteer_heard)), 1000) > 0.7  # back with the caller
    assert tone_share(loud_part(pcm(caller_heard)), 400) > 0.7
    assert finished == ["answered"]


@dataclass
class Returned:
    """What the volunteer heard when 113 failed: the reason, then the caller again."""

    steps: list[tuple[str, str]]
    reason: Path
    back: Path
    reason_seconds: float

    def check(self, event: str) -> None:
        """Asserted once the phones are closed (PJSIP completes its WAV files then)."""
        assert self.steps == [(event, "returned")]
        # the volunteer heard the reason spoken (loud for most of the prompt's length)
        assert len(loud_part(pcm(self.reason))) / 16000 > 0.5 * self.reason_seconds
        assert tone_share(loud_part(pcm(self.back)), 1000) > 0.7  # back with the caller


async def _returned_with_reason(call: Call, reason_prompt: str) -> Returned:
    await call.volunteer.record(call.tmp / "reason.wav")
    await call.volunteer.send_dtmf("*9")
    await call.until_step("returned", timeout=30)
    seconds = call.prompt_seconds(reason_prompt)
    await asyncio.sleep(seconds + 0.3)
    reason = await call.volunteer.stop_record()
    await call.caller.play_tone(1000)
    await asyncio.sleep(0.5)
    back = await call.heard(call.volunteer, "back", 1.5)
    await call.caller.hangup()
    assert await call.volunteer.wait_disconnected(timeout=10) == 200
    return Returned(call.steps(), reason, back, seconds)


async def test_113_busy_returns_the_volunteer(make_helpline: MakeHelpline, tmp_path: Path) -> None:
    port = find_free_port()
    busy = start_sipp("uas_reject.xml", local_ip="127.0.0.1", local_port=port, timeout_s=60,
                      keys={"status": "486", "reason": "Busy Here"})  # fmt: skip
    with busy:
        async with volunteer_talking(make_helpline, tmp_path, port) as call:
            returned = await _returned_with_reason(call, "handover_busy")
            result = await asyncio.to_thread(busy.wait, 20)
    result.assert_ok()  # our ACK to the 486 came
    returned.check("busy")


async def test_113_unreachable_returns_the_volunteer(
    make_helpline: MakeHelpline, tmp_path: Path
) -> None:
    port = find_free_port()  # nobody listens there: the INVITE times out (Timer B = 64*T1)
    async with volunteer_talking(make_helpline, tmp_path, port, sip_t1=0.05) as call:
        returned = await _returned_with_reason(call, "handover_unreachable")
    returned.check("unreachable")


async def test_113_challenging_with_digest(make_helpline: MakeHelpline, tmp_path: Path) -> None:
    port = find_free_port()
    account = {"user": "helpline-trunk", "password": "carrier-secret-1"}
    sipp = answering(port, tmp_path, "uas_digest_answer.xml", keys=account)
    with sipp:
        async with volunteer_talking(
            make_helpline, tmp_path, port,
            outbound_auth_user="helpline-trunk", outbound_auth_password="carrier-secret-1",
        ) as call:  # fmt: skip
            await call.volunteer.send_dtmf("*9")
            await call.until_step("consulting")
            consult = await call.heard(call.volunteer, "consult", 1.5)
            await call.volunteer.hangup()  # hanging up completes the handover too
            await call.until_step("completed")
            await asyncio.sleep(0.3)
            connected = await call.heard(call.caller, "connected", 1.5)
            await call.caller.hangup()
            result = await asyncio.to_thread(sipp.wait, 20)
            steps = call.steps()
    result.assert_ok()  # the challenge was answered with the right digest
    assert steps == [("answered", "consulting"), ("volunteer_hung_up", "completed")]
    assert tone_share(loud_part(pcm(consult)), PROFESSIONAL_HZ) > 0.7
    assert tone_share(loud_part(pcm(connected)), PROFESSIONAL_HZ) > 0.7
