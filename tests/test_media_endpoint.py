"""The media runtime's ports, RTP endpoint and DTMF over real UDP sockets on 127.0.0.1.

The far ends are plain asyncio datagram sockets sending RTP built with pbx.media.rtp,
so every test checks what actually goes over the wire.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys

import pytest

from pbx.media import tones
from pbx.media.dtmf import DtmfDetector
from pbx.media.endpoint import RtpEndpoint
from pbx.media.g711 import Codec
from pbx.media.leg import MediaLeg
from pbx.media.ports import PortPool, PortsExhausted
from pbx.media.rtp import RtpPacket, RtpSender
from pbx.media.sdp import Direction
from tests.helpers.media_runtime import HIJACKER, leg_and_peer, port_pool, rtp_peers
from tests.helpers.rtp_peer import (
    HOST,
    TE_PT,
    Peer,
    media_for,
    send_digit,
    stream,
    wait_until,
)

pool = pytest.fixture(port_pool)
peers = pytest.fixture(rtp_peers)


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
            for sock in (allocated.rtp_socket, allocated.rtcp_socket):  # never blocks the loop
                assert sock.type == socket.SOCK_DGRAM and not sock.getblocking()
                with pytest.raises(BlockingIOError):
                    sock.recv(2048)
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
