"""Warm handover to 113 with real peers: a PJSIP caller from the trunk address, a PJSIP
volunteer on 127.0.0.2, and sipp as the 113 professional (talking: a tone from a pcap, so who
hears 113 when can be checked by content).

The volunteer presses *9: the caller hears a short message and then the hold music (the same
`hold_music` track as waiting callers: a tone here, so it is told apart by content); the
volunteer talks to 113 first, then completes (*1) or cancels (*0); a busy, unreachable,
unanswering or refusing 113 sends the volunteer back to the caller with the reason spoken; a
carrier or its proxy that challenges the call (401, 407) gets the digest."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers.audio import loud_part, rms, tone_share
from tests.helpers.handover_call import (
    CALLER_NUMBER,
    HOLD_HZ,
    PROFESSIONAL_HZ,
    Call,
    answering,
    pcm,
    volunteer_talking,
)
from tests.helpers.logs import log_events
from tests.helpers.ports import free_port
from tests.helpers.service import MakeHelpline
from tests.peers.challenging_proxy import ChallengingProxy
from tests.peers.sipp import start_sipp

FRAME = 320  # 20 ms of 16-bit PCM at 8 kHz


def music_share(pcm: bytes) -> float:
    """Share of the loud 20 ms frames with much of their power at the hold music's tone (a
    clean frame gives ~1; frames where the receiver's jitter buffer adjusts still give 0.35 or
    more; speech gives under 0.1)."""
    frames = [pcm[i : i + FRAME] for i in range(0, len(pcm) - FRAME + 1, FRAME)]
    frames = [f for f in frames if rms(f) >= 300]
    if not frames:
        return 0.0
    musical = [f for f in frames if tone_share(f, HOLD_HZ) > 0.3]
    return len(musical) / len(frames)


def longest_quiet(pcm: bytes) -> float:
    """Seconds of the longest run of quiet (comfort-noise level) frames."""
    longest = run = 0
    for i in range(0, len(pcm) - FRAME + 1, FRAME):
        run = run + 1 if rms(pcm[i : i + FRAME]) < 300 else 0
        longest = max(longest, run)
    return longest * 0.02


def assert_held(held: bytes) -> None:
    """On hold: the message, then the hold music (its last second), never a silent stretch."""
    assert music_share(held[-int(1.0 * 16000) :]) > 0.8
    assert longest_quiet(held[int(0.3 * 16000) :]) < 1.0
    assert music_share(held[: int(2.0 * 16000)]) < 0.5  # the message came first


async def test_warm_handover_completed(make_helpline: MakeHelpline, tmp_path: Path) -> None:
    port = free_port()
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
    assert_held(pcm(hold))
    # the caller talks to 113 now; nothing of the caller reached 113
    assert tone_share(loud_part(pcm(connected)), PROFESSIONAL_HZ) > 0.7
    assert not any(CALLER_NUMBER in m for _, m in result.messages())
    assert finished == ["handed_over"]


async def test_warm_handover_cancelled(make_helpline: MakeHelpline, tmp_path: Path) -> None:
    port = free_port()
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
    """What was heard when 113 failed: the volunteer the reason, then the caller again; the
    caller the hold until then, then the volunteer again."""

    steps: list[tuple[str, str]]
    held: Path  # the caller, from *9 until the volunteer is told why
    reason: Path
    back: Path
    caller_back: Path
    reason_seconds: float
    waited: float  # seconds from *9 until the volunteer was back

    def check(self, event: str, *, music: bool = False) -> None:
        """Asserted once the phones are closed (PJSIP completes its WAV files then). With
        `music`, 113 took long enough to fail for the caller to hear the music on hold."""
        assert self.steps == [(event, "returned")]
        # the volunteer heard the reason spoken (loud for most of the prompt's length)
        assert len(loud_part(pcm(self.reason))) / 16000 > 0.5 * self.reason_seconds
        assert tone_share(loud_part(pcm(self.back)), 1000) > 0.7  # back with the caller
        assert tone_share(loud_part(pcm(self.caller_back)), 400) > 0.7  # and the caller too
        if music:
            assert_held(pcm(self.held))


async def _returned_with_reason(call: Call, reason_prompt: str) -> Returned:
    await call.volunteer.record(call.tmp / "reason.wav")
    await call.caller.record(call.tmp / "held.wav")
    loop = asyncio.get_running_loop()
    pressed = loop.time()
    await call.volunteer.send_dtmf("*9")
    await call.until_step("returned", timeout=30)
    waited = loop.time() - pressed
    held = await call.caller.stop_record()  # the reason is being spoken: still on hold
    seconds = call.prompt_seconds(reason_prompt)
    await asyncio.sleep(seconds + 0.3)
    reason = await call.volunteer.stop_record()
    await call.caller.play_tone(1000)
    await asyncio.sleep(0.5)
    back = await call.heard(call.volunteer, "back", 1.5)
    caller_back = await call.heard(call.caller, "caller_back", 1.0)
    await call.caller.hangup()
    assert await call.volunteer.wait_disconnected(timeout=10) == 200
    return Returned(call.steps(), held, reason, back, caller_back, seconds, waited)


async def test_113_busy_returns_the_volunteer(make_helpline: MakeHelpline, tmp_path: Path) -> None:
    port = free_port()
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
    port = free_port()  # nobody listens there: the INVITE times out (Timer B = 64*T1)
    async with volunteer_talking(make_helpline, tmp_path, port, sip_t1=0.05) as call:
        returned = await _returned_with_reason(call, "handover_unreachable")
    returned.check("unreachable")


async def test_113_challenging_with_digest(make_helpline: MakeHelpline, tmp_path: Path) -> None:
    port = free_port()
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


async def test_113_not_answering_returns_the_volunteer(
    make_helpline: MakeHelpline, tmp_path: Path
) -> None:
    port = free_port()
    ringing = start_sipp("uas_ring_no_answer.xml", local_ip="127.0.0.1", local_port=port,
                         timeout_s=60)  # fmt: skip
    ring_timeout = 7.0  # the hold message (~4.4 s), then music until 113 is given up
    with ringing:
        async with volunteer_talking(
            make_helpline, tmp_path, port, handover_ring_timeout=ring_timeout
        ) as call:
            returned = await _returned_with_reason(call, "handover_no_answer")
            result = await asyncio.to_thread(ringing.wait, 20)
    result.assert_ok()  # 113 rang until our CANCEL, and our ACK to its 487 came
    returned.check("no_answer", music=True)
    assert returned.waited >= ring_timeout - 0.5  # 113 rang for the whole ring timeout


@pytest.mark.parametrize(("status", "reason"), [(403, "Forbidden"), (603, "Decline")])
async def test_113_refusing_returns_the_volunteer(
    make_helpline: MakeHelpline, tmp_path: Path, status: int, reason: str
) -> None:
    port = free_port()
    refusing = start_sipp("uas_reject.xml", local_ip="127.0.0.1", local_port=port, timeout_s=60,
                          keys={"status": str(status), "reason": reason})  # fmt: skip
    with refusing:
        async with volunteer_talking(make_helpline, tmp_path, port) as call:
            returned = await _returned_with_reason(call, "handover_refused")
            result = await asyncio.to_thread(refusing.wait, 20)
    result.assert_ok()  # our ACK to the refusal came
    returned.check("refused")


async def test_113_behind_a_proxy_challenging_with_407(
    make_helpline: MakeHelpline, tmp_path: Path
) -> None:
    """The carrier's proxy (Kamailio) challenges the INVITE with 407 Proxy-Authenticate and
    checks the Proxy-Authorization we send again; only then does 113 (sipp) ring."""
    port = free_port()
    user, password = "helpline-trunk", "carrier-secret-2"
    proxy = ChallengingProxy(("127.0.0.1", port), realm="carrier.test", user=user,
                             password=password)  # fmt: skip
    with answering(port, tmp_path) as sipp, proxy:
        async with volunteer_talking(
            make_helpline, tmp_path, proxy.port,
            outbound_auth_user=user, outbound_auth_password=password,
        ) as call:  # fmt: skip
            await call.volunteer.send_dtmf("*9")
            await call.until_step("consulting")
            consult = await call.heard(call.volunteer, "consult", 1.5)
            await call.volunteer.send_dtmf("*1")
            assert await call.volunteer.wait_disconnected(timeout=10) == 200
            await asyncio.sleep(0.3)
            connected = await call.heard(call.caller, "connected", 1.5)
            await call.caller.hangup()
            result = await asyncio.to_thread(sipp.wait, 20)
            steps = call.steps()
            proxy_log = proxy.log_text()
    result.assert_ok()
    assert "challenging" in proxy_log, proxy_log  # a 407 first
    assert f"as {user}" in proxy_log, proxy_log  # then the credentials checked and right
    assert "wrong credentials" not in proxy_log, proxy_log
    assert steps == [("answered", "consulting"), ("complete_key", "completed")]
    assert tone_share(loud_part(pcm(consult)), PROFESSIONAL_HZ) > 0.7  # the volunteer and 113
    assert tone_share(loud_part(pcm(connected)), PROFESSIONAL_HZ) > 0.7  # the caller and 113
