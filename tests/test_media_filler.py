"""The line filler over real UDP sockets on 127.0.0.1: a caller's stream that never goes quiet.

A raw receiver (kernel arrival timestamps) stands in for the caller's media; the volunteer's
side is a bare RTP socket whose packets the bridge relays. Every test checks what went over
the wire: one SSRC, contiguous sequence numbers, timestamps that follow the clock, and no
packet of the filler doubling or mixing with a prompt or the relayed audio.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from pbx.media import g711, tones
from pbx.media.bridge import Bridge
from pbx.media.filler import LineFiller
from pbx.media.g711 import Codec
from pbx.media.leg import MediaLeg
from pbx.media.player import play
from pbx.media.ports import PortPool
from pbx.media.rtp import RtpSender
from pbx.media.sdp import Direction
from tests.helpers.rtp_capture import Captured, RtpCapture, continuity
from tests.helpers.rtp_peer import HOST, Peer, media_for


@pytest.fixture
def pool() -> PortPool:
    return PortPool(HOST, 43000, 43999)


@pytest.fixture
async def caller() -> AsyncIterator[RtpCapture]:
    capture = RtpCapture(HOST)
    yield capture
    capture.close()


def pcm_of(packet: Captured) -> bytes:
    return g711.decode(Codec(packet.payload_type), packet.payload)


def loud(packet: Captured, freq: float) -> bool:
    pcm = pcm_of(packet)
    return tones.rms(pcm) > 1000 and tones.dominant_frequency(pcm, (freq, 425.0, 1000.0)) == freq


async def test_prompt_noise_prompt_relay_noise_is_one_clean_stream(
    pool: PortPool, caller: RtpCapture
) -> None:
    filler = LineFiller()
    leg = await MediaLeg.open(pool, media_for(caller.port, Codec.PCMA))
    # the handset sends from a port of its own: accepted as NAT, from its signalling address
    volunteer = await MediaLeg.open(
        pool, media_for(caller.port + 1, Codec.PCMU), signalling_hosts=["127.0.0.1"]
    )
    handset = await Peer.open()
    try:
        filler.keep(leg)
        await play(leg, [tones.sine(1000, 200)])  # 10 frames
        await asyncio.sleep(0.3)  # a menu waiting for a key
        await play(leg, [tones.sine(1000, 200)])
        await asyncio.sleep(0.2)
        bridge = Bridge(leg, volunteer).start()
        # The volunteer's handset sends 400 Hz with jitter: alternately 5 and 35 ms apart.
        sender = RtpSender()
        tone = g711.encode(Codec.PCMU, tones.sine(400, 20 * 40))
        for i in range(40):
            frame = tone[i * 160 : (i + 1) * 160]
            handset.send(sender.packet(frame, Codec.PCMU, 160, i == 0), volunteer.local_address)
            await asyncio.sleep(0.005 if i % 2 else 0.035)
        await asyncio.sleep(0.4)  # the handset suppresses silence: the filler takes over
        for i in range(10):
            frame = tone[i * 160 : (i + 1) * 160]
            handset.send(sender.packet(frame, Codec.PCMU, 160, i == 0), volunteer.local_address)
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
        bridge.stop()
    finally:
        leg.close()
        volunteer.close()
        handset.close()
    await asyncio.sleep(0.05)
    packets = caller.packets
    stream = continuity(packets)
    assert len(stream.ssrcs) == 1
    assert stream.seq_breaks == []
    assert stream.max_gap < 0.1, stream
    assert {p.payload_type for p in packets} == {int(Codec.PCMA)}
    # markers: the first packet, and only a packet after a real pause in what was sent
    gaps = {i for i in range(1, len(packets)) if packets[i].at - packets[i - 1].at > 0.045}
    assert stream.markers[0] == 0 and set(stream.markers[1:]) <= gaps
    prompts = [i for i, p in enumerate(packets) if loud(p, 1000.0)]
    relayed = [i for i, p in enumerate(packets) if loud(p, 400.0)]
    assert len(prompts) == 20 and len(relayed) == 50  # nothing doubled, nothing lost
    first_burst = relayed[:40]
    assert first_burst == list(range(first_burst[0], first_burst[0] + 40))  # no fill in jitter
    # the filler's frames in between are quiet (about -65 dBov)
    quiet = [i for i in range(len(packets)) if i not in prompts and i not in relayed]
    assert len(quiet) > 40 and all(tones.rms(pcm_of(packets[i])) < 100 for i in quiet)
    # timestamps: 160 a packet, except where the filler caught up with the clock after the
    # handset went quiet (one step, back in line with the clock)
    assert all(step % 160 == 0 and step <= 640 for step in stream.ts_steps.values())
    assert len(stream.ts_steps) <= 2, stream.ts_steps
    assert stream.clock_drift < 0.08, stream


async def test_ringback_cadence_then_noise(pool: PortPool, caller: RtpCapture) -> None:
    filler = LineFiller()
    leg = await MediaLeg.open(pool, media_for(caller.port, Codec.PCMU))
    try:
        filler.keep(leg)
        await asyncio.sleep(0.2)
        filler.ringback(leg, True)
        start = len(caller.packets)
        await asyncio.sleep(1.6)
        filler.ringback(leg, False)
        stop = len(caller.packets)
        await asyncio.sleep(0.3)
    finally:
        leg.close()
    await asyncio.sleep(0.05)
    packets = caller.packets
    assert continuity(packets).seq_breaks == []
    ringing = packets[start:stop]
    rings = [i for i, p in enumerate(ringing) if loud(p, 425.0)]
    # 1 s of 425 Hz from the start of the ringing, then the 4 s pause (quiet)
    assert rings and rings[0] <= 2 and 45 <= len(rings) <= 51
    assert rings == list(range(rings[0], rings[0] + len(rings)))
    assert all(tones.rms(pcm_of(p)) < 100 for p in packets[: start - 1] + packets[stop + 1 :])


async def test_nothing_is_sent_while_the_caller_holds_us(
    pool: PortPool, caller: RtpCapture
) -> None:
    filler = LineFiller()
    leg = await MediaLeg.open(pool, media_for(caller.port, Codec.PCMU))
    try:
        filler.keep(leg)
        await asyncio.sleep(0.3)
        held = media_for(caller.port, Codec.PCMU, direction=Direction.SENDONLY)
        leg.update(held)
        await asyncio.sleep(0.05)
        before = len(caller.packets)
        await asyncio.sleep(0.3)
        assert len(caller.packets) == before
        leg.update(media_for(caller.port, Codec.PCMU))  # resumed: the stream goes on
        await asyncio.sleep(0.3)
    finally:
        leg.close()
    await asyncio.sleep(0.05)
    packets = caller.packets
    assert len(packets) > before + 10
    assert continuity(packets).seq_breaks == []
    assert packets[before].marker  # the first packet after the hold starts a talk-spurt
    assert len(filler) == 0  # a closed leg is released
