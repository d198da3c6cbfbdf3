"""The media runtime's prompt playback, music on hold and recorder over real UDP sockets on
127.0.0.1.

The far ends are plain asyncio datagram sockets sending RTP built with pbx.media.rtp,
so every test checks what actually goes over the wire.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pbx.media import g711, tones
from pbx.media.g711 import Codec
from pbx.media.moh import MohLibrary, MusicOnHold
from pbx.media.player import PlaybackEnd, Player, play
from pbx.media.ports import PortPool
from pbx.media.recorder import Recorder, RecordingEnd
from pbx.media.rtp import RtpSender
from tests.helpers.media_runtime import leg_and_peer, port_pool, rtp_peers, tone_of
from tests.helpers.rtp_peer import (
    Peer,
    decoded,
    send_digit,
    stream,
    wait_until,
)

pool = pytest.fixture(port_pool)
peers = pytest.fixture(rtp_peers)


# ---------------------------------------------------------------------- playback
async def test_prompt_plays_complete_and_well_formed(pool: PortPool, peers: list[Peer]) -> None:
    leg, peer = await leg_and_peer(pool, peers, codec=Codec.PCMA)
    prompt_a = tones.sine(440, 500)
    prompt_b = tones.sine(880, 310)  # not a multiple of 20 ms: the last frame is padded
    try:
        result = await play(leg, [prompt_a, prompt_b])
        assert result.reason is PlaybackEnd.FINISHED
        expected_frames = -(-(len(prompt_a) + len(prompt_b)) // 320)
        await wait_until(lambda: len(peer.packets) == expected_frames)
        packets = peer.packets
        assert all(p.payload_type == Codec.PCMA for p in packets)
        assert [p.marker for p in packets] == [True] + [False] * (len(packets) - 1)
        seqs = [p.sequence for p in packets]
        assert seqs == [(seqs[0] + i) & 0xFFFF for i in range(len(seqs))]
        stamps = [p.timestamp for p in packets]
        assert all((b - a) & 0xFFFFFFFF == 160 for a, b in zip(stamps, stamps[1:], strict=False))
        assert len({p.ssrc for p in packets}) == 1

        audio = decoded(packets)
        original = prompt_a + prompt_b
        assert audio[: len(original)] == g711.decode(Codec.PCMA, g711.encode(Codec.PCMA, original))
        error = [
            abs(x - y)
            for x, y in zip(
                memoryview(audio).cast("h"), memoryview(original).cast("h"), strict=False
            )
        ]
        assert max(error) <= 600  # A-law step is 512 at the 0.3 full-scale peak
        assert tones.rms(audio[len(original) :]) < 20  # padding is silence
    finally:
        leg.close()


async def test_barge_in_by_rfc4733_digit_stops_the_prompt(
    pool: PortPool, peers: list[Peer]
) -> None:
    leg, peer = await leg_and_peer(pool, peers)
    try:
        player = Player(leg, [tones.sine(440, 5000)]).start()
        await wait_until(lambda: len(peer.packets) >= 5)
        await send_digit(peer, leg.local_address, "3", RtpSender())
        result = await asyncio.wait_for(player, 3)
        assert result.reason is PlaybackEnd.BARGE_IN
        assert result.digit == "3"
        sent = len(peer.packets)
        await asyncio.sleep(0.2)
        assert len(peer.packets) <= sent + 1  # nothing after the stop
        assert sent < 250
    finally:
        leg.close()


async def test_prompt_without_barge_in_ignores_digits_and_reports_leg_close(
    pool: PortPool, peers: list[Peer]
) -> None:
    leg, peer = await leg_and_peer(pool, peers)
    digits: list[str] = []
    leg.on_dtmf = digits.append
    player = Player(leg, [tones.sine(440, 5000)], barge_in=False).start()
    await wait_until(lambda: len(peer.packets) >= 3)
    await send_digit(peer, leg.local_address, "9", RtpSender())
    await wait_until(lambda: digits == ["9"])
    assert not player.finished
    leg.close()
    result = await asyncio.wait_for(player, 3)
    assert result.reason is PlaybackEnd.LEG_CLOSED


async def test_cancelled_playback_and_a_new_prompt_supersedes_the_old(
    pool: PortPool, peers: list[Peer]
) -> None:
    leg, _peer = await leg_and_peer(pool, peers)
    try:
        first = Player(leg, [tones.sine(440, 5000)]).start()
        second = Player(leg, [tones.sine(440, 5000)]).start()
        assert (await first).reason is PlaybackEnd.CANCELLED
        second.cancel()
        assert (await second).reason is PlaybackEnd.CANCELLED
        assert leg.claimant is None
    finally:
        leg.close()


# --------------------------------------------------------------------------- moh
async def test_music_on_hold_one_stream_many_listeners_each_own_rtp(
    pool: PortPool, peers: list[Peer]
) -> None:
    moh = MusicOnHold("default", tones.sine(400, 1000))
    pairs = [await leg_and_peer(pool, peers, codec=c) for c in (Codec.PCMU, Codec.PCMU, Codec.PCMA)]
    try:
        for leg, _ in pairs:
            moh.subscribe(leg)
        await wait_until(lambda: all(len(p.packets) >= 15 for _, p in pairs))
        for leg, _ in pairs:
            moh.unsubscribe(leg)
        assert len(moh) == 0
        ssrcs = set()
        for (_leg, peer), codec in zip(pairs, (Codec.PCMU, Codec.PCMU, Codec.PCMA), strict=True):
            packets = peer.packets
            assert {p.payload_type for p in packets} == {codec}
            assert packets[0].marker
            seqs = [p.sequence for p in packets]
            assert seqs == [(seqs[0] + i) & 0xFFFF for i in range(len(seqs))]
            heard = [tone_of(g711.decode(codec, p.payload)) for p in packets]
            assert heard.count(400.0) >= len(heard) - 1, heard
            ssrcs.add(packets[0].ssrc)
        assert len(ssrcs) == 3
        # The stream is shared: the same tick puts the same audio on every leg.
        first = [decoded(p.packets[:10]) for _, p in pairs]
        assert first[0] == first[1]
    finally:
        for leg, _ in pairs:
            leg.close()


async def test_leg_switches_from_music_to_announcement_and_back(
    pool: PortPool, peers: list[Peer]
) -> None:
    library = MohLibrary()
    library.add("default", tones.sine(400, 1000))
    leg, peer = await leg_and_peer(pool, peers)
    try:
        moh = library.start(leg, "no-such-class")  # falls back to the default class
        await wait_until(lambda: len(peer.packets) >= 5)
        result = await play(leg, [tones.sine(1000, 200)])
        assert result.reason is PlaybackEnd.FINISHED
        mark = len(peer.packets)
        await wait_until(lambda: len(peer.packets) >= mark + 5)
        library.stop(leg)
        assert leg not in moh

        packets = peer.packets
        heard = [tone_of(g711.decode(Codec.PCMU, p.payload)) for p in packets]
        first_1000 = heard.index(1000.0)
        last_1000 = len(heard) - 1 - heard[::-1].index(1000.0)
        assert set(heard[:first_1000]) == {400.0}
        assert heard[first_1000 : last_1000 + 1] == [1000.0] * 10
        assert 400.0 in heard[last_1000 + 1 :]
        assert packets[first_1000].marker and packets[last_1000 + 1].marker
        assert len({p.ssrc for p in packets}) == 1
        seqs = [p.sequence for p in packets]
        assert seqs == [(seqs[0] + i) & 0xFFFF for i in range(len(seqs))]
    finally:
        leg.close()


# ---------------------------------------------------------------------- recorder
async def test_recorder_stops_at_max_length(
    pool: PortPool, peers: list[Peer], tmp_path: Path
) -> None:
    leg, peer = await leg_and_peer(pool, peers)
    try:
        recorder = Recorder(leg, max_seconds=0.5).start()
        await stream(peer, leg.local_address, tones.sine(400, 1000), Codec.PCMU, RtpSender(), 0.002)
        result = await asyncio.wait_for(recorder, 3)
        assert result.reason is RecordingEnd.MAX_LENGTH
        assert result.duration == 0.5
        audio = result.pcm
        assert len(audio) == 8000
        assert tones.dominant_frequency(audio, [400, 1000]) == 400
    finally:
        leg.close()


async def test_recorder_stops_on_silence_and_drops_the_silent_tail(
    pool: PortPool, peers: list[Peer], tmp_path: Path
) -> None:
    leg, peer = await leg_and_peer(pool, peers)
    try:
        recorder = Recorder(leg, silence_seconds=0.4).start()
        speech = (
            tones.silence(100) + tones.sine(400, 300) + tones.silence(60) + tones.sine(400, 100)
        )
        await stream(
            peer, leg.local_address, speech + tones.silence(600), Codec.PCMU, RtpSender(), 0.002
        )
        result = await asyncio.wait_for(recorder, 3)
        assert result.reason is RecordingEnd.SILENCE
        assert len(result.pcm) == len(speech)  # leading and inner silence kept, tail cut
        assert result.duration == pytest.approx(0.56)
    finally:
        leg.close()


async def test_recorder_stops_on_hash_and_when_nothing_arrives(
    pool: PortPool, peers: list[Peer], tmp_path: Path
) -> None:
    leg, peer = await leg_and_peer(pool, peers)
    try:
        recorder = Recorder(leg).start()
        await stream(peer, leg.local_address, tones.sine(400, 200), Codec.PCMU, RtpSender())
        await send_digit(peer, leg.local_address, "#", RtpSender())
        result = await asyncio.wait_for(recorder, 3)
        assert (result.reason, result.digit) == (RecordingEnd.STOP_DIGIT, "#")
        assert len(result.pcm) == 3200

        quiet = Recorder(leg, silence_seconds=0.6).start()
        result = await asyncio.wait_for(quiet, 3)
        assert result.reason is RecordingEnd.SILENCE
        assert result.duration == 0
    finally:
        leg.close()
