"""Audio through the service, shown by content: real PJSIP handsets as caller and volunteer."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from pbx.media.g711 import Codec, decode, encode
from pbx.media.ports import PortPool
from pbx.media.prompts import PromptLibrary
from pbx.media.rtp import RtpPacket
from tests.helpers.audio import active_part, read_wav, tone_share
from tests.helpers.ports import free_port
from tests.helpers.raw_call import body_length, connect, sdp
from tests.helpers.raw_handset import RawHandset
from tests.helpers.service import HANDSET_HOST, MakeHelpline, Running
from tests.peers.pjsua_phone import AsyncPjsuaPhone


async def test_audio_flows_both_ways_through_the_anchored_bridge(
    helpline: Running, tmp_path: Path
) -> None:
    await helpline.add_volunteer("kees", "pass-word-pqr")
    async with AsyncPjsuaPhone("kees") as volunteer, AsyncPjsuaPhone("caller") as caller:
        await volunteer.start(free_port(HANDSET_HOST), bind=HANDSET_HOST)
        assert (
            await volunteer.register(helpline.host, helpline.port, "kees", "pass-word-pqr") == 200
        )
        await caller.start(free_port())  # not registered: it calls in over the trunk
        dialing = asyncio.create_task(
            caller.make_call(f"sip:09000767@{helpline.host}:{helpline.port}")
        )
        incoming = await volunteer.wait_incoming(timeout=10)
        assert f"c=IN IP4 {helpline.host}" in incoming.sdp
        await volunteer.answer(200)
        assert await dialing == 200
        await caller.play_tone(1000)
        await volunteer.play_tone(400)
        await volunteer.record(tmp_path / "volunteer-heard.wav")
        await caller.record(tmp_path / "caller-heard.wav")
        await asyncio.sleep(2.0)
        heard_by_volunteer = await volunteer.stop_record()
        heard_by_caller = await caller.stop_record()
        await caller.hangup()
        await volunteer.wait_disconnected(timeout=10)  # the caller's BYE ended both legs

    volunteer_pcm = active_part(read_wav(heard_by_volunteer)[0])
    caller_pcm = active_part(read_wav(heard_by_caller)[0])
    assert len(volunteer_pcm) > 8000 and len(caller_pcm) > 8000  # > 0.5 s of audio each way
    assert tone_share(volunteer_pcm, 1000) > 0.8 and tone_share(volunteer_pcm, 400) < 0.05
    assert tone_share(caller_pcm, 400) > 0.8 and tone_share(caller_pcm, 1000) < 0.05
    await asyncio.sleep(0.2)
    assert helpline.service.switchboard.legs == {}


async def test_a_call_whose_media_stops_is_hung_up_on_both_sides(
    make_helpline: MakeHelpline,
) -> None:
    """A volunteer's handset that vanishes mid-call (no RTP any more) must not hold the caller."""
    async with make_helpline(digest_algorithms=["MD5"], media_timeout=1.0) as helpline:
        await helpline.add_volunteer("lies", "pass-word-stu")
        volunteer, caller = RawHandset(HANDSET_HOST), RawHandset()
        try:
            await connect(helpline, caller, volunteer, "lies", "pass-word-stu")
            # neither side sends RTP: after the media timeout both get a BYE
            bye_caller = await asyncio.to_thread(caller.recv_until, "BYE", 10)
            bye_volunteer = await asyncio.to_thread(volunteer.recv_until, "BYE", 10)
            assert bye_caller.startswith("BYE ") and bye_volunteer.startswith("BYE ")
        finally:
            volunteer.close()
            caller.close()


async def test_volunteer_hears_the_whole_whisper_evenly_paced(make_helpline: MakeHelpline) -> None:
    """A played prompt arrives complete: every sample, in order, one 20 ms packet per 160."""
    async with make_helpline(digest_algorithms=["MD5"]) as helpline:
        prompt = PromptLibrary(helpline.settings.recordings).get("nl", "queue_announce")
        await helpline.add_volunteer("piet", "pass-word-wsp")
        volunteer, caller = RawHandset(HANDSET_HOST), RawHandset()
        rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rtp.bind(("127.0.0.1", 0))
        rtp.setblocking(False)
        try:
            answer = sdp(rtp.getsockname()[1]).replace("RTP/AVP 8 0 101", "RTP/AVP 0")
            # connect() returns once the caller has its 200: only after the whole whisper
            await connect(helpline, caller, volunteer, "piet", "pass-word-wsp", answer)
            packets: list[RtpPacket] = []
            loop = asyncio.get_running_loop()
            expected = -(-len(prompt) // 320)  # 160 samples of 2 bytes per packet
            while len(packets) < expected:
                data = await asyncio.wait_for(loop.sock_recv(rtp, 2048), 5)
                packets.append(RtpPacket.parse(data))
        finally:
            rtp.close()
            volunteer.close()
            caller.close()
    assert {p.payload_type for p in packets} == {0}  # PCMU, as answered
    assert packets[0].marker and not any(p.marker for p in packets[1:])
    assert all(
        (b.sequence - a.sequence) % 65536 == 1 and (b.timestamp - a.timestamp) % 2**32 == 160
        for a, b in zip(packets, packets[1:], strict=False)
    )
    heard = decode(Codec.PCMU, b"".join(p.payload for p in packets))
    sent = decode(Codec.PCMU, encode(Codec.PCMU, prompt))
    assert heard[: len(sent)] == sent  # every sample of the prompt, in order
    assert heard[len(sent) :] == bytes(len(heard) - len(sent))  # padded with silence


async def test_caller_gets_503_when_media_ports_run_out(make_helpline: MakeHelpline) -> None:
    """One RTP port pair for the whole service: the caller's leg takes it, the volunteer's
    leg cannot get one, and the caller is told so cleanly instead of hearing silence."""
    async with make_helpline(digest_algorithms=["MD5"]) as helpline:
        await helpline.add_volunteer("rosa", "pass-word-prt")
        base = helpline.settings.rtp_port_min
        helpline.service.switchboard.app.media.pool = PortPool(  # type: ignore[union-attr]
            "127.0.0.1", base, base + 1
        )
        volunteer, caller = RawHandset(HANDSET_HOST), RawHandset()
        try:
            target = (helpline.host, helpline.port)
            final = await asyncio.to_thread(
                volunteer.register, target, "rosa", "pass-word-prt", contact_port=volunteer.port
            )
            assert final.startswith("SIP/2.0 200")
            offer = sdp(41020)
            caller.send(
                f"INVITE sip:09000767@{helpline.host}:{helpline.port} SIP/2.0\n"
                f"Via: SIP/2.0/UDP {caller.host}:{caller.port};branch=z9hG4bKports;rport\n"
                f"From: <sip:anonymous@{caller.host}>;tag=p1\nTo: <sip:09000767@{helpline.host}>\n"
                f"Call-ID: ports@{caller.host}\nCSeq: 1 INVITE\nMax-Forwards: 70\n"
                f"Contact: <sip:c@{caller.host}:{caller.port}>\nContent-Type: application/sdp\n"
                f"Content-Length: {body_length(offer)}\n\n{offer}",
                target,
            )
            answer = await asyncio.to_thread(caller.recv_until, "SIP/2.0 5", 5)
            assert answer.startswith("SIP/2.0 503 Service Unavailable - No media ports"), answer
        finally:
            volunteer.close()
            caller.close()


async def test_sipp_caller_audio_reaches_the_volunteer(
    make_helpline: MakeHelpline, tmp_path: Path
) -> None:
    """sipp replays recorded RTP (a 1000 Hz tone in PCMU); the PJSIP volunteer hears it."""
    async with make_helpline(volunteer_whisper="") as helpline:  # record the caller only
        await _sipp_caller_audio(helpline, tmp_path)


async def _sipp_caller_audio(helpline: Running, tmp_path: Path) -> None:
    from tests.peers.rtp_pcap import media_pcap, pcap_duration_ms
    from tests.peers.sipp import start_sipp

    pcap = media_pcap(tmp_path / "caller.pcap", tone_hz=1000, tone_ms=2500)
    await helpline.add_volunteer("sara", "pass-word-rtp")
    async with AsyncPjsuaPhone("sara") as volunteer:
        await volunteer.start(free_port(HANDSET_HOST), bind=HANDSET_HOST)
        assert (
            await volunteer.register(helpline.host, helpline.port, "sara", "pass-word-rtp") == 200
        )
        caller = start_sipp(
            "uac_call_rtp", helpline.target, service="09000767",
            files={"media.pcap": pcap}, pause_ms=pcap_duration_ms(pcap) + 1500, timeout_s=30,
        )  # fmt: skip
        await volunteer.wait_incoming(timeout=10)
        await volunteer.answer(200)
        await volunteer.record(tmp_path / "heard.wav")
        result = await asyncio.to_thread(caller.wait, 30)
        result.assert_ok()
        heard = await volunteer.stop_record()
    pcm = active_part(read_wav(heard)[0])
    assert len(pcm) > 16000  # more than a second of the caller's audio
    assert tone_share(pcm, 1000) > 0.8
