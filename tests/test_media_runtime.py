"""The asyncio media runtime over real UDP sockets on 127.0.0.1.

The far ends are plain asyncio datagram sockets sending RTP built with pbx.media.rtp,
so every test checks what actually goes over the wire.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pbx.media import g711, tones
from pbx.media.bridge import Bridge, BridgeEnd, Side
from pbx.media.dtmf import DtmfDetector
from pbx.media.endpoint import RtpEndpoint
from pbx.media.g711 import Codec
from pbx.media.leg import MediaLeg
from pbx.media.moh import MohLibrary, MusicOnHold
from pbx.media.player import PlaybackEnd, Player, play
from pbx.media.ports import PortPool, PortsExhausted
from pbx.media.recorder import Recorder, RecordingEnd
from pbx.media.rtp import RtpPacket, RtpSender
from pbx.media.sdp import Direction
from pbx.media.ticker import Ticker, ticker_for
from tests.helpers.rtp_peer import (
    HOST,
    TE_PT,
    Peer,
    decoded,
    media_for,
    send_digit,
    stream,
    wait_until,
)

HIJACKER = "127.0.0.2"


def tone_of(payload_pcm: bytes, candidates: tuple[float, ...] = (400.0, 1000.0)) -> float | None:
    """The candidate that dominates a frame, or None for (near) silence."""
    if tones.rms(payload_pcm) < 500:
        return None
    return tones.dominant_frequency(payload_pcm, candidates)


@pytest.fixture
def pool() -> PortPool:
    return PortPool(HOST, 41000, 41999)


@pytest.fixture
async def peers() -> AsyncIterator[list[Peer]]:
    made: list[Peer] = []
    yield made
    for peer in made:
        peer.close()


async def leg_and_peer(
    pool: PortPool, peers: list[Peer], codec: Codec = Codec.PCMU, **endpoint: object
) -> tuple[MediaLeg, Peer]:
    peer = await Peer.open()
    peers.append(peer)
    leg = await MediaLeg.open(pool, media_for(peer.port, codec), **endpoint)  # type: ignore[arg-type]
    return leg, peer


# --------------------------------------------------------------------------- ports
def test_port_pool_allocates_even_pairs_skips_busy_and_exhausts() -> None:
    busy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    busy.bind((HOST, 0))
    busy_port = busy.getsockname()[1] & ~1
    busy.close()
    # Occupy the RTCP half of one pair: the whole pair must be skipped.
    blocker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        blocker.bind((HOST, busy_port + 1))
    except OSError:
        pytest.skip("could not reserve a test port")
    try:
        pool = PortPool(HOST, busy_port - 4, busy_port + 4)  # pairs at -4, -2, 0, +2
        got = []
        while True:
            try:
                got.append(pool.allocate())
            except PortsExhausted as exc:
                assert "no free RTP port pair" in str(exc)
                break
        ports = [p.port for p in got]
        assert busy_port not in ports
        assert all(p % 2 == 0 for p in ports)
        assert len(ports) == len(set(ports)) >= 1
        for allocated in got:  # the RTCP neighbour is ours too
            assert allocated.rtcp_socket.getsockname()[1] == allocated.port + 1
        got[0].close()
        again = pool.allocate()
        assert again.port == got[0].port
        again.close()
        for allocated in got[1:]:
            allocated.close()
        assert pool.in_use == 0
    finally:
        blocker.close()


def test_port_pool_hands_out_unpredictable_ports_and_holds_back_released_ones() -> None:
    """The next call's port cannot be guessed from the last ones, and a port freed by a call
    that just ended is not given to the next call (its late packets would leak into it)."""
    pool = PortPool(HOST, 42000, 42999)  # 500 pairs
    got = [pool.allocate() for _ in range(12)]
    try:
        ports = [p.port for p in got]
        assert all(p % 2 == 0 and 42000 <= p < 42999 for p in ports)
        steps = {b - a for a, b in zip(ports, ports[1:], strict=False)}
        assert len(steps) > 1, ports  # not a walk with a fixed stride
        freed = got.pop(0)
        freed.close()
        again = [pool.allocate() for _ in range(20)]
        got += again
        assert freed.port not in [p.port for p in again]
    finally:
        for allocated in got:
            allocated.close()
    assert pool.in_use == 0


def test_port_pool_out_of_sockets_is_ports_exhausted_not_a_crash() -> None:
    """A process at its file limit gets PortsExhausted (the caller a 503), not an OSError."""
    script = (
        "import resource, sys\n"
        "from pbx.media.ports import PortPool, PortsExhausted\n"
        "pool = PortPool('127.0.0.1', 43000, 43999)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))\n"
        "held = []\n"
        "try:\n"
        "    while True: held.append(pool.allocate())\n"
        "except PortsExhausted as exc: print('exhausted', len(held), exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("exhausted ") and "cannot open RTP sockets" in done.stdout


# ------------------------------------------------------------------------ endpoint
async def test_symmetric_rtp_latches_to_the_signalling_peer_behind_nat(
    pool: PortPool, peers: list[Peer]
) -> None:
    sdp_peer = await Peer.open()  # where SDP says the handset is (its private address)
    nat_peer = await Peer.open()  # its public address: the signalling peer's IP, another port
    peers += [sdp_peer, nat_peer]
    leg = await MediaLeg.open(pool, media_for(sdp_peer.port), signalling_hosts=[HOST])
    try:
        assert leg.send_audio(tones.silence(20))
        await wait_until(lambda: len(sdp_peer.packets) == 1)

        sender = RtpSender()
        await stream(nat_peer, leg.local_address, tones.silence(40), Codec.PCMU, sender)
        await wait_until(lambda: leg.endpoint.stats.rx_packets == 2)
        assert leg.endpoint.latched == (HOST, nat_peer.port)

        assert leg.send_audio(tones.silence(20))
        await wait_until(lambda: len(nat_peer.packets) == 1)
        assert len(sdp_peer.packets) == 1
    finally:
        leg.close()


async def test_rtp_from_a_stranger_is_dropped_before_and_after_the_first_packet(
    pool: PortPool, peers: list[Peer]
) -> None:
    """RTP bleed: a stranger (127.0.0.2) sprays the port before the handset's first packet
    and keeps at it, louder, while the handset (127.0.0.1, the call's signalling peer) falls
    silent. The stream never leaves the handset; nothing of the stranger is heard."""
    handset = await Peer.open()
    attacker = await Peer.open(HIJACKER)
    peers += [handset, attacker]
    heard: list[bytes] = []
    leg = await MediaLeg.open(pool, media_for(handset.port), signalling_hosts=[HOST])
    leg.add_audio_listener(lambda payload, codec: heard.append(payload))
    stats = leg.endpoint.stats
    try:
        real, fake = RtpSender(), RtpSender()
        attack = tones.sine(1000.0, 200)
        await stream(attacker, leg.local_address, attack, Codec.PCMU, fake)  # 10 packets first
        await wait_until(lambda: stats.foreign == 10)
        assert leg.endpoint.latched is None and heard == []
        assert leg.send_audio(tones.silence(20))  # we still talk to the SDP address only
        await wait_until(lambda: len(handset.packets) == 1)

        await stream(handset, leg.local_address, tones.silence(20), Codec.PCMU, real)
        await wait_until(lambda: stats.rx_packets == 1)
        assert leg.endpoint.latched == (HOST, handset.port)
        # The handset goes quiet for far longer than any relatch window; the stranger keeps
        # sending paced "speech", as a NAT rebinding would look.
        await stream(attacker, leg.local_address, tones.sine(1000.0, 600), Codec.PCMU, fake, 0.02)
        await wait_until(lambda: stats.foreign == 40)
        assert leg.endpoint.latched == (HOST, handset.port)
        assert stats.rx_packets == 1 and len(heard) == 1 and stats.latches == 1

        assert leg.send_audio(tones.silence(20))  # our audio still goes to the handset only
        await wait_until(lambda: len(handset.packets) == 2)
        assert attacker.packets == []
    finally:
        leg.close()


async def test_a_stranger_on_the_signalling_address_cannot_take_a_latched_stream(
    pool: PortPool, peers: list[Peer]
) -> None:
    """Even a source on the signalling peer's own IP (another port) is a stray once latched."""
    handset = await Peer.open()
    other = await Peer.open()
    peers += [handset, other]
    leg = await MediaLeg.open(pool, media_for(handset.port), signalling_hosts=[HOST])
    stats = leg.endpoint.stats
    try:
        await stream(handset, leg.local_address, tones.silence(20), Codec.PCMU, RtpSender())
        await wait_until(lambda: leg.endpoint.latched is not None)
        await stream(other, leg.local_address, tones.silence(300), Codec.PCMU, RtpSender(), 0.01)
        await wait_until(lambda: stats.foreign == 15)
        assert leg.endpoint.latched == (HOST, handset.port)
    finally:
        leg.close()


async def test_reinvite_changes_codec_in_place_and_a_new_address_relatches(
    pool: PortPool, peers: list[Peer]
) -> None:
    leg, peer = await leg_and_peer(pool, peers)
    moved = await Peer.open()
    peers.append(moved)
    heard: list[Codec] = []
    leg.add_audio_listener(lambda payload, codec: heard.append(codec))
    try:
        sender = RtpSender()
        await stream(peer, leg.local_address, tones.silence(20), Codec.PCMU, sender)
        await wait_until(lambda: heard == [Codec.PCMU])

        leg.update(media_for(peer.port, Codec.PCMA))  # same address: keeps the latch
        assert leg.endpoint.latched == (HOST, peer.port)
        await stream(peer, leg.local_address, tones.silence(20), Codec.PCMU, sender)
        await stream(peer, leg.local_address, tones.silence(20), Codec.PCMA, sender)
        await wait_until(lambda: heard == [Codec.PCMU, Codec.PCMA])
        assert leg.endpoint.stats.unexpected_pt == 1  # PCMU is no longer negotiated
        assert leg.send_audio(tones.silence(20))
        await wait_until(lambda: len(peer.packets) == 1)
        assert peer.packets[0].payload_type == Codec.PCMA

        leg.update(media_for(moved.port, Codec.PCMA))  # the handset moved: latch anew
        assert leg.endpoint.latched is None
        assert leg.send_audio(tones.silence(20))
        await wait_until(lambda: len(moved.packets) == 1)
    finally:
        leg.close()


async def test_malformed_rtcp_and_unnegotiated_packets_are_dropped_and_counted(
    pool: PortPool, peers: list[Peer]
) -> None:
    leg, peer = await leg_and_peer(pool, peers)
    heard: list[bytes] = []
    leg.add_audio_listener(lambda payload, codec: heard.append(payload))
    try:
        to = leg.local_address
        peer.send(b"\x00\x01garbage", to)  # not RTP version 2
        peer.send(b"\x80\x00", to)  # too short
        # RTCP receiver report multiplexed on the RTP port (PT 201).
        peer.send(b"\x81\xc9\x00\x07" + bytes(28), to)
        peer.send(RtpPacket(96, 1, 0, 5, b"xx"), to)  # payload type nobody negotiated
        peer.send(RtpPacket(0, 2, 160, 5, b"\xff" * 160), to)
        await wait_until(lambda: leg.endpoint.stats.rx_packets == 1)
        stats = leg.endpoint.stats
        assert (stats.malformed, stats.rtcp, stats.unexpected_pt) == (2, 1, 1)
        assert heard == [b"\xff" * 160]
    finally:
        leg.close()


async def test_media_timeout_fires_only_after_the_stream_stops(
    pool: PortPool, peers: list[Peer]
) -> None:
    fired: list[RtpEndpoint] = []
    leg, peer = await leg_and_peer(pool, peers, media_timeout=0.5, on_timeout=fired.append)
    try:
        await stream(peer, leg.local_address, tones.silence(800), Codec.PCMU, RtpSender(), 0.02)
        assert fired == []
        await wait_until(lambda: bool(fired), timeout=3)
        assert fired == [leg.endpoint]
        assert leg.endpoint.stats.timeouts == 1
    finally:
        leg.close()


async def test_peer_holding_us_inactive_disables_the_timeout_and_our_sending(
    pool: PortPool, peers: list[Peer]
) -> None:
    fired: list[RtpEndpoint] = []
    leg, peer = await leg_and_peer(pool, peers, media_timeout=0.3, on_timeout=fired.append)
    try:
        leg.update(media_for(peer.port, direction=Direction.INACTIVE))
        assert leg.on_hold
        assert not leg.send_audio(tones.silence(20))
        await asyncio.sleep(0.6)
        assert fired == []
        assert peer.packets == []
        leg.update(media_for(peer.port))  # resume
        assert leg.send_audio(tones.silence(20))
        await wait_until(lambda: len(peer.packets) == 1)
        assert peer.packets[0].marker  # a new talk-spurt after the hold
        await wait_until(lambda: bool(fired), timeout=3)
    finally:
        leg.close()


# ------------------------------------------------------------------------ dtmf
async def test_dtmf_in_both_directions(pool: PortPool, peers: list[Peer]) -> None:
    digits: list[str] = []
    leg, peer = await leg_and_peer(pool, peers)
    leg.on_dtmf = digits.append
    try:
        sender = RtpSender()
        for digit in "1#":
            await send_digit(peer, leg.local_address, digit, sender)
        await wait_until(lambda: digits == ["1", "#"])

        assert await leg.send_dtmf("7")
        detector = DtmfDetector()
        await wait_until(lambda: any(p.payload_type == TE_PT for p in peer.packets))
        got = [detector.feed(p) for p in peer.packets if p.payload_type == TE_PT]
        assert [d for d in got if d] == ["7"]
    finally:
        leg.close()


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


# ------------------------------------------------------------------------ bridge
async def test_bridge_transcodes_both_ways_and_hides_addresses(
    pool: PortPool, peers: list[Peer]
) -> None:
    leg_a, peer_a = await leg_and_peer(pool, peers, codec=Codec.PCMA)
    leg_b, peer_b = await leg_and_peer(pool, peers, codec=Codec.PCMU)
    bridge = Bridge(leg_a, leg_b).start()
    try:
        await asyncio.gather(
            stream(
                peer_a, leg_a.local_address, tones.sine(1000, 400), Codec.PCMA, RtpSender(), 0.002
            ),
            stream(
                peer_b, leg_b.local_address, tones.sine(400, 400), Codec.PCMU, RtpSender(), 0.002
            ),
        )
        await wait_until(lambda: len(peer_a.packets) == 20 and len(peer_b.packets) == 20)

        assert {p.payload_type for p in peer_b.packets} == {Codec.PCMU}
        assert {p.payload_type for p in peer_a.packets} == {Codec.PCMA}
        assert tones.dominant_frequency(decoded(peer_b.packets), [400, 1000]) == 1000
        assert tones.dominant_frequency(decoded(peer_a.packets), [400, 1000]) == 400
        # Each side only ever sees the service's own port.
        assert set(peer_b.sources) == {leg_b.local_address}
        assert set(peer_a.sources) == {leg_a.local_address}
        assert (bridge.a_to_b.relayed, bridge.a_to_b.transcoded) == (20, 20)
        assert (bridge.b_to_a.relayed, bridge.b_to_a.transcoded) == (20, 20)
    finally:
        leg_a.close()
        leg_b.close()
    assert await bridge.done is BridgeEnd.LEG_CLOSED


async def test_bridge_keeps_dtmf_to_itself_by_default(pool: PortPool, peers: list[Peer]) -> None:
    leg_a, peer_a = await leg_and_peer(pool, peers)
    leg_b, peer_b = await leg_and_peer(pool, peers)
    digits: list[str] = []
    leg_b.on_dtmf = digits.append
    bridge = Bridge(leg_a, leg_b).start()
    try:
        await send_digit(peer_b, leg_b.local_address, "*", RtpSender())
        await stream(peer_b, leg_b.local_address, tones.sine(400, 100), Codec.PCMU, RtpSender())
        await wait_until(lambda: len(peer_a.packets) == 5)
        assert digits == ["*"]  # the volunteer's feature code reached the service...
        assert all(p.payload_type == Codec.PCMU for p in peer_a.packets)  # ...not the caller
        assert bridge.b_to_a.dtmf_relayed == 0
    finally:
        bridge.stop()
        leg_a.close()
        leg_b.close()
    assert await bridge.done is BridgeEnd.STOPPED


async def test_injected_tone_is_heard_by_one_side_only(pool: PortPool, peers: list[Peer]) -> None:
    caller, caller_peer = await leg_and_peer(pool, peers, codec=Codec.PCMA)
    volunteer, volunteer_peer = await leg_and_peer(pool, peers, codec=Codec.PCMU)
    bridge = Bridge(caller, volunteer).start()
    try:
        talk = asyncio.gather(
            stream(
                caller_peer,
                caller.local_address,
                tones.sine(400, 1200),
                Codec.PCMA,
                RtpSender(),
                0.02,
            ),
            stream(
                volunteer_peer,
                volunteer.local_address,
                tones.sine(400, 1200),
                Codec.PCMU,
                RtpSender(),
                0.02,
            ),
        )
        await wait_until(lambda: len(volunteer_peer.packets) >= 5)
        await asyncio.wait_for(bridge.inject_tone(Side.B, tones.sine(1000, 300)), 3)
        await talk
        await asyncio.sleep(0.1)

        at_volunteer = [tone_of(g711.decode(Codec.PCMU, p.payload)) for p in volunteer_peer.packets]
        at_caller = [tone_of(g711.decode(Codec.PCMA, p.payload)) for p in caller_peer.packets]
        assert at_volunteer.count(1000.0) == 15  # 300 ms of tone, one frame per tick
        assert at_volunteer.index(1000.0) > 0 and at_volunteer[-1] == 400.0  # caller before/after
        assert 1000.0 not in at_caller and at_caller.count(400.0) >= 50
        assert bridge.a_to_b.replaced >= 10
        seqs = [p.sequence for p in volunteer_peer.packets]
        assert seqs == [(seqs[0] + i) & 0xFFFF for i in range(len(seqs))]
    finally:
        caller.close()
        volunteer.close()


async def test_mixed_tone_keeps_the_other_party_audible(pool: PortPool, peers: list[Peer]) -> None:
    caller, caller_peer = await leg_and_peer(pool, peers)
    volunteer, volunteer_peer = await leg_and_peer(pool, peers)
    bridge = Bridge(caller, volunteer).start()
    try:
        talk = stream(
            caller_peer,
            caller.local_address,
            tones.sine(400, 600, 0.2),
            Codec.PCMU,
            RtpSender(),
            0.02,
        )
        tone = bridge.inject_tone(volunteer, tones.sine(1000, 200, 0.2), mix=True)
        await asyncio.gather(talk, tone)
        await asyncio.sleep(0.1)
        mixed = [g711.decode(Codec.PCMU, p.payload) for p in volunteer_peer.packets]
        both = [
            f
            for f in mixed
            if tones.goertzel_power(f, 1000) > 0.005 and tones.goertzel_power(f, 400) > 0.005
        ]
        assert len(both) >= 5
    finally:
        caller.close()
        volunteer.close()


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


# ------------------------------------------------------------------------ ticker
async def test_ticker_skips_missed_ticks_instead_of_bursting() -> None:
    loop = asyncio.get_running_loop()
    ticker = Ticker(loop)
    seen: list[tuple[int, float]] = []

    def on_tick(tick: int) -> None:
        seen.append((tick, loop.time()))
        if len(seen) == 1:
            time.sleep(0.15)  # the loop is blocked for 7.5 periods

    ticker.subscribe(on_tick)
    await wait_until(lambda: len(seen) >= 5)
    ticker.unsubscribe(on_tick)
    assert not ticker.running
    ticks = [t for t, _ in seen]
    assert ticks == sorted(set(ticks))
    assert ticks[1] >= ticks[0] + 7  # jumped over the deadlines missed while blocked
    assert ticker.skipped >= 6


async def test_ticker_is_shared_and_survives_resubscription_from_a_callback() -> None:
    ticker = ticker_for()
    assert ticker_for() is ticker
    calls: list[int] = []

    def second(tick: int) -> None:
        calls.append(tick)

    def first(tick: int) -> None:
        ticker.unsubscribe(first)
        ticker.subscribe(second)

    ticker.subscribe(first)
    await wait_until(lambda: len(calls) >= 3)
    ticker.unsubscribe(second)
    assert calls == sorted(set(calls))
    assert not ticker.running
